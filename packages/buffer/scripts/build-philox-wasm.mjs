#!/usr/bin/env node
// Assembles scripts/philox.wat and prints the bytes as base64 for src/philox-wasm.ts.
// wabt is not a dependency of the repository; install it anywhere first:
//   (cd /tmp && npm i wabt@1.0.39) && NODE_PATH=/tmp/node_modules node packages/buffer/scripts/build-philox-wasm.mjs
// The output is deterministic; it is the PHILOX_WASM string in src/philox-wasm.ts.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const wabt = await require('wabt')();
const text = readFileSync(new URL('./philox.wat', import.meta.url), 'utf8');
const module = wabt.parseWat('philox.wat', text);
module.validate();
const { buffer } = module.toBinary({ write_debug_names: false });
console.log(Buffer.from(buffer).toString('base64'));
