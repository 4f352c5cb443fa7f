// scripts/profile-step.mjs (the per-op profile of a training step) runs on the built packages and
// reports every kernel the step calls: the Standard step's products by shape, its fused
// encoder–decoder ops once each, and Adam once per parameter.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const script = new URL('../../scripts/profile-step.mjs', import.meta.url);
const built = existsSync(new URL('../../dist/bench.js', import.meta.url));

describe.skipIf(!built)(`profile-step.mjs${built ? '' : ' (skipped: the CLI is not built)'}`, () => {
  it('profiles a small Standard step op by op', () => {
    const run = spawnSync(
      process.execPath,
      [script.pathname, '--size', '16,64,32', '--steps', '3', '--fast', 'false'],
      { encoding: 'utf8' },
    );
    expect(run.status, run.stderr).toBe(0);
    const r = JSON.parse(run.stdout) as {
      steps: number;
      stepMedianMs: number;
      kernelsMedianMs: number;
      ops: { op: string; callsPerStep: number; medianMs: number }[];
    };
    expect(r.steps).toBe(3);
    const calls = Object.fromEntries(r.ops.map((o) => [o.op, o.callsPerStep]));
    // x·W_enc fused with bias, ReLU and column sums, and f·W_dec; their backward's dF = dx̂·W_decᵀ
    // with the ReLU's mask in one op (over f); the two weight gradients' products (dW_dec,
    // dW_enc); Adam on the four parameters.
    expect(calls['linearBiasReluSumDecode 32×16·16×64·64×16']).toBe(1);
    expect(calls.reluDecodeGrad).toBe(1);
    expect(calls['matmul 32×64ᵀ·32×16']).toBe(1);
    expect(calls['matmul 32×16ᵀ·32×64']).toBe(1);
    expect(calls['matmul 32×64·64×16']).toBeUndefined();
    expect(calls.reluGradRowSum).toBeUndefined();
    expect(calls.adamUpdate).toBe(4);
    for (const o of r.ops) expect(o.medianMs).toBeGreaterThanOrEqual(0);
    expect(r.kernelsMedianMs).toBeGreaterThan(0);
  });
});
