/**
 * Side-effect entry: registers `blockdiag` in dictlearn's plugin registry, so `Dictionary.load`
 * and the CLI find it by name (its inner architecture must be registered too).
 * @packageDocumentation
 */
import { registerArchitecture } from '@dictlearn/core';
import { factories } from './blockdiag.js';

for (const f of factories) registerArchitecture(f);
