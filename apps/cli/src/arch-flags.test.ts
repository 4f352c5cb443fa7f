import '@dictlearn/arch-standard/register';
import '@dictlearn/arch-topk/register';
import { describe, expect, it } from 'vitest';
import { parseSet, sweepConfigs, sweptKeys } from './commands/arch-flags.js';
import { main } from './main.js';
import { captureOutput } from './test-io.js';

describe('architecture flags and sweeps', () => {
  it('every architecture × every combination of the values of the keys it accepts', () => {
    const swept = sweptKeys({ l1: '0.1,0.3' }, ['encoderBiasInit=zero,torch']);
    const trainers = sweepConfigs(['standard', 'tied'], swept);
    // standard and tied (which takes standard's config) each get 2 × 2 trainers
    const combos = [
      { l1Penalty: 0.1, encoderBiasInit: 'zero' },
      { l1Penalty: 0.1, encoderBiasInit: 'torch' },
      { l1Penalty: 0.3, encoderBiasInit: 'zero' },
      { l1Penalty: 0.3, encoderBiasInit: 'torch' },
    ];
    expect(trainers).toEqual([
      ...combos.map((config) => ({ architecture: 'standard', config })),
      ...combos.map((config) => ({ architecture: 'tied', config })),
    ]);
  });

  it('an architecture with a required field (topk: k) takes only its own keys from a mixed sweep', () => {
    const trainers = sweepConfigs(['standard', 'topk'], sweptKeys({ l1: '0.1', k: '6,8' }));
    expect(trainers).toEqual([
      { architecture: 'standard', config: { l1Penalty: 0.1 } },
      { architecture: 'topk', config: { k: 6 } },
      { architecture: 'topk', config: { k: 8 } },
    ]);
  });

  it('an architecture that accepts none of the swept keys gets one trainer with its defaults', () => {
    expect(sweepConfigs(['standard'], [])).toEqual([{ architecture: 'standard', config: {} }]);
  });

  it('refuses a key no chosen architecture accepts, naming the flag and the keys', () => {
    expect(() => sweepConfigs(['standard'], sweptKeys({ k: '16,32' }))).toThrow(
      "--k sets 'k', which architecture 'standard' does not accept (its keys: l1Penalty, encoderBiasInit)",
    );
  });

  it('parses --set values as numbers, booleans or strings, and refuses a malformed one', () => {
    expect(parseSet('k=16,32')).toEqual({ flag: '--set k', key: 'k', values: [16, 32] });
    expect(parseSet('normalize=true')).toEqual({ flag: '--set normalize', key: 'normalize', values: [true] });
    expect(parseSet('penalty=l0,l0-target').values).toEqual(['l0', 'l0-target']);
    expect(() => parseSet('k')).toThrow('--set must be key=value');
    expect(() => parseSet('=3')).toThrow('--set must be key=value');
    expect(() => parseSet('k=')).toThrow('--set must be key=value');
  });

  it('refuses the same key from two flags, and a bad value with the bound', () => {
    expect(() => sweptKeys({ l1: '0.1' }, ['l1Penalty=0.2'])).toThrow(
      "--set l1Penalty and --l1 both set 'l1Penalty'; give it once",
    );
    expect(() => sweptKeys({ k: '0' })).toThrow(
      '--k must be a number or a comma-separated list of numbers, each an integer from 1',
    );
  });

  it('dictlearn train --k with standard is one line, exit 2', async () => {
    const io = captureOutput();
    expect(await main(['train', '--k', '32', '--steps', '1'])).toBe(2);
    expect(io.err.join('')).toBe(
      "dictlearn train: --k sets 'k', which architecture 'standard' does not accept (its keys: l1Penalty, encoderBiasInit)\n",
    );
  });
});
