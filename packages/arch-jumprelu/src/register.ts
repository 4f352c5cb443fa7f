/**
 * Side-effect entry: registers `jumprelu` in dictlearn's plugin registry, so `Dictionary.load`
 * and the CLI find it by name.
 * @packageDocumentation
 */
import { registerArchitecture } from '@dictlearn/core';
import { factories } from './jumprelu.js';

for (const f of factories) registerArchitecture(f);
