/**
 * Side-effect entry: registers `topk`, `batch-topk` and `matryoshka-batch-topk` in dictlearn's
 * plugin registry, so `Dictionary.load` and the CLI find them by name.
 * @packageDocumentation
 */
import { registerArchitecture } from '@dictlearn/core';
import { factories } from './topk.js';

for (const f of factories) registerArchitecture(f);
