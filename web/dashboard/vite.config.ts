import { svelte } from "@sveltejs/vite-plugin-svelte";
import license from "rollup-plugin-license";
import { defineConfig } from "vite";

// The build must run under the gateway's strict CSP (script-src 'self', style-src 'self'):
// no inline scripts or styles, so nothing is inlined into index.html.
export default defineConfig({
  plugins: [
    svelte(),
    license({
      thirdParty: {
        includePrivate: false,
        output: {
          file: "dist/THIRD_PARTY_LICENSES.txt",
        },
      },
    }),
  ],
  build: {
    outDir: "dist",
    assetsInlineLimit: 0,
    sourcemap: false,
    target: "es2022",
  },
});
