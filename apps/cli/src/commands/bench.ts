import { availableParallelism } from 'node:os';
import { standard } from '@dictlearn/arch-standard';
import { topk } from '@dictlearn/arch-topk';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  type ArchitecturePlugin,
  type Backend,
  findBackend,
  listBackends,
  matmul,
  memory,
  randomNormal,
  registerBackend,
  resetPeakMemory,
  scope,
  type Tensor,
  Trainer,
  useBackend,
} from '@dictlearn/core';
import {
  type NumpyResult,
  type NumpyStepResult,
  type ProductSpec,
  timeNumpy,
  timeNumpyStep,
  timeNumpyTopkStep,
} from '../numpy.js';

/** Options of the bench command. */
export interface BenchOptions {
  /** Timed repetitions per product (best is reported). */
  reps: number;
  /** Batch size B of the SAE step whose products are timed. */
  batch: number;
  /** Activation width d. */
  d: number;
  /** Dictionary size F. */
  features: number;
  /** Also time the plain-TypeScript CPU path (on a smaller product: it is ~50x slower). */
  includeTs: boolean;
  /** Skip numpy. */
  noNumpy: boolean;
  /** Features kept per row in the TopK training step (default 32; at most `features`). */
  k?: number;
  /**
   * Also time the Standard step at the small size {@link SMALL_STEP} (d 144, F 576, batch 1024)
   * beside numpy's at that size, where per-op overhead weighs most (default true).
   */
  smallStep?: boolean;
}

/** The small Standard step the bench times besides the main one: the sizes where per-op overhead dominates. */
export const SMALL_STEP = { batch: 1024, d: 144, features: 576 } as const;

/**
 * Timed steps of a training-step row: the `reps` option, at most 5 at full size; small steps
 * (under 2²¹ features per batch) take up to 20, their times being short and noisier.
 */
function stepReps(o: BenchOptions): number {
  return Math.max(
    1,
    Math.min(o.reps * (o.batch * o.features < 2 ** 21 ? 4 : 1), o.batch * o.features < 2 ** 21 ? 20 : 5),
  );
}

/** k of the TopK step: the option, 32 by default, never more than F. */
const topkK = (o: BenchOptions) => Math.min(o.k ?? 32, o.features);

/** The three products of one SAE step at batch B, width d, F features. */
export function saeProducts(B: number, d: number, F: number): ProductSpec[] {
  return [
    { name: 'x·W_enc (forward)', m: B, n: F, k: d, transA: false, transB: false },
    { name: 'xᵀ·dPre (dW_enc)', m: d, n: F, k: B, transA: true, transB: false },
    { name: 'dPre·W_encᵀ (dx)', m: B, n: d, k: F, transA: false, transB: true },
  ];
}

async function timeProduct(spec: ProductSpec, backend: Backend, reps: number): Promise<number> {
  const a = randomNormal(spec.transA ? [spec.k, spec.m] : [spec.m, spec.k], {
    seed: 1,
    backend: backend.name,
  });
  const b = randomNormal(spec.transB ? [spec.n, spec.k] : [spec.k, spec.n], {
    seed: 2,
    backend: backend.name,
  });
  const once = async () => {
    const t0 = performance.now();
    const c: Tensor = scope(() => matmul(a, b, { transA: spec.transA, transB: spec.transB }));
    await backend.sync?.();
    const dt = (performance.now() - t0) / 1000;
    c.dispose();
    return dt;
  };
  await once(); // warm-up: sessions, pipelines, caches
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < reps; i++) best = Math.min(best, await once());
  a.dispose();
  b.dispose();
  return best;
}

/** One row of the matmul table. */
export interface MatmulRow {
  /** Backend name. */
  backend: string;
  /** Which product of the SAE step. */
  product: string;
  /** op(A)·op(B) with stored shapes. */
  shape: string;
  /** 2·m·n·k / seconds / 10⁹. */
  gflops: number;
  /** Best time of the repetitions. */
  seconds: number;
  /** numpy's GFLOP/s for the same product (faster of its two environments). */
  numpyGflops?: number;
  /** gflops / numpyGflops. */
  ratioToNumpy?: number;
  /** This backend's GFLOP/s over the CPU backend's for the same product. */
  ratioToCpu?: number;
  /** CUDA: cuBLAS's own GFLOP/s for the product (device events around the bare SGEMM). */
  cublasGflops?: number;
}

/** One row of the training-step table. */
export interface StepRow {
  /** Backend name. */
  backend: string;
  /** The SAE trained: `standard` (ReLU + L1, dense) or `topk` (sparse kernels). */
  arch: 'standard' | 'topk';
  /** `'small'` for the Standard step at {@link SMALL_STEP}'s sizes (absent for the main sizes). */
  size?: 'small';
  /** Sizes of the step timed. */
  shape: string;
  /** Best seconds per step. */
  seconds: number;
  /** Activation rows per second. */
  tokensPerSecond: number;
  /** numpy's tokens/s for the same step (faster of its two environments). */
  numpyTokensPerSecond?: number;
  /** tokensPerSecond / numpyTokensPerSecond. */
  ratioToNumpy?: number;
  /** tokensPerSecond over the CPU backend's at the same sizes. */
  ratioToCpu?: number;
  /** Memory over the timed steps (see {@link StepMemory}). */
  memory?: StepMemory;
}

/** Peak memory of one trainer over its timed steps, beside the least its step could need. */
export interface StepMemory {
  /** Most bytes held by live tensors at once (parameters, Adam moments, the batch, activations, temporaries). */
  peakBytes: number;
  /** Bytes of the trainer's parameters (every variable of the dictionary). */
  paramBytes: number;
  /** params + Adam's two moments (2 × params) + one batch's activations [B, d] and features [B, F]. */
  floorBytes: number;
  /** peakBytes / floorBytes (the issue's goal: at most 1.2). */
  peakToFloor: number;
  /**
   * GPU backends: most bytes of device buffers at once (live tensors, freed buffers kept in the
   * pool for reuse, kernel scratch, the parameter arena), the pool trimmed before the trainer.
   */
  devicePeakBytes?: number;
  /** GPU backends: bytes of freed buffers in the pool after the timed steps (device memory too). */
  poolBytes?: number;
}

/** A GPU backend's device-memory counters (the WebGPU backend has them), found by duck typing. */
interface DeviceMemoryCounters {
  stats?: { peakAllocatedBytes: number; pooledBytes: number };
  resetPeak?(): void;
  trimPool?(): void;
}

/** The bench report (what `--json` prints). */
export interface BenchReport {
  /** Where it ran. */
  machine: { cpus: number; node: string; platform: string };
  /** Every registered backend and whether it started (with its fast path). */
  backends: { name: string; status: string }[];
  /** numpy's runs (environment as is, then with OpenBLAS core-type overrides unset). */
  numpy: NumpyResult[];
  /** Sizes of the timed SAE step (k: features kept per row by the TopK step). */
  stepShape: { batch: number; d: number; features: number; k: number };
  /** The matmul figures. */
  matmul: MatmulRow[];
  /** numpy's runs of the training step. */
  numpyStep: NumpyStepResult[];
  /** numpy's runs of the TopK training step (written the dense way). */
  numpyTopkStep: NumpyStepResult[];
  /** Sizes of the small Standard step (absent when it was not timed). */
  smallStepShape?: { batch: number; d: number; features: number };
  /** numpy's runs of the Standard step at the small size. */
  numpySmallStep?: NumpyStepResult[];
  /**
   * One full training step per backend and architecture, the `Trainer` as users train it:
   * Standard (ReLU + L1, ConstrainedAdam) and TopK (arch-topk's plugin: sparse kernels, aux-k,
   * gradient clipping, ConstrainedAdam).
   */
  trainingStep: StepRow[];
}

/**
 * The trainer the bench times for an architecture (lr warm-up off, so every step moves the
 * parameters): Standard (ReLU + L1, ConstrainedAdam with renormalised decoder rows), or TopK
 * (arch-topk's `topk({ k })`: fused sparse encode and decode, aux-k, the decoder gradient's
 * parallel component removed, gradient norm clipped to 1, Adam, renormalised decoder rows).
 */
export function benchTrainer(arch: 'standard' | 'topk', o: BenchOptions, backend: string, seed = 0): Trainer {
  const architecture: ArchitecturePlugin<object> =
    arch === 'standard' ? standard({ l1Penalty: 0.1 }) : topk({ k: topkK(o) });
  return new Trainer(
    { architecture, dictSize: o.features, warmupSteps: 0, sparsityWarmupSteps: 0, seed },
    o.d,
    1_000_000,
    0,
    backend,
  );
}

/** Times one training step of the architecture's trainer ({@link benchTrainer}), best of `reps`. */
async function timeTrainingStep(
  arch: 'standard' | 'topk',
  o: BenchOptions,
  backend: Backend,
  onMemory?: (m: StepMemory) => void,
): Promise<number> {
  const dev = backend as DeviceMemoryCounters;
  dev.trimPool?.(); // the pool then holds only this trainer's buffers, not earlier benches'
  const trainer = benchTrainer(arch, o, backend.name);
  const x = randomNormal([o.batch, o.d], { seed: 3, backend: backend.name });
  try {
    // warm-up (TopK: b_dec's geometric-median init). Small steps take five: JavaScript reaches its
    // optimised code over the first steps, which at this size cost 10–25% more (measured on the
    // first small row of a run; a long training run is in the steady state).
    const warmups = o.batch * o.features < 2 ** 21 ? 5 : 1;
    for (let i = 0; i < warmups; i++) await trainer.update(x, false);
    resetPeakMemory(backend.name);
    dev.resetPeak?.();
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < stepReps(o); i++) {
      const t0 = performance.now();
      await trainer.update(x, false);
      await backend.sync?.();
      best = Math.min(best, (performance.now() - t0) / 1000);
    }
    if (onMemory) {
      const peakBytes = memory().backends[backend.name]?.peakBytes ?? 0;
      let paramBytes = 0;
      for (const v of Object.values(trainer.vars)) paramBytes += 4 * v.value.size;
      const floorBytes = 3 * paramBytes + 4 * o.batch * (o.d + o.features);
      const m: StepMemory = { peakBytes, paramBytes, floorBytes, peakToFloor: peakBytes / floorBytes };
      if (dev.stats) {
        m.devicePeakBytes = dev.stats.peakAllocatedBytes;
        m.poolBytes = dev.stats.pooledBytes;
      }
      onMemory(m);
    }
    return best;
  } finally {
    x.dispose();
    trainer.dispose();
  }
}

const gflops = (s: ProductSpec, seconds: number) => (2 * s.m * s.n * s.k) / seconds / 1e9;
const shapeOf = (s: ProductSpec) =>
  `${s.transA ? `[${s.k}×${s.m}]ᵀ` : `[${s.m}×${s.k}]`}·${s.transB ? `[${s.n}×${s.k}]ᵀ` : `[${s.k}×${s.n}]`}`;

/** Runs the benchmark and returns the report. */
export async function runBench(o: BenchOptions, log: (line: string) => void): Promise<BenchReport> {
  if (!findBackend('cpu')) registerBackend(createCpuBackend());
  // The second native route, so both are measured against numpy in the same run.
  if (!findBackend('cpu-ort'))
    registerBackend(createCpuBackend({ name: 'cpu-ort', fastMatmul: 'ort', priority: 99 }));
  // OpenBLAS whatever its kernels (the default takes it only where they are AVX-512 ones), with
  // the kernels it detects for this CPU whatever OPENBLAS_CORETYPE pins, as numpy's second run.
  if (!findBackend('cpu-blas'))
    registerBackend(
      createCpuBackend({ name: 'cpu-blas', fastMatmul: 'blas', blasKernels: 'detect', priority: 97 }),
    );
  if (o.includeTs && !findBackend('cpu-ts'))
    registerBackend(createCpuBackend({ name: 'cpu-ts', fastMatmul: false, priority: 98 }));
  const products = saeProducts(o.batch, o.d, o.features);
  const report: BenchReport = {
    machine: {
      cpus: availableParallelism(),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
    },
    backends: [],
    numpy: [],
    matmul: [],
    stepShape: { batch: o.batch, d: o.d, features: o.features, k: topkK(o) },
    numpyStep: [],
    numpyTopkStep: [],
    trainingStep: [],
  };
  const small = o.smallStep !== false;
  let bestNumpySmall: number | undefined;
  if (small) {
    report.smallStepShape = { ...SMALL_STEP };
    report.numpySmallStep = [];
  }
  // numpy's small step is timed right before the first small row, under the same machine load.
  let numpySmallDone = o.noNumpy;
  const numpySmall = () => {
    if (numpySmallDone) return bestNumpySmall;
    numpySmallDone = true;
    log('timing numpy training step at the small size…');
    for (const unset of [false, true]) {
      const s = { ...o, ...SMALL_STEP };
      const r = timeNumpyStep(s.batch, s.d, s.features, stepReps(s), unset);
      report.numpySmallStep?.push(r);
      if (r.available) bestNumpySmall = Math.min(bestNumpySmall ?? Number.POSITIVE_INFINITY, r.seconds);
    }
    return bestNumpySmall;
  };
  let bestNumpy: number[] | undefined;
  if (!o.noNumpy) {
    log('timing numpy…');
    for (const unset of [false, true]) {
      const r = timeNumpy(products, o.reps, unset);
      report.numpy.push(r);
      if (r.available) bestNumpy = bestNumpy ? bestNumpy.map((s, i) => Math.min(s, r.seconds[i])) : r.seconds;
    }
  }
  let bestNumpyStep: number | undefined;
  if (!o.noNumpy) {
    log('timing numpy training step…');
    for (const unset of [false, true]) {
      const r = timeNumpyStep(o.batch, o.d, o.features, Math.max(1, Math.min(o.reps, 5)), unset);
      report.numpyStep.push(r);
      if (r.available) bestNumpyStep = Math.min(bestNumpyStep ?? Number.POSITIVE_INFINITY, r.seconds);
    }
  }
  // numpy's TopK step is timed right before the first full-size TopK row, so both run under the
  // same machine load (the figures drift with other work on a shared machine).
  let numpyTopkDone = o.noNumpy;
  let bestNumpyTopk: number | undefined;
  const numpyTopk = () => {
    if (numpyTopkDone) return bestNumpyTopk;
    numpyTopkDone = true;
    log('timing numpy TopK training step…');
    for (const unset of [false, true]) {
      const r = timeNumpyTopkStep(
        o.batch,
        o.d,
        o.features,
        topkK(o),
        Math.max(1, Math.min(o.reps, 5)),
        unset,
      );
      report.numpyTopkStep.push(r);
      if (r.available) bestNumpyTopk = Math.min(bestNumpyTopk ?? Number.POSITIVE_INFINITY, r.seconds);
    }
    return bestNumpyTopk;
  };
  // CPU figures at other sizes, for the ratios of backends timed at reduced sizes.
  const cpuCache = new Map<string, number>();
  const cpuSeconds = async (key: string, time: (b: Backend) => Promise<number>) => {
    const cpu = findBackend('cpu');
    if (!cpu) return undefined;
    if (!cpuCache.has(key)) {
      await useBackend('cpu');
      cpuCache.set(key, await time(cpu));
    }
    return cpuCache.get(key);
  };
  for (const backend of listBackends()) {
    let status = 'ready';
    try {
      await useBackend(backend.name);
      const fp = (backend as { fastPath?: { active: boolean; description?: string; reason?: string } })
        .fastPath;
      if (fp)
        status = fp.active ? `ready, fast path: ${fp.description}` : `ready, plain TypeScript (${fp.reason})`;
      const adapter = (backend as { adapter?: string }).adapter;
      if (adapter) status = `ready, adapter: ${adapter}`;
    } catch (e) {
      report.backends.push({ name: backend.name, status: `unavailable: ${(e as Error).message}` });
      continue;
    }
    // Plain TypeScript and CPU-emulated GPUs (lavapipe, SwiftShader) would take minutes at full
    // size: they are timed at a quarter of the batch and of F, beside the CPU at that size.
    const reduced = backend.name === 'cpu-ts' || backend.autoSkipReason !== undefined;
    if (reduced) status += ' (timed at reduced size)';
    report.backends.push({ name: backend.name, status });
    const step = reduced
      ? { ...o, batch: Math.max(1, o.batch / 4), features: Math.max(1, o.features / 4) }
      : o;
    const specs = reduced ? saeProducts(step.batch, step.d, step.features) : products;
    const reps = reduced ? 1 : o.reps;
    for (let i = 0; i < specs.length; i++) {
      log(`timing ${backend.name}: ${specs[i].name}…`);
      await useBackend(backend.name);
      const seconds = await timeProduct(specs[i], backend, reps);
      const row: MatmulRow = {
        backend: backend.name,
        product: specs[i].name,
        shape: shapeOf(specs[i]),
        gflops: gflops(specs[i], seconds),
        seconds,
      };
      if (bestNumpy && !reduced) {
        row.numpyGflops = gflops(specs[i], bestNumpy[i]);
        row.ratioToNumpy = row.gflops / row.numpyGflops;
      }
      const native = (
        backend as {
          timeGemm?: (m: number, n: number, k: number, ta: boolean, tb: boolean, r?: number) => number;
        }
      ).timeGemm;
      if (native) {
        const sp = specs[i];
        row.cublasGflops = gflops(sp, native(sp.m, sp.n, sp.k, !!sp.transA, !!sp.transB, reps));
      }
      if (backend.name !== 'cpu') {
        const ref = await cpuSeconds(`mm:${row.shape}`, (cpu) => timeProduct(specs[i], cpu, reps));
        if (ref) row.ratioToCpu = ref / seconds;
      }
      report.matmul.push(row);
    }
    if (backend.name === 'cpu-ts') continue;
    const arches = [
      { arch: 'standard', numpy: () => bestNumpyStep, extra: '' },
      { arch: 'topk', numpy: numpyTopk, extra: `, k ${topkK(step)}` },
    ] as const;
    // One training-step row: the trainer's step on this backend, beside numpy's (when timed) and
    // the CPU's (other backends).
    const stepRow = async (
      arch: 'standard' | 'topk',
      s: BenchOptions,
      extra: string,
      numpySeconds: number | undefined,
      size?: 'small',
    ) => {
      log(`timing ${backend.name}: ${arch} training step${size ? ' at the small size' : ''}…`);
      await useBackend(backend.name);
      let memory: StepMemory | undefined;
      const seconds = await timeTrainingStep(arch, s, backend, (m) => {
        memory = m;
      });
      const row: StepRow = {
        backend: backend.name,
        arch,
        ...(size ? { size } : {}),
        shape: `batch ${s.batch}, d ${s.d}, F ${s.features}${extra}`,
        seconds,
        tokensPerSecond: s.batch / seconds,
        memory,
      };
      if (numpySeconds) {
        row.numpyTokensPerSecond = s.batch / numpySeconds;
        row.ratioToNumpy = row.tokensPerSecond / row.numpyTokensPerSecond;
      }
      if (backend.name !== 'cpu') {
        const ref = await cpuSeconds(`step:${size ?? arch}:${row.shape}`, (cpu) =>
          timeTrainingStep(arch, s, cpu),
        );
        if (ref) row.ratioToCpu = ref / seconds;
      }
      return row;
    };
    // The small row is timed first: right after the full-size rows, freeing their hundreds of MB
    // keeps this machine's kernel reclaiming memory for a while, and a 4 ms step measured then
    // ran 20–50% slower than the same step a minute later (4.8 vs 3.9 ms best of 20). It is
    // reported after them, so the first Standard row of --json stays the main size's.
    const smallRow =
      small && !reduced
        ? await stepRow('standard', { ...o, ...SMALL_STEP }, '', numpySmall(), 'small')
        : undefined;
    for (const a of arches)
      report.trainingStep.push(await stepRow(a.arch, step, a.extra, reduced ? undefined : a.numpy()));
    if (smallRow) report.trainingStep.push(smallRow);
  }
  return report;
}

/** Formats the report as a table for people. */
export function formatBench(r: BenchReport): string {
  const lines = [`machine: ${r.machine.cpus} CPUs, Node ${r.machine.node}, ${r.machine.platform}`];
  for (const b of r.backends) lines.push(`backend ${b.name}: ${b.status}`);
  for (const n of r.numpy)
    lines.push(n.available ? `numpy ${n.version} (${n.variant})` : `numpy: ${n.reason}`);
  const topkFailed = r.numpyTopkStep.find((n) => !n.available);
  if (topkFailed && !topkFailed.available) lines.push(`numpy TopK step: ${topkFailed.reason}`);
  lines.push('');
  const head = ['backend', 'product', 'shape', 'GFLOP/s', 'numpy GFLOP/s', 'vs numpy', 'vs cpu'];
  const rows = r.matmul.map((m) => [
    m.backend,
    m.product,
    m.shape,
    m.gflops.toFixed(1),
    m.numpyGflops?.toFixed(1) ?? '–',
    m.ratioToNumpy?.toFixed(2) ?? '–',
    m.ratioToCpu?.toPrecision(2) ?? '–',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const fmt = (row: string[]) => row.map((c, i) => c.padEnd(widths[i])).join('  ');
  lines.push(fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt));
  if (r.trainingStep.length > 0) {
    lines.push(
      '',
      'training step (the Trainer: forward, backward, optimizer; standard: ReLU + L1, ConstrainedAdam; topk: arch-topk with sparse kernels, aux-k, clip-norm 1, ConstrainedAdam; numpy: the same step written the dense way)',
    );
    const h2 = [
      'backend',
      'arch',
      'sizes',
      'ms/step',
      'tokens/s',
      'numpy tokens/s',
      'vs numpy',
      'vs cpu',
      'peak MB',
      'vs floor',
      'device MB (pool)',
    ];
    const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
    const rows2 = r.trainingStep.map((t) => [
      t.backend,
      t.arch,
      t.shape,
      (t.seconds * 1000).toFixed(1),
      t.tokensPerSecond.toFixed(0),
      t.numpyTokensPerSecond?.toFixed(0) ?? '–',
      t.ratioToNumpy?.toFixed(2) ?? '–',
      t.ratioToCpu?.toPrecision(2) ?? '–',
      t.memory ? mb(t.memory.peakBytes) : '–',
      t.memory ? t.memory.peakToFloor.toFixed(2) : '–',
      t.memory?.devicePeakBytes !== undefined
        ? `${mb(t.memory.devicePeakBytes)} (${mb(t.memory.poolBytes ?? 0)})`
        : '–',
    ]);
    const w2 = h2.map((h, i) => Math.max(h.length, ...rows2.map((row) => row[i].length)));
    const fmt2 = (row: string[]) => row.map((c, i) => c.padEnd(w2[i])).join('  ');
    lines.push(fmt2(h2), w2.map((w) => '-'.repeat(w)).join('  '), ...rows2.map(fmt2));
    lines.push(
      'peak MB: live tensors at most over the timed steps; vs floor: peak over params + 2×params (Adam) + one batch of activations and features; device MB: GPU buffers at most, live or pooled (pool after the steps)',
    );
  }
  return lines.join('\n');
}
