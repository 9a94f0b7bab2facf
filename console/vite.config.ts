// Builds the console into dist/, which the API server embeds at compile time and serves under /ui/.
//
// The output must be byte-identical from one build to the next (the test command rebuilds it and fails when the
// committed dist/ differs), so nothing here depends on time, paths or the machine: content-hashed file names, no
// source maps. The server's Content-Security-Policy allows scripts only from 'self', so the build emits no inline
// script (the module-preload polyfill would be one; every browser we target has modulepreload).
import { defineConfig } from 'vite';

// `npm run dev` serves the console with hot reload, `npm run preview` serves the built dist/; both forward API
// calls to a running server (PYEXEC_CONSOLE_API, by default http://127.0.0.1:8080).
const api = process.env.PYEXEC_CONSOLE_API ?? 'http://127.0.0.1:8080';
// The server refuses cross-site writes (docs/api.md, "Browser protections"): the dev server's pages have another
// origin, so the proxy presents the API server's own.
const proxied = { target: api, changeOrigin: true, headers: { origin: api } };

// The policy the API server sends with the console's files; `npm run preview` serves dist/ with it too, so a
// build can be tried under the same rules (no inline script, nothing from another origin) before the server
// embeds it.
const contentSecurityPolicy =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; " +
  "connect-src 'self'; font-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

export default defineConfig({
  base: '/ui/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    modulePreload: { polyfill: false },
    // Small assets stay files rather than data: URLs, so what the page loads is what dist/ lists.
    assetsInlineLimit: 0,
    reportCompressedSize: false,
    // CodeMirror with its Python support is most of the bundle (about 140 kB gzipped); it is one file on purpose.
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: { '/api': proxied, '/health': proxied },
  },
  preview: {
    headers: { 'Content-Security-Policy': contentSecurityPolicy },
    proxy: { '/api': proxied, '/health': proxied },
  },
});
