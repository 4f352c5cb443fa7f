import { describe, expect, it } from 'vitest';
import { jobLoopSource, spin, startJobWorkers } from './index.js';

// Job workers against what the caller can check itself: each job's result written into shared
// memory (a sum over the job's arguments, with a factor a message set before it), a job that
// throws reported failed and the worker still taking jobs, one that runs past the caller's
// timeout reported timed out (the pool then takes no more), and close.
const SETUP = `
const out = new Float64Array(workerData.out);
const runs = workerData.runs ? new Int32Array(workerData.runs) : null;
let factor = 1;
function onMessage(m) { factor = m.factor; }
function run(a) {
  if (runs) runs[0]++;
  if (A[a] < 0) throw new Error('a negative job');
  if (A[a] === 999) { const t = performance.now(); while (performance.now() - t < 400) {} }
  out[workerData.slot] = factor * (A[a] + A[a + 1]);
}
`;

describe('@dictlearn/core/threads', () => {
  it('runs jobs on each worker with its arguments and the messages posted before them', async () => {
    const out = new SharedArrayBuffer(8 * 3);
    const view = new Float64Array(out);
    const workers = startJobWorkers({ count: 3, setup: SETUP, argWords: 2, data: { out } });
    try {
      expect(await workers.whenReady()).toBe(3);
      for (let slot = 0; slot < 3; slot++) expect(workers.ready(slot)).toBe(true);
      workers.post({ factor: 10 });
      const seqs = [0, 1, 2].map((slot) => {
        workers.args.set([slot + 1, 0.5], slot * 2);
        return workers.start(slot);
      });
      expect(seqs).toEqual([1, 1, 1]);
      for (let slot = 0; slot < 3; slot++) expect(workers.wait(slot, seqs[slot], 1, 10_000)).toBe('done');
      expect([...view]).toEqual([15, 25, 35]);
      // a job that throws is reported, and the worker takes the next one
      workers.args.set([-1, 0], 0);
      expect(workers.wait(0, workers.start(0), 1, 10_000)).toBe('failed');
      workers.args.set([4, 4], 0);
      expect(workers.wait(0, workers.start(0), 1, 10_000)).toBe('done');
      expect(view[0]).toBe(80);
      // past the timeout: reported, and no worker takes jobs after it
      workers.args.set([999, 0], 2 * 2);
      expect(workers.wait(2, workers.start(2), 0, 50)).toBe('timed-out');
      expect(workers.readyCount()).toBe(0);
    } finally {
      workers.close();
    }
  });

  it('a job its worker has not claimed is taken back, and the worker leaves it', async () => {
    const out = new SharedArrayBuffer(8);
    const view = new Float64Array(out);
    const runs = new SharedArrayBuffer(4);
    const workers = startJobWorkers({ count: 1, setup: SETUP, argWords: 2, data: { out, runs } });
    try {
      // started before the worker runs at all: nobody has claimed it
      workers.args.set([100, 0], 0);
      const first = workers.start(0);
      expect(workers.take(0, first)).toBe(true);
      expect(await workers.whenReady()).toBe(1);
      workers.args.set([1, 2], 0);
      const second = workers.start(0);
      expect(workers.wait(0, second, 1, 10_000)).toBe('done');
      expect(view[0]).toBe(3);
      expect(new Int32Array(runs)[0]).toBe(1); // the worker ran the second job only
      // a job the worker has claimed (here: done) is not taken back
      expect(workers.take(0, second)).toBe(false);
      workers.args.set([5, 5], 0);
      expect(workers.wait(0, workers.start(0), 1, 10_000)).toBe('done');
      expect(view[0]).toBe(10);
    } finally {
      workers.close();
    }
  });

  it('close ends the workers', async () => {
    const out = new SharedArrayBuffer(8);
    const workers = startJobWorkers({ count: 1, setup: SETUP, argWords: 2, data: { out } });
    expect(await workers.whenReady()).toBe(1);
    workers.close();
    expect(workers.ready(0)).toBe(false);
    expect(await workers.whenReady()).toBe(0);
  });

  it('spin returns when done, or after its time', () => {
    let n = 0;
    spin(() => ++n === 100, 1000);
    expect(n).toBe(100);
    const t = performance.now();
    spin(() => false, 20);
    expect(performance.now() - t).toBeGreaterThanOrEqual(20);
    expect(jobLoopSource('/*x*/')).toContain('/*x*/');
  });
});
