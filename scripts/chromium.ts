/** Where the browser tests find Chromium (Debian's package; no Playwright browser download). */
export const CHROMIUM_PATH = process.env.DICTLEARN_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Flags for headless Chromium with WebGPU on machines without a GPU (SwiftShader), and without
 * the background network traffic a closed network refuses.
 */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-webgpu-adapter=swiftshader',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
];
