// The matmul edge-size tests in headless Chromium, on navigator.gpu (SwiftShader where there is
// no GPU): another compiler (Tint → SwiftShader's Reactor) for the same WGSL, usually without
// subgroups, so the `vec4` and `tiled` kernels.
import './matmul.test.js';
