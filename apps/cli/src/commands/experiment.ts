// The recipes name their architectures; registering them here keeps this module usable alone.
import '@dictlearn/arch-standard/register';
import '@dictlearn/arch-lista/register';
import '@dictlearn/arch-blockdiag/register';
import { SyntheticSource } from '@dictlearn/buffer';
import {
  type ActivationSource,
  type ArchitecturePlugin,
  createArchitecture,
  type Dictionary,
  type GroundTruthSource,
  type Tensor,
  type TrainerSpec,
  tensor,
  trainSAE,
  useBackend,
} from '@dictlearn/core';
import {
  amortisationGap,
  evaluate,
  featureDensity,
  groundTruthRecovery,
  groupSparsity,
  mmcs,
} from '@dictlearn/eval';
import { ConfigError } from './train-config.js';

/**
 * `dictlearn experiment NAME`: the sparse-coding experiments of the sparse_coding research code
 * as one command each, on synthetic data with known features (REFERENCE "Synthetic data"), with
 * plain tables (plots come with the report). Every recipe trains its dictionaries in one pass
 * over one stream (trainSAE), scores them on held-out samples, and takes `--seed` for the data
 * and every init (separate Philox domains: the init cannot see the truth).
 */

/** The recipes, in the order of `--help`. */
export const EXPERIMENTS = ['l1-sweep', 'dict-size', 'encoders', 'heads'] as const;
/** A recipe name. */
export type ExperimentName = (typeof EXPERIMENTS)[number];

/** What each recipe asks, for `--help` and the table titles. */
export const EXPERIMENT_DESCRIPTIONS: Readonly<Record<ExperimentName, string>> = {
  'l1-sweep': 'the L0–FVU frontier and recovery of the true features across L1 penalties, untied vs tied',
  'dict-size': 'dictionaries of growing size on the same data: MMCS between neighbours and to the truth',
  encoders: 'ReLU vs LISTA encoders vs FISTA-optimal codes on the same decoders, at matched L0',
  heads: 'block-diagonal (per-head) vs dense dictionaries on data whose true features each live in one block',
};

/** Data and run sizes of a recipe. */
export interface ExperimentSize {
  /** Width d. */
  dim: number;
  /** True features. */
  numFeatures: number;
  /** Mean active true features per sample. */
  meanActive: number;
  /** Features F of a dictionary (the recipes scale it where they sweep it). */
  dictSize: number;
  /** Training steps. */
  steps: number;
  /** Rows per step. */
  batchSize: number;
  /** Held-out rows scored. */
  evalRows: number;
  /** FISTA iterations per solve (encoders). */
  fistaIterations: number;
}

/**
 * Default sizes, each recipe running in minutes on two CPU cores: d = 64 with 128 true features
 * (the REFERENCE ratio of true features to width, 2, at a quarter of its width), F = 256; the
 * encoders recipe on a harder task, 256 true features in d = 32 (8 per dimension), where a
 * one-layer encoder's interference costs it features that an iterative encoder still finds.
 */
export const DEFAULT_SIZES: Readonly<Record<ExperimentName, ExperimentSize>> = (() => {
  const common: ExperimentSize = {
    dim: 64,
    numFeatures: 128,
    meanActive: 5,
    dictSize: 256,
    steps: 2000,
    batchSize: 512,
    evalRows: 2048,
    fistaIterations: 300,
  };
  return Object.freeze({
    'l1-sweep': Object.freeze({ ...common }),
    'dict-size': Object.freeze({ ...common }),
    encoders: Object.freeze({ ...common, dim: 32, numFeatures: 256, dictSize: 512, steps: 1500 }),
    heads: Object.freeze({ ...common }),
  });
})();

/** `--tiny`: seconds per recipe, for the CI test that every recipe runs end to end. */
export const TINY_SIZE: ExperimentSize = {
  dim: 16,
  numFeatures: 24,
  meanActive: 3,
  dictSize: 32,
  steps: 30,
  batchSize: 64,
  evalRows: 128,
  fistaIterations: 40,
};

/** Options of {@link runExperiment}. */
export interface ExperimentOptions {
  /** Seed of the data and of every init (default 0). */
  seed?: number;
  /** Sizes (default: the recipe's {@link DEFAULT_SIZES}); any field may be overridden alone. */
  size?: Partial<ExperimentSize>;
  /** Backend (default `auto`). */
  backend?: string;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
}

/** One table of a result: columns and rows of formatted cells. */
export interface ExperimentTable {
  /** What the table shows. */
  title: string;
  /** Column heads. */
  columns: string[];
  /** Formatted cells, one array per row. */
  rows: string[][];
}

/** What a recipe returns: tables to print and the raw numbers (for `--json`). */
export interface ExperimentResult {
  /** The recipe. */
  name: ExperimentName;
  /** The seed. */
  seed: number;
  /** The sizes it ran at. */
  size: ExperimentSize;
  /** Backend. */
  backend: string;
  /** Wall-clock seconds. */
  seconds: number;
  /** Tables. */
  tables: ExperimentTable[];
  /** One record per trained dictionary (or summary line), unformatted. */
  records: Record<string, unknown>[];
  /** Sentences under the tables (how to read them, what was matched). */
  notes: string[];
}

/** Figures of one trained dictionary on held-out data. */
interface Scored {
  l0: number;
  fve: number;
  dead: number;
  mmcs: number;
  recovered: number;
}

/** The short schedule every recipe uses (the demo's: lr 1e-2, warm-ups 100 / 300 steps). */
function schedule(size: ExperimentSize) {
  return {
    lr: 1e-2,
    warmupSteps: Math.min(100, Math.floor(size.steps / 10)),
    sparsityWarmupSteps: Math.min(300, Math.floor(size.steps / 5)),
  };
}
/** Dead-feature resampling where the architecture supports it (every 200 steps; the demo's). */
function resampling(arch: ArchitecturePlugin<object>, size: ExperimentSize): number | undefined {
  return arch.resample ? Math.max(10, Math.min(200, Math.floor(size.steps / 5))) : undefined;
}

function synthetic(size: ExperimentSize, seed: number): SyntheticSource {
  return new SyntheticSource({
    dim: size.dim,
    numFeatures: size.numFeatures,
    meanActive: size.meanActive,
    noise: 0.1,
    decay: 0.99,
    seed,
  });
}

/** Held-out samples: far beyond anything a run trains on. */
const HELD_OUT = 2 ** 40;

/** A synthetic source whose batches can start at any sample (held-out ranges). */
interface RangeSource extends GroundTruthSource {
  batches(options: { batchSize: number; backend?: string; start?: number }): AsyncIterable<Tensor>;
}

function heldOut(source: RangeSource, size: ExperimentSize, backend: string) {
  return {
    batches: () => source.batches({ batchSize: Math.min(size.evalRows, 1024), start: HELD_OUT, backend }),
    maxBatches: Math.max(1, Math.round(size.evalRows / Math.min(size.evalRows, 1024))),
  };
}

async function score(
  dict: Dictionary,
  source: RangeSource,
  size: ExperimentSize,
  backend: string,
): Promise<Scored> {
  const h = heldOut(source, size, backend);
  const m = await evaluate(dict, h.batches(), { maxBatches: h.maxBatches });
  const truth = source.groundTruth(backend);
  const rows = dict.decoderRows();
  try {
    const r = await groundTruthRecovery(rows, truth, 0.9);
    return {
      l0: m.l0,
      fve: m.frac_variance_explained,
      dead: 1 - m.frac_alive,
      mmcs: r.mmcs,
      recovered: r.fractionRecovered,
    };
  } finally {
    rows.dispose();
    truth.dispose();
  }
}

async function train(
  source: ActivationSource,
  trainers: TrainerSpec[],
  size: ExperimentSize,
  backend: string,
  progress: (line: string) => void,
): Promise<Dictionary[]> {
  let last = 0;
  const result = await trainSAE({
    data: source,
    batchSize: size.batchSize,
    trainers,
    steps: size.steps,
    backend,
    logEvery: Math.max(1, size.steps),
    onStep: (step) => {
      // A line every ~10% of the run: enough to see it move, not a flood in a log file.
      if (step - last >= Math.max(1, Math.floor(size.steps / 10)) || step === size.steps) {
        last = step;
        progress(`step ${step}/${size.steps} (${trainers.length} dictionaries)`);
      }
    },
  });
  return result.dictionaries;
}

const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
const f4 = (v: number) => v.toFixed(4);
const f2 = (v: number) => v.toFixed(2);
/** The L0, FVE, MMCS, recovered and dead cells of a record, as the recipes' tables show them. */
const metricCells = (r: Record<string, unknown>): string[] => [
  f2(r.l0 as number),
  f4(r.fve as number),
  f4(r.mmcs as number),
  pct(r.recovered as number),
  pct(r.dead as number),
];

function spec(
  name: string,
  arch: ArchitecturePlugin<object>,
  dictSize: number,
  size: ExperimentSize,
  seed: number,
): TrainerSpec {
  return {
    name,
    architecture: arch,
    dictSize,
    seed,
    ...schedule(size),
    resampleSteps: resampling(arch, size) ?? null,
  };
}

const arch = (name: string, config: Record<string, unknown>) => createArchitecture(name, config);

/** l1-sweep: standard and tied SAEs over L1 penalties, in one pass. */
async function l1Sweep(size: ExperimentSize, seed: number, backend: string, progress: (l: string) => void) {
  const penalties = [0.03, 0.1, 0.3];
  const source = synthetic(size, seed);
  const runs: { kind: string; l1: number }[] = [];
  const specs: TrainerSpec[] = [];
  for (const kind of ['standard', 'tied']) {
    for (const l1 of penalties) {
      runs.push({ kind, l1 });
      specs.push(spec(`${kind}_${l1}`, arch(kind, { l1Penalty: l1 }), size.dictSize, size, seed));
    }
  }
  const dicts = await train(source, specs, size, backend, progress);
  const records: Record<string, unknown>[] = [];
  try {
    for (let i = 0; i < dicts.length; i++) {
      records.push({
        architecture: runs[i].kind,
        l1Penalty: runs[i].l1,
        ...(await score(dicts[i], source, size, backend)),
      });
    }
  } finally {
    for (const d of dicts) d.dispose();
  }
  const table: ExperimentTable = {
    title: `L0–FVU frontier, F = ${size.dictSize}, ${size.numFeatures} true features in d = ${size.dim}`,
    columns: ['arch', 'λ', 'L0', 'FVU', 'MMCS', 'recovered', 'dead'],
    rows: records.map((r) => [
      String(r.architecture),
      String(r.l1Penalty),
      f2(r.l0 as number),
      f4(1 - (r.fve as number)),
      f4(r.mmcs as number),
      pct(r.recovered as number),
      pct(r.dead as number),
    ]),
  };
  return {
    tables: [table],
    records,
    notes: [
      'FVU = 1 − FVE on held-out samples; MMCS and recovered (cosine > 0.9) compare the true features with the decoder rows.',
      `true L0 ≈ ${size.meanActive}; standard and tied are resampled every ${resampling(arch('standard', {}), size)} steps.`,
    ],
  };
}

/** dict-size: standard SAEs of growing size; MMCS between neighbours and to the truth. */
async function dictSize(size: ExperimentSize, seed: number, backend: string, progress: (l: string) => void) {
  const sizes = [0.5, 1, 2, 4].map((m) => Math.max(2, Math.round(m * size.numFeatures)));
  const source = synthetic(size, seed);
  const specs = sizes.map((F) => spec(`standard_F${F}`, arch('standard', { l1Penalty: 0.1 }), F, size, seed));
  const dicts = await train(source, specs, size, backend, progress);
  const records: Record<string, unknown>[] = [];
  try {
    for (let i = 0; i < dicts.length; i++) {
      const s = await score(dicts[i], source, size, backend);
      const rec: Record<string, unknown> = { dictSize: sizes[i], ...s };
      if (i > 0) {
        const small = dicts[i - 1].decoderRows();
        const large = dicts[i].decoderRows();
        try {
          rec.smallerInLarger = (await mmcs(small, large)).mmcs;
          rec.largerInSmaller = (await mmcs(large, small)).mmcs;
        } finally {
          small.dispose();
          large.dispose();
        }
      }
      records.push(rec);
    }
  } finally {
    for (const d of dicts) d.dispose();
  }
  const table: ExperimentTable = {
    title: `growing dictionaries (standard, λ 0.1) on ${size.numFeatures} true features in d = ${size.dim}`,
    columns: ['F', 'L0', 'FVE', 'MMCS truth', 'recovered', 'dead', 'prev in this', 'this in prev'],
    rows: records.map((r) => [
      String(r.dictSize),
      ...metricCells(r),
      r.smallerInLarger === undefined ? '–' : f4(r.smallerInLarger as number),
      r.largerInSmaller === undefined ? '–' : f4(r.largerInSmaller as number),
    ]),
  };
  return {
    tables: [table],
    records,
    notes: [
      '"prev in this": MMCS of the next-smaller dictionary\'s decoder rows against this one\'s (does the bigger dictionary contain the smaller one\'s features?); "this in prev" the other way round.',
    ],
  };
}

/** Linear interpolation of y at x = target over points sorted by x (clamped at the ends). */
export function interpolate(
  points: { x: number; y: number }[],
  target: number,
): { y: number; clamped: boolean } {
  const p = [...points].sort((a, b) => a.x - b.x);
  if (target <= p[0].x) return { y: p[0].y, clamped: target < p[0].x };
  if (target >= p[p.length - 1].x) return { y: p[p.length - 1].y, clamped: target > p[p.length - 1].x };
  for (let i = 1; i < p.length; i++) {
    if (target <= p[i].x) {
      const t = (target - p[i - 1].x) / (p[i].x - p[i - 1].x || 1);
      return { y: p[i - 1].y + t * (p[i].y - p[i - 1].y), clamped: false };
    }
  }
  return { y: p[p.length - 1].y, clamped: true };
}

/** The encoders each recipe compares: label, registry name, config. */
const ENCODERS: { label: string; name: string; config: Record<string, unknown> }[] = [
  { label: 'relu', name: 'standard', config: {} },
  { label: 'lista', name: 'lista', config: { iterations: 3, variant: 'ista' } },
  { label: 'lista-fista', name: 'lista', config: { iterations: 3, variant: 'fista' } },
];

/**
 * encoders: ReLU (standard) and LISTA (ISTA and FISTA-momentum, 3 iterations) at several L1
 * penalties in one pass; for every dictionary FISTA-optimal codes on its own decoder at its own
 * L0 (the amortisation gap); then each encoder's figures interpolated at the true L0.
 */
async function encoders(size: ExperimentSize, seed: number, backend: string, progress: (l: string) => void) {
  const penalties = [0.1, 0.2, 0.4];
  const source = synthetic(size, seed);
  const runs: { label: string; l1: number }[] = [];
  const specs: TrainerSpec[] = [];
  for (const e of ENCODERS) {
    for (const l1 of penalties) {
      runs.push({ label: e.label, l1 });
      specs.push(
        spec(`${e.label}_${l1}`, arch(e.name, { ...e.config, l1Penalty: l1 }), size.dictSize, size, seed),
      );
    }
  }
  const dicts = await train(source, specs, size, backend, progress);
  const records: Record<string, unknown>[] = [];
  try {
    for (let i = 0; i < dicts.length; i++) {
      const s = await score(dicts[i], source, size, backend);
      progress(`FISTA codes for ${runs[i].label} λ ${runs[i].l1} (${i + 1}/${dicts.length})`);
      // One held-out batch of at most 512 rows: each FISTA solve is two products per iteration
      // over the whole batch, and λ is bisected (warm-started) until the L0s match.
      const rows = Math.min(512, size.evalRows);
      const gap = await amortisationGap(
        dicts[i],
        source.batches({ batchSize: rows, start: HELD_OUT, backend }),
        {
          codes: 'fista',
          iterations: size.fistaIterations,
          maxBatches: 1,
          nonNegative: true,
        },
      );
      records.push({
        encoder: runs[i].label,
        l1Penalty: runs[i].l1,
        ...s,
        fistaL0: gap.optimal.l0,
        fistaFve: gap.optimal.fve,
        fistaL1Penalty: gap.optimal.l1Penalty,
      });
    }
  } finally {
    for (const d of dicts) d.dispose();
  }
  const perRun: ExperimentTable = {
    title: `ReLU vs LISTA encoders, F = ${size.dictSize}, ${size.numFeatures} true features in d = ${size.dim}`,
    columns: ['encoder', 'λ', 'L0', 'FVE', 'MMCS', 'recovered', 'dead', 'FISTA L0', 'FISTA FVE'],
    rows: records.map((r) => [
      String(r.encoder),
      String(r.l1Penalty),
      ...metricCells(r),
      f2(r.fistaL0 as number),
      f4(r.fistaFve as number),
    ]),
  };
  // The L0 every encoder reaches within its penalties: the middle (geometric) of the common
  // range; without overlap, the true L0 and the nearest runs (marked *).
  // A run whose features all died (L0 ≈ 0) is no point on the frontier: left out (and counted).
  const live = (r: Record<string, unknown>) => (r.l0 as number) >= 0.5;
  const collapsed = records.filter((r) => !live(r)).length;
  const ranges = ENCODERS.map((e) =>
    records.filter((r) => r.encoder === e.label && live(r)).map((r) => r.l0 as number),
  ).filter((r) => r.length > 0);
  const low = Math.max(...ranges.map((r) => Math.min(...r)));
  const high = Math.min(...ranges.map((r) => Math.max(...r)));
  const overlap = ranges.length > 0 && low <= high;
  const target = overlap ? Math.sqrt(low * high) : size.meanActive;
  const matched: Record<string, unknown>[] = [];
  for (const e of ENCODERS) {
    const mine = records.filter((r) => r.encoder === e.label && live(r));
    if (mine.length === 0) continue;
    const at = (key: string) =>
      interpolate(
        mine.map((r) => ({ x: r.l0 as number, y: r[key] as number })),
        target,
      );
    const fve = at('fve');
    matched.push({
      encoder: e.label,
      l0: target,
      clamped: fve.clamped,
      recovered: at('recovered').y,
      mmcs: at('mmcs').y,
      fve: fve.y,
      fistaFve: at('fistaFve').y,
    });
  }
  const summary: ExperimentTable = {
    title: `at matched L0 = ${target.toFixed(2)} (${overlap ? "inside every encoder's range" : 'the true L0'}; linear interpolation in L0 between the penalties)`,
    columns: ['encoder', 'recovered', 'MMCS', 'FVE', 'FISTA FVE', 'FVE / FISTA'],
    rows: matched.map((m) => [
      `${m.encoder}${m.clamped ? ' *' : ''}`,
      pct(m.recovered as number),
      f4(m.mmcs as number),
      f4(m.fve as number),
      f4(m.fistaFve as number),
      pct((m.fve as number) / (m.fistaFve as number)),
    ]),
  };
  return {
    tables: [perRun, summary],
    records: [...records, ...matched.map((m) => ({ ...m, summary: true }))],
    notes: [
      "FISTA L0 / FVE: non-negative FISTA codes on the same decoder, λ bisected until their L0 matches the encoder's (the amortisation gap is FISTA FVE − FVE).",
      "* the matched L0 lies outside this encoder's range: its nearest run is shown.",
      ...(collapsed
        ? [`${collapsed} run(s) lost every feature (L0 ≈ 0) and are left out of the matched-L0 table.`]
        : []),
    ],
  };
}

/**
 * Synthetic data in H blocks: block h is its own synthetic source (d/H columns, G/H true
 * features, mean active K/H, noise 0.1/√H so the whole sample's noise norm stays ≈ 0.1), so
 * every true feature lives in one block (the per-head structure of attention outputs).
 */
class BlockSource implements RangeSource {
  readonly name: string;
  readonly dim: number;
  readonly #blocks: SyntheticSource[];

  constructor(size: ExperimentSize, heads: number, seed: number) {
    this.dim = size.dim;
    this.name = `blocks(${heads} × d=${size.dim / heads}, seed=${seed})`;
    // Block h's seed is seed·64 + h: distinct for every (seed, block) with H ≤ 64.
    this.#blocks = Array.from(
      { length: heads },
      (_, h) =>
        new SyntheticSource({
          dim: size.dim / heads,
          numFeatures: size.numFeatures / heads,
          meanActive: size.meanActive / heads,
          noise: 0.1 / Math.sqrt(heads),
          decay: 0.99,
          seed: seed * 64 + h,
        }),
    );
  }

  groundTruth(backend?: string): Tensor {
    const H = this.#blocks.length;
    const dh = this.dim / H;
    const g = this.#blocks[0].numFeatures;
    const out = new Float32Array(H * g * this.dim);
    this.#blocks.forEach((b, h) => {
      const rows = b.groundTruthHost();
      for (let r = 0; r < g; r++)
        for (let j = 0; j < dh; j++) out[(h * g + r) * this.dim + h * dh + j] = rows[r * dh + j];
    });
    return tensor(out, [H * g, this.dim], { backend });
  }

  async *batches(options: { batchSize: number; backend?: string; start?: number }): AsyncGenerator<Tensor> {
    const H = this.#blocks.length;
    const dh = this.dim / H;
    let next = options.start ?? 0;
    for (;;) {
      const out = new Float32Array(options.batchSize * this.dim);
      this.#blocks.forEach((b, h) => {
        const part = b.sampleHost(next, options.batchSize);
        for (let r = 0; r < options.batchSize; r++)
          for (let j = 0; j < dh; j++) out[r * this.dim + h * dh + j] = part[r * dh + j];
      });
      yield tensor(out, [options.batchSize, this.dim], { backend: options.backend });
      next += options.batchSize;
    }
  }
}

/** heads: block-diagonal vs dense standard SAEs on block-structured data. */
async function heads(size: ExperimentSize, seed: number, backend: string, progress: (l: string) => void) {
  const H = 4;
  const source = new BlockSource(size, H, seed);
  const inner = { l1Penalty: 0.1 };
  const runs = [
    { label: 'dense', arch: arch('standard', inner) },
    {
      label: `blockdiag ×${H}`,
      arch: arch('blockdiag', { heads: H, inner: 'standard', innerConfig: inner }),
    },
  ];
  const specs = runs.map((r) => spec(r.label.replace(/\W+/g, '_'), r.arch, size.dictSize, size, seed));
  const dicts = await train(source, specs, size, backend, progress);
  const records: Record<string, unknown>[] = [];
  try {
    for (let i = 0; i < dicts.length; i++) {
      const s = await score(dicts[i], source, size, backend);
      const params = Object.values(dicts[i].params).reduce((a, t) => a + t.size, 0);
      const rec: Record<string, unknown> = { architecture: runs[i].label, params, ...s };
      if (i === 1) {
        const h = heldOut(source, size, backend);
        const density = await featureDensity(dicts[i], h.batches(), { maxBatches: h.maxBatches });
        const g = groupSparsity(density, H);
        rec.headL0 = g.l0;
        rec.headDead = g.deadFraction;
      }
      records.push(rec);
    }
  } finally {
    for (const d of dicts) d.dispose();
  }
  const table: ExperimentTable = {
    title: `block-diagonal vs dense, F = ${size.dictSize}, ${H} blocks of d/${H} = ${size.dim / H} with ${size.numFeatures / H} true features each`,
    columns: ['arch', 'params', 'L0', 'L0 per head', 'FVE', 'MMCS', 'recovered', 'dead', 'dead per head'],
    rows: records.map((r) => [
      String(r.architecture),
      String(r.params),
      f2(r.l0 as number),
      r.headL0 ? (r.headL0 as number[]).map(f2).join(' ') : '–',
      f4(r.fve as number),
      f4(r.mmcs as number),
      pct(r.recovered as number),
      pct(r.dead as number),
      r.headDead ? (r.headDead as number[]).map((v) => pct(v)).join(' ') : '–',
    ]),
  };
  return {
    tables: [table],
    records,
    notes: [
      'Each true feature lives in one block; a block-diagonal head sees only its block, so every feature it learns belongs to one head by construction.',
    ],
  };
}

const RECIPES = { 'l1-sweep': l1Sweep, 'dict-size': dictSize, encoders, heads } as const;

/** Runs one recipe; throws a ConfigError for an unknown name or a bad size. */
export async function runExperiment(
  name: string,
  options: ExperimentOptions = {},
): Promise<ExperimentResult> {
  if (!(EXPERIMENTS as readonly string[]).includes(name)) {
    throw new ConfigError(`unknown experiment '${name}' (experiments: ${EXPERIMENTS.join(', ')})`);
  }
  const size = { ...DEFAULT_SIZES[name as ExperimentName], ...options.size };
  for (const [k, v] of Object.entries(size)) {
    if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) {
      throw new ConfigError(`experiment size '${k}' must be a positive number, got ${String(v)}`);
    }
  }
  if (size.dim % 4 !== 0 || size.numFeatures % 4 !== 0 || size.dictSize % 4 !== 0) {
    throw new ConfigError(
      `experiment sizes dim, numFeatures and dictSize must be multiples of 4 (the heads recipe splits them in 4), got ${size.dim}, ${size.numFeatures}, ${size.dictSize}`,
    );
  }
  const seed = options.seed ?? 0;
  const progress = options.progress ?? (() => {});
  const backend = await useBackend(options.backend ?? 'auto', { log: progress });
  const started = performance.now();
  const out = await RECIPES[name as ExperimentName](size, seed, backend.name, progress);
  return {
    name: name as ExperimentName,
    seed,
    size,
    backend: backend.name,
    seconds: (performance.now() - started) / 1000,
    ...out,
  };
}

function formatTable(t: ExperimentTable): string {
  const widths = t.columns.map((h, i) => Math.max(h.length, ...t.rows.map((r) => r[i].length)));
  const fmt = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [t.title, fmt(t.columns), widths.map((w) => '-'.repeat(w)).join('  '), ...t.rows.map(fmt)].join(
    '\n',
  );
}

/** The printed result: a header line, each table, the notes. */
export function formatExperiment(r: ExperimentResult): string {
  const head = `experiment ${r.name} (seed ${r.seed}): ${EXPERIMENT_DESCRIPTIONS[r.name]}; ${r.size.steps} steps of ${r.size.batchSize} rows on ${r.backend} in ${r.seconds.toFixed(1)} s`;
  return [head, '', ...r.tables.flatMap((t) => [formatTable(t), '']), ...r.notes].join('\n');
}
