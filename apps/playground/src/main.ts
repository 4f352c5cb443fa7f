/**
 * The playground page: a form (data, architecture and its hyper-parameters, training), a sweep
 * trained side by side, live curves, and the learned features against the true ones.
 */
import '@dictlearn/arch-standard/register';
import '@dictlearn/arch-topk/register';
import '@dictlearn/arch-gated/register';
import '@dictlearn/arch-jumprelu/register';
import '@dictlearn/arch-lista/register';
import '@dictlearn/arch-blockdiag/register';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { createWebGPUBackend } from '@dictlearn/backend-webgpu';
import { SyntheticSource } from '@dictlearn/buffer';
import { type ActivationSource, type Dictionary, registerBackend, scope, tensor } from '@dictlearn/core';
import { groundTruthRecovery } from '@dictlearn/eval';
import { CURVE_METRICS, type CurvePoint, trainingCurvesSpec } from '@dictlearn/report/specs';
import { type BackendChoice, chooseBackend } from './backend-choice.js';
import { render, ThrottledChart } from './charts.js';
import { type FeatureMatch, firingFrequency, matchFeatures, topSamples, unitRow } from './features.js';
import {
  type ArchField,
  architectureFields,
  architectureNames,
  expandSweep,
  fieldText,
  parseFieldValues,
  type SweepAxis,
} from './fields.js';
import { PLOTTED_METRICS, type RunSetting, runSweep } from './run.js';
import { featureRowSpec, type RecoveryPoint, recoverySpec } from './specs.js';
import { ArraySource, parseNpy, type UploadedArray } from './upload.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const num = (id: string) => Number($<HTMLInputElement>(id).value);

registerBackend(createCpuBackend());
registerBackend(createWebGPUBackend());

/** Samples evaluated after training for firing frequencies and top-activating samples. */
const EVAL_ROWS = 512;
/** Where the held-out synthetic samples start (far past any training batch). */
const EVAL_START = 2 ** 40;
/** Cosine above which a true feature counts as recovered (REFERENCE: sparse_coding's 0.9). */
const RECOVERED = 0.9;

/** One trained setting, as the feature view needs it. */
interface SettingResult {
  label: string;
  dictSize: number;
  /** Decoder rows [F, d] (host). */
  learned: Float32Array;
  /** Matches of learned rows to true features, sorted by cosine (synthetic data only). */
  matches: FeatureMatch[] | undefined;
  /** Codes of the evaluation rows [EVAL_ROWS, F]. */
  codes: Float32Array;
  frequency: Float64Array;
}

/** What the page knows about the last run; on `window` for the browser test and the curious. */
const state = {
  backend: undefined as BackendChoice | undefined,
  points: [] as CurvePoint[],
  settings: [] as {
    label: string;
    architecture: string;
    config: Record<string, unknown>;
    dictSize: number;
  }[],
  results: [] as SettingResult[],
  dim: 0,
  /** True features [G, d] of synthetic data. */
  truth: undefined as Float32Array | undefined,
  /** Rows of the evaluation batch [EVAL_ROWS, d]. */
  evalRows: undefined as Float32Array | undefined,
  done: false,
};
(window as unknown as { dictlearnPlayground: typeof state }).dictlearnPlayground = state;

let uploaded: UploadedArray | undefined;
/** The synthetic source of the last run (its samples' true codes, for the drill-down). */
let runSource: SyntheticSource | undefined;
let controller: AbortController | undefined;

function showError(e: unknown): void {
  $('error').textContent = e instanceof Error ? e.message : String(e);
}

// ---- the form ------------------------------------------------------------------------------

function sizes() {
  const dim = $<HTMLSelectElement>('dataKind').value === 'npy' && uploaded ? uploaded.dim : num('dim');
  const dictSize = Number($<HTMLInputElement>('dictSize').value.split(',')[0]) || 128;
  return { dim, dictSize, meanActive: num('meanActive') || 1 };
}

/** Draws the fields of the chosen architecture, keeping what the user already typed. */
function renderArchFields(): void {
  const box = $('arch-fields');
  const typed = new Map<string, string>();
  for (const input of box.querySelectorAll<HTMLInputElement>('input[data-touched]')) {
    typed.set(input.dataset.key!, input.value);
  }
  box.replaceChildren();
  let fields: ArchField[];
  try {
    fields = architectureFields($<HTMLSelectElement>('arch').value, sizes());
  } catch (e) {
    box.textContent = (e as Error).message;
    return;
  }
  for (const f of fields) {
    const label = document.createElement('label');
    label.className = 'f';
    const name = document.createElement('span');
    name.textContent = f.key;
    if (f.required) name.className = 'req';
    const input = document.createElement('input');
    input.type = 'text';
    input.dataset.key = f.key;
    input.dataset.kind = f.kind;
    input.value = typed.get(f.key) ?? fieldText(f, f.value);
    if (typed.has(f.key)) input.dataset.touched = '';
    input.title = `${f.kind}${f.required ? ' (required; the page suggests a value)' : `, plugin default ${fieldText(f, f.value)}`}`;
    input.addEventListener('input', () => {
      input.dataset.touched = '';
    });
    label.append(name, input);
    box.append(label);
  }
}

function setupForm(): void {
  const arch = $<HTMLSelectElement>('arch');
  for (const name of architectureNames())
    arch.add(new Option(name, name, name === 'standard', name === 'standard'));
  arch.addEventListener('change', () => {
    for (const i of $('arch-fields').querySelectorAll('input')) delete i.dataset.touched;
    renderArchFields();
  });
  for (const id of ['dim', 'dictSize', 'meanActive']) $(id).addEventListener('change', renderArchFields);
  $<HTMLSelectElement>('dataKind').addEventListener('change', () => {
    const npy = $<HTMLSelectElement>('dataKind').value === 'npy';
    $('synthetic-knobs').hidden = npy;
    $('npy-knobs').hidden = !npy;
    renderArchFields();
  });
  $<HTMLInputElement>('npy').addEventListener('change', async () => {
    const file = $<HTMLInputElement>('npy').files?.[0];
    uploaded = undefined;
    if (!file) return;
    try {
      uploaded = parseNpy(new Uint8Array(await file.arrayBuffer()), file.name);
      $('npy-status').textContent = `${file.name}: ${uploaded.rows} rows × d = ${uploaded.dim}`;
      $('error').textContent = '';
      renderArchFields();
    } catch (e) {
      $('npy-status').textContent = 'not loaded';
      showError(e);
    }
  });
  renderArchFields();
}

/** Positive-integer value of an input, or an error naming it. */
function intField(id: string, what: string, min = 1): number {
  const v = num(id);
  if (!Number.isInteger(v) || v < min)
    throw new Error(`${what} must be an integer ≥ ${min}, got '${$<HTMLInputElement>(id).value}'`);
  return v;
}

/** The settings the form describes: one per combination of the comma-separated values. */
function settingsFromForm(): RunSetting[] {
  const architecture = $<HTMLSelectElement>('arch').value;
  const axes: SweepAxis[] = [];
  for (const input of $('arch-fields').querySelectorAll<HTMLInputElement>('input[data-key]')) {
    const kind = input.dataset.kind as ArchField['kind'];
    axes.push({ key: input.dataset.key!, values: parseFieldValues(input.dataset.key!, kind, input.value) });
  }
  const trainerKeys = ['dictSize', 'lr', 'warmupSteps', 'sparsityWarmupSteps'] as const;
  const trainerAxes = trainerKeys
    .filter((k) => $<HTMLInputElement>(k).value.trim() !== '' || k === 'dictSize')
    .map((k) => ({ key: k, values: parseFieldValues(k, 'number', $<HTMLInputElement>(k).value) }));
  const archKeys = new Set(axes.map((a) => a.key));
  const seed = intField('seed', 'init seed', 0);
  return expandSweep([...axes, ...trainerAxes], architecture).map((p) => {
    const config = Object.fromEntries(Object.entries(p.values).filter(([k]) => archKeys.has(k)));
    const t = p.values as Record<string, number>;
    if (!Number.isInteger(t.dictSize) || t.dictSize < 1)
      throw new Error(`dictionary size must be a positive integer, got ${t.dictSize}`);
    return {
      label: p.label,
      architecture,
      config,
      dictSize: t.dictSize,
      trainer: {
        seed,
        ...(t.lr !== undefined ? { lr: t.lr } : {}),
        ...(t.warmupSteps !== undefined ? { warmupSteps: t.warmupSteps } : {}),
        ...(t.sparsityWarmupSteps !== undefined ? { sparsityWarmupSteps: t.sparsityWarmupSteps } : {}),
      },
    };
  });
}

// ---- training ------------------------------------------------------------------------------

const curves = new ThrottledChart($('curves'), 400);
const plotted = CURVE_METRICS.filter((m) => (PLOTTED_METRICS as readonly string[]).includes(m.key));
const curvesSpec = () =>
  trainingCurvesSpec(state.points, { metrics: plotted, width: 200, height: 120, seriesTitle: 'setting' });

async function train(): Promise<void> {
  $('error').textContent = '';
  const settings = settingsFromForm();
  const steps = intField('steps', 'steps');
  const batchSize = intField('batchSize', 'batch size');
  const logEvery = intField('logEvery', 'log every');
  const deadWindow = intField('deadWindow', 'dead after');
  let data: ActivationSource;
  let synthetic: SyntheticSource | undefined;
  if ($<HTMLSelectElement>('dataKind').value === 'npy') {
    if (!uploaded) throw new Error('choose an .npy file first (Data → .npy file)');
    data = new ArraySource(uploaded);
  } else {
    synthetic = new SyntheticSource({
      dim: intField('dim', 'd'),
      numFeatures: intField('numFeatures', 'true features'),
      meanActive: num('meanActive'),
      noise: num('noise'),
      seed: intField('dataSeed', 'data seed', 0),
    });
    data = synthetic;
  }
  runSource = synthetic;
  const backend = await chooseBackend($<HTMLSelectElement>('backendPick').value as 'auto' | 'webgpu' | 'cpu');
  state.backend = backend;
  $('backend').textContent = backend.text;

  Object.assign(state, {
    points: [],
    settings: settings.map(({ label, architecture, config, dictSize }) => ({
      label,
      architecture,
      config,
      dictSize,
    })),
    results: [],
    dim: data.dim,
    truth: synthetic?.groundTruthHost(),
    evalRows: synthetic
      ? synthetic.sampleHost(EVAL_START, EVAL_ROWS)
      : (data as ArraySource).rowsHost(0, EVAL_ROWS),
    done: false,
  });
  $('summary').replaceChildren();
  $('tiles').replaceChildren();
  $('drill').hidden = true;
  $('curves').replaceChildren();
  controller = new AbortController();
  $<HTMLButtonElement>('stop').disabled = false;
  const status = $('status');
  const started = performance.now();
  const { dictionaries, steps: done } = await runSweep({
    data,
    settings,
    steps,
    batchSize,
    logEvery,
    deadWindow,
    backend: backend.name,
    signal: controller.signal,
    onLog: (points) => {
      state.points.push(...points);
      curves.update(curvesSpec);
    },
    onStep: (step, rows) => {
      const secs = (performance.now() - started) / 1000;
      status.textContent = `step ${step}/${steps} · ${settings.length} setting${settings.length > 1 ? 's' : ''} · ${(rows / secs).toFixed(0)} activations/s`;
    },
  });
  curves.update(curvesSpec);
  await curves.flush();
  try {
    status.textContent = `evaluating ${dictionaries.length} dictionar${dictionaries.length > 1 ? 'ies' : 'y'}…`;
    await summarise(dictionaries, settings);
  } finally {
    for (const d of dictionaries) d.dispose();
  }
  status.textContent = `${done} steps in ${((performance.now() - started) / 1000).toFixed(1)} s on ${backend.name === 'webgpu' ? 'WebGPU' : 'CPU'}`;
  state.done = true;
}

/** The results table and the feature view, from the trained dictionaries. */
async function summarise(dictionaries: Dictionary[], settings: RunSetting[]): Promise<void> {
  const d = state.dim;
  const x = tensor(state.evalRows!, [EVAL_ROWS, d], { backend: state.backend!.name });
  const truthT = state.truth
    ? tensor(state.truth, [state.truth.length / d, d], { backend: state.backend!.name })
    : undefined;
  const head = ['setting', 'loss', 'L0', 'FVE', 'dead', ...(truthT ? ['recovered (cos > 0.9)', 'MMCS'] : [])];
  const rows: string[][] = [];
  try {
    for (const [i, dict] of dictionaries.entries()) {
      const F = settings[i].dictSize;
      const rowsT = dict.decoderRows();
      const codesT = scope(() => dict.encode(x));
      try {
        const learned = (await rowsT.data()) as Float32Array;
        const codes = (await codesT.data()) as Float32Array;
        const rec = truthT ? await groundTruthRecovery(rowsT, truthT, RECOVERED) : undefined;
        state.results.push({
          label: settings[i].label,
          dictSize: F,
          learned,
          matches: state.truth ? matchFeatures(learned, state.truth, d) : undefined,
          codes,
          frequency: firingFrequency(codes, EVAL_ROWS, F),
        });
        const last = (m: string) =>
          state.points.filter((p) => p.trainer === settings[i].label && p.metric === m).at(-1)?.value;
        const fmt = (v: number | undefined, digits = 4) => (v === undefined ? '–' : v.toPrecision(digits));
        rows.push([
          settings[i].label,
          fmt(last('loss')),
          fmt(last('l0'), 3),
          fmt(last('frac_variance_explained')),
          fmt(last('dead_fraction'), 2),
          ...(rec ? [`${(rec.fractionRecovered * 100).toFixed(1)}%`, rec.mmcs.toFixed(3)] : []),
        ]);
      } finally {
        rowsT.dispose();
        codesT.dispose();
      }
    }
  } finally {
    x.dispose();
    truthT?.dispose();
  }
  const table = $('summary');
  const tr = (cells: string[], tag: 'th' | 'td') => {
    const row = document.createElement('tr');
    for (const c of cells) {
      const cell = document.createElement(tag);
      cell.textContent = c;
      row.append(cell);
    }
    return row;
  };
  table.replaceChildren(tr(head, 'th'), ...rows.map((r) => tr(r, 'td')));
  const pick = $<HTMLSelectElement>('feature-setting');
  pick.replaceChildren(...state.results.map((r, i) => new Option(r.label, String(i))));
  if (state.truth) {
    const points: RecoveryPoint[] = state.results.flatMap((r) =>
      r.matches!.map((m, k) => ({ trainer: r.label, rank: k + 1, cos: m.cos })),
    );
    await render($('recovery-chart'), recoverySpec(points, RECOVERED));
  } else {
    $('recovery-chart').replaceChildren();
  }
  showFeatures(0);
}

// ---- the feature view ----------------------------------------------------------------------

function colour(v: number, scale: number): string {
  const t = Math.max(-1, Math.min(1, v * scale));
  const c = Math.round(255 * (1 - Math.abs(t)));
  return t >= 0 ? `rgb(255,${c},${c})` : `rgb(${c},${c},255)`;
}

/** A small picture of one or two unit rows: cells coloured by value (red +, blue −). */
function strip(rows: number[][], d: number): HTMLCanvasElement {
  const cell = Math.max(1, Math.min(4, Math.floor(160 / d)));
  const canvas = document.createElement('canvas');
  canvas.width = d * cell;
  canvas.height = rows.length * 8;
  const ctx = canvas.getContext('2d');
  if (!ctx) return canvas;
  const scale = Math.sqrt(d) / 2.5; // unit vectors: entries are about ±1/√d
  rows.forEach((row, r) => {
    row.forEach((v, k) => {
      ctx.fillStyle = colour(v, scale);
      ctx.fillRect(k * cell, r * 8, cell, 8);
    });
  });
  return canvas;
}

/** Tiles of setting i's features: matched pairs sorted by cosine, or by firing frequency. */
function showFeatures(i: number): void {
  const r = state.results[i];
  const d = state.dim;
  const tiles = $('tiles');
  tiles.replaceChildren();
  $('drill').hidden = true;
  if (!r) return;
  const order =
    r.matches ??
    [...r.frequency.keys()]
      .sort((a, b) => r.frequency[b] - r.frequency[a])
      .map((j) => ({ learned: j, truth: -1, cos: Number.NaN }));
  $('feature-note').textContent = r.matches
    ? `${r.dictSize} learned features of ${r.label}, each matched to its nearest of ${state.truth!.length / d} true features`
    : `${r.dictSize} learned features of ${r.label}, by firing frequency (no ground truth for uploaded data)`;
  for (const m of order) {
    const tile = document.createElement('div');
    tile.className = 'tile';
    tile.dataset.learned = String(m.learned);
    const rows = [unitRow(r.learned, m.learned, d)];
    if (m.truth >= 0) {
      rows.unshift(unitRow(state.truth!, m.truth, d));
      tile.dataset.truth = String(m.truth);
      tile.dataset.cos = String(m.cos);
    }
    const label = document.createElement('div');
    label.className = 'label';
    label.textContent =
      m.truth >= 0
        ? `#${m.learned} ↔ T${m.truth} · cos ${m.cos.toFixed(3)}`
        : `#${m.learned} · fires ${(r.frequency[m.learned] * 100).toFixed(1)}%`;
    if (m.truth >= 0) label.classList.add(m.cos > RECOVERED ? 'rec' : 'unrec');
    tile.append(strip(rows, d), label);
    tile.addEventListener('click', () => {
      for (const t of tiles.querySelectorAll('.selected')) t.classList.remove('selected');
      tile.classList.add('selected');
      drill(i, m).catch(showError);
    });
    tiles.append(tile);
  }
}

/** The drill-down of one feature: its row against the matched true feature, frequency, top samples. */
async function drill(i: number, m: FeatureMatch): Promise<void> {
  const r = state.results[i];
  const d = state.dim;
  const F = r.dictSize;
  $('drill').hidden = false;
  const learned = unitRow(r.learned, m.learned, d);
  const truth = m.truth >= 0 ? unitRow(state.truth!, m.truth, d) : undefined;
  $('drill-info').textContent =
    `feature #${m.learned} of ${r.label}` +
    (truth ? ` · nearest true feature T${m.truth}, cosine ${m.cos.toFixed(4)}` : '') +
    ` · fires on ${(r.frequency[m.learned] * 100).toFixed(1)}% of ${EVAL_ROWS} held-out samples`;
  await render(
    $('drill-chart'),
    featureRowSpec(`decoder row #${m.learned}${truth ? ` and T${m.truth}` : ''}`, learned, truth),
  );
  const list = $('drill-samples');
  list.replaceChildren();
  const source = runSource;
  for (const s of topSamples(r.codes, EVAL_ROWS, F, m.learned, 8)) {
    const li = document.createElement('li');
    let text = `sample ${s.sample}: activation ${s.activation.toFixed(3)}`;
    if (source) {
      const codes = source.sparseCodes(EVAL_START + s.sample, 1);
      const active = [...codes.indices].map((g, k) => `T${g} (${codes.values[k].toFixed(2)})`);
      text += ` · true features active: ${active.join(', ') || 'none'}`;
      if (codes.indices.includes(m.truth)) li.className = 'hit';
    }
    li.textContent = text;
    list.append(li);
  }
  if (list.childElementCount === 0) list.textContent = 'it fired on none of them';
}

// ---- wiring --------------------------------------------------------------------------------

setupForm();
$('feature-setting').addEventListener('change', () =>
  showFeatures(Number($<HTMLSelectElement>('feature-setting').value)),
);
$('train').addEventListener('click', () => {
  const button = $<HTMLButtonElement>('train');
  button.disabled = true;
  train()
    .catch((e: unknown) => {
      showError(e);
      $('status').textContent = 'stopped by an error';
    })
    .finally(() => {
      button.disabled = false;
      $<HTMLButtonElement>('stop').disabled = true;
    });
});
$('stop').addEventListener('click', () => controller?.abort());
chooseBackend('auto')
  .then((b) => {
    state.backend = b;
    $('backend').textContent = b.text;
  })
  .catch(showError);
