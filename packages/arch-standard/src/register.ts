/**
 * Side-effect entry: registers `standard`, `april-update` and `tied` in dictlearn's plugin
 * registry, so `Dictionary.load` and the CLI find them by name.
 * @packageDocumentation
 */
import { registerArchitecture } from '@dictlearn/core';
import { factories } from './standard.js';

for (const f of factories) registerArchitecture(f);
