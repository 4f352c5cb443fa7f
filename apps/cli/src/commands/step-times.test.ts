// scripts/step-times.mjs (the spread of a training step's wall time) runs on the built packages
// and reports consistent statistics over the steps it ran, with the kernel threads it was asked
// for.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const script = new URL('../../scripts/step-times.mjs', import.meta.url);
const built = existsSync(new URL('../../dist/bench.js', import.meta.url));

describe.skipIf(!built)(`step-times.mjs${built ? '' : ' (skipped: the CLI is not built)'}`, () => {
  it('times a small Standard step: mean and quantiles in order', () => {
    const run = spawnSync(
      process.execPath,
      [script.pathname, '--size', '16,64,32', '--steps', '7', '--kernel-threads', '1'],
      { encoding: 'utf8' },
    );
    expect(run.status, run.stderr).toBe(0);
    const r = JSON.parse(run.stdout) as Record<string, number> & { size: Record<string, number> };
    expect(r.size).toEqual({ d: 16, features: 64, batch: 32 });
    expect(r.steps).toBe(7);
    expect(r.kernelThreads).toBe(1);
    const order = [r.minMs, r.p25Ms, r.medianMs, r.p75Ms, r.p90Ms];
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(r.minMs).toBeGreaterThan(0);
    expect(r.meanMs).toBeGreaterThanOrEqual(r.minMs);
    expect(r.pageFaultsPerStep).toBeGreaterThanOrEqual(0);
  });
});
