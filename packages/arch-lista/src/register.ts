/**
 * Side-effect entry: registers `lista` in dictlearn's plugin registry, so `Dictionary.load` and
 * the CLI find it by name.
 * @packageDocumentation
 */
import { registerArchitecture } from '@dictlearn/core';
import { factories } from './lista.js';

for (const f of factories) registerArchitecture(f);
