// Builds the dashboard into dist/dashboard/, which the control plane serves as static files.
// Everything is bundled (React, zod and the wire schemas of common/protocol.ts): nothing is
// fetched from another origin at run time. `npm run dev:dashboard` proxies /v1 to
// SLIPWAY_API_URL for working on the pages against a running control plane.
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  // Relative asset paths: the control plane may mount the dashboard under any prefix.
  base: './',
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL('../dist/dashboard', import.meta.url)),
    emptyOutDir: true,
  },
  server: {
    proxy: { '/v1': process.env.SLIPWAY_API_URL ?? 'http://127.0.0.1:8080' },
  },
});
