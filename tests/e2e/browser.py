"""Playwright for Python driving Debian's Chromium against the test platform's dashboard:
a browser per test, screenshots at desktop and phone width, and an axe-core scan."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

from shardz_devstack.config import repo_root

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
AXE = repo_root() / "web" / "dashboard" / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@asynccontextmanager
async def dashboard_page(origin: str) -> AsyncIterator[tuple[Page, list[str]]]:
    """A page on the dashboard and the list of CSP violations the browser reports."""
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        context = await browser.new_context(
            base_url=origin, viewport=DESKTOP, accept_downloads=True
        )
        await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
        await context.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => console.error("
            "'CSPV', e.violatedDirective, e.sourceFile, e.lineNumber, e.columnNumber, e.sample,"
            " document.location.pathname))"
        )
        page = await context.new_page()
        violations: list[str] = []
        page.on(
            "console",
            lambda msg: (
                violations.append(msg.text) if "Content Security Policy" in msg.text else None
            ),
        )
        try:
            yield page, violations
        finally:
            await context.close()
            await browser.close()


async def axe_problems(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page as it is now. axe is evaluated
    through the DevTools protocol, which the page's CSP does not govern (an injected <script>
    would be refused, as it should be)."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text() + "\n;0")
    result: dict[str, Any] = await page.evaluate(
        "async () => await window.axe.run(document, {resultTypes: ['violations']})"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def capture(page: Page, name: str) -> list[dict[str, Any]]:
    """Screenshots of the page at desktop and phone width; the axe findings at both."""
    ARTIFACTS.mkdir(exist_ok=True)
    found = []
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(size)
        await page.wait_for_timeout(150)  # let the layout settle
        # caret="initial": hiding the caret would inject a <style>, which the CSP refuses
        await page.screenshot(
            path=ARTIFACTS / f"{name}-{label}.png", full_page=True, caret="initial"
        )
        found += [{**p, "page": name, "width": label} for p in await axe_problems(page)]
    await page.set_viewport_size(DESKTOP)
    return found
