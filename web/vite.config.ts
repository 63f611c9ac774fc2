// The dashboard's build: web/ → dist/web (served by the control plane at `/`, see
// src/control-plane/http/web-app.ts). Everything is bundled; nothing loads from the internet.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  build: {
    outDir: fileURLToPath(new URL('../dist/web', import.meta.url)),
    emptyOutDir: true,
    assetsInlineLimit: 0,
  },
});
