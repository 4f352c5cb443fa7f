/**
 * Side-effect entry: registers `standard`, `april-update`, `tied` and `p-anneal` in dictlearn's plugin
 * registry, so `Dictionary.load` and the CLI find them by name.
 * @packageDocumentation
 */
import { registerArchitecture } from '@dictlearn/core';
import { factories } from './index.js';

for (const f of factories) registerArchitecture(f);
