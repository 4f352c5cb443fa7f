import { defineConfig } from 'vite';
import { workspaceAliases } from '../../workspace-aliases.js';

// The page imports the packages' TypeScript sources (no package build needed). Node-only
// modules the packages load lazily in Node (Dawn, onnxruntime, koffi) stay out of the bundle.
export default defineConfig({
  resolve: { alias: workspaceAliases() },
  build: {
    target: 'es2022',
    rollupOptions: { external: ['webgpu', 'onnxruntime-node', 'koffi', /^node:/] },
  },
  optimizeDeps: { exclude: ['webgpu', 'onnxruntime-node', 'koffi'] },
  server: { port: 5173 },
});
