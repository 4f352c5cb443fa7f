import { describe, expect, it } from 'vitest';
import { closestName } from './suggest.js';

describe('closestName', () => {
  const known = ['lr', 'warmupSteps', 'sparsityWarmupSteps', 'dictSize', 'seed'];
  it('matches ignoring case, _ and -', () => {
    expect(closestName('dict_size', known)).toBe('dictSize');
    expect(closestName('WARMUP-STEPS', known)).toBe('warmupSteps');
  });
  it('takes the nearest within two edits, and nothing farther', () => {
    expect(closestName('dictSise', known)).toBe('dictSize'); // 1 edit
    expect(closestName('seeed', known)).toBe('seed'); // 1 edit
    expect(closestName('warmupStep', known)).toBe('warmupSteps');
    expect(closestName('learningRate', known)).toBeUndefined(); // far from every name
    expect(closestName('x', ['abcd'])).toBeUndefined(); // 4 edits
  });
  it('prefers an alias, keyed by the normalised name, when the alias is known', () => {
    expect(closestName('learning_rate', known, { learningrate: 'lr' })).toBe('lr');
    expect(closestName('learning_rate', ['seed'], { learningrate: 'lr' })).toBeUndefined();
  });
});
