/**
 * Side-effect entry: registers `gated` and `gated-anneal` in dictlearn's plugin registry, so
 * `Dictionary.load` and the CLI find them by name.
 * @packageDocumentation
 */
import { registerArchitecture } from '@dictlearn/core';
import { factories } from './gated.js';

for (const f of factories) registerArchitecture(f);
