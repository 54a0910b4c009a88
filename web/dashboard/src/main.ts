import { mount } from "svelte";
import App from "./App.svelte";
import "./app.css";

const saved = localStorage.getItem("theme");
if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;

mount(App, { target: document.getElementById("app")! });
