import { defineConfig } from "vite";

// No framework plugin: esbuild compiles the JSX for Preact directly. The output is
// deterministic (content-hashed names, no timestamps), so CI can rebuild and diff
// web/dist. Nothing is inlined as a data: URL, so the server's CSP needs no exceptions.
export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: "es2022",
  },
  server: {
    // `npm run dev` against a local `cargo run -p tether-server`.
    proxy: { "/api": { target: "https://localhost:8443", secure: false } },
  },
});
