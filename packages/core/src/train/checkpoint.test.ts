// The architecture's own training state in a checkpoint (ArchitecturePlugin.trainingState): what
// the plugin saves comes back to it on load, a checkpoint without it (an older version) loads with
// a notice, and a damaged one is refused naming the file.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ArchitecturePlugin, StateTensor } from '../arch.js';
import { registerBackend, useBackend } from '../backend.js';
import { tensor } from '../ops/create.js';
import { loadTrainerState, readTrainerState, saveTrainerState } from './checkpoint.js';
import { Trainer } from './trainer.js';

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
});

/** The standard SAE with a recording training state: `saved` is what it hands a checkpoint. */
function withState(saved: Record<string, StateTensor>) {
  const loads: { state: Record<string, StateTensor>; step: number }[] = [];
  const saves: number[] = [];
  const arch: ArchitecturePlugin<object> = {
    ...standard({ l1Penalty: 0.1 }),
    trainingState: {
      save: async (step) => {
        saves.push(step);
        return saved;
      },
      load: (state, step) => {
        loads.push({ state, step });
      },
    },
  };
  return { arch, loads, saves };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dl-ckpt-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function trainedCheckpoint(arch: ArchitecturePlugin<object>): Promise<void> {
  const tr = new Trainer({ architecture: arch, dictSize: 4, warmupSteps: 0 }, 3, 10);
  const x = tensor([
    [1, 0.5, -1],
    [0.2, 2, 1],
  ]);
  for (let i = 0; i < 3; i++) await tr.update(x, false);
  await saveTrainerState(tr, dir, { scale: 1, batchesConsumed: 3 });
  tr.dispose();
  x.dispose();
}

describe('architecture training state in checkpoints', () => {
  const queue = { shape: [2, 2], data: new Float32Array([1.5, -2, 0.25, 3]) };
  const coeff = { shape: [], data: new Float32Array([0.125]) };

  it("round-trips the plugin's state, saved and loaded for the trainer's next step", async () => {
    const writer = withState({ coeff, queue });
    await trainedCheckpoint(writer.arch);
    expect(writer.saves).toEqual([3]);
    expect(JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')).archState).toEqual(['coeff', 'queue']);
    const reader = withState({});
    const notices: string[] = [];
    const tr = new Trainer({ architecture: reader.arch, dictSize: 4 }, 3, 10);
    await loadTrainerState(tr, dir, (m) => notices.push(m));
    expect(reader.loads).toEqual([{ state: { coeff, queue }, step: 3 }]);
    expect(notices).toEqual([]);
    tr.dispose();
  });

  it('a checkpoint without the state (an older version) loads with one notice and no load call', async () => {
    await trainedCheckpoint(standard({ l1Penalty: 0.1 }));
    expect(JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')).archState).toBeUndefined();
    const reader = withState({});
    const notices: string[] = [];
    const tr = new Trainer({ architecture: reader.arch, dictSize: 4 }, 3, 10);
    await loadTrainerState(tr, dir, (m) => notices.push(m));
    expect(reader.loads).toEqual([]);
    expect(notices).toEqual([
      `${dir}: the checkpoint holds no 'standard' training state (an older version); it restarts from the configuration, so the resumed run differs from an uninterrupted one`,
    ]);
    expect(tr.step).toBe(3);
    tr.dispose();
  });

  it('refuses a state.json naming state the safetensors lack, or a malformed list', async () => {
    const writer = withState({ coeff });
    await trainedCheckpoint(writer.arch);
    const infoPath = join(dir, 'state.json');
    const info = JSON.parse(await readFile(infoPath, 'utf8'));
    const tr = new Trainer({ architecture: writer.arch, dictSize: 4 }, 3, 10);
    await writeFile(infoPath, JSON.stringify({ ...info, archState: ['coeff', 'queue'] }));
    await expect(readTrainerState(tr, dir)).rejects.toThrow(
      `${join(dir, 'state.safetensors')}: missing tensor 'arch_state.queue'`,
    );
    await writeFile(infoPath, JSON.stringify({ ...info, archState: 'coeff' }));
    await expect(readTrainerState(tr, dir)).rejects.toThrow(
      `${infoPath}: field 'archState' must be a list of names`,
    );
    tr.dispose();
  });
});
