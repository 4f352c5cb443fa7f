import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import { DictlearnError, writeFileAtomic } from '@dictlearn/core';
import type { CurvePoint, FrontierPoint } from './specs.js';

/** One line of `log.jsonl` as the report reads it. */
export interface LogRow {
  /** Trainer name. */
  trainer: string;
  /** Steps completed. */
  step: number;
  /** The logged numbers (loss, mse_loss, l0, frac_variance_explained, dead_fraction, lr, ...). */
  logs: Record<string, number>;
}

/** A trainer's line of the final table (`summary.json`, as `dictlearn train --json` prints it). */
export interface SummaryRow {
  /** Trainer name. */
  name: string;
  /** Architecture and hyper-parameters. */
  architecture: string;
  /** Mean non-zero features per row. */
  l0: number;
  /** Fraction of variance explained. */
  fve: number;
  /** Fraction of features that never fired on the evaluation rows. */
  deadFraction: number;
  /** MMCS: mean max cosine of the true features to the learned ones (synthetic sources). */
  mmcs?: number;
  /** Fraction of true features with a learned decoder row at cosine > 0.9 (synthetic sources). */
  recovered?: number;
  /** CE-loss recovered (model sources): (loss_reconstructed − loss_zero) / (loss_original − loss_zero). */
  fracRecovered?: number;
  /** Where the dictionary was saved. */
  savedTo?: string;
}

/** What `summary.json` holds: the final table of a run. */
export interface RunSummary {
  /** Backend the run trained on. */
  backend?: string;
  /** Steps trained. */
  steps?: number;
  /** What the table's figures were measured on. */
  scoredOn?: string;
  /** One row per trainer. */
  trainers: SummaryRow[];
}

/** What a trainer's `density.json` holds: per-feature firing frequencies on the evaluation rows. */
export interface DensityFile {
  /** Always `dictlearn-density`. */
  format: 'dictlearn-density';
  /** For each feature, the fraction of evaluated rows on which it fired (length F). */
  density: number[];
  /** Rows the frequencies were measured on. */
  tokens: number;
  /** What the rows were (held-out files, fresh synthetic samples, training rows). */
  scoredOn?: string;
}

/** File name of a run's final table, beside `run.json`. */
export const SUMMARY_FILE = 'summary.json';

/** File name of a trainer's firing frequencies, in the trainer's dictionary folder. */
export const DENSITY_FILE = 'density.json';

/** One trainer of a run as the report sees it. */
export interface TrainerData {
  /** Trainer name (its folder's name). */
  name: string;
  /** The folder holding its final dictionary (absent when training did not finish). */
  folder?: string;
  /** Its line of the final table, when the run wrote `summary.json`. */
  summary?: SummaryRow;
  /** Its firing frequencies, when the run wrote `density.json`. */
  density?: DensityFile;
  /** `features.html` from `dictlearn features`, when present. */
  featuresPage?: string;
}

/** One run folder (or, for a language-model run, one hook's folder). */
export interface RunData {
  /** The folder. */
  dir: string;
  /** How the report names it (the folder name; `out/hook` for a hook of a model run). */
  label: string;
  /** Its `run.json`. */
  run: Record<string, unknown>;
  /** Every line of `log.jsonl`. */
  log: LogRow[];
  /** Its trainers, in `run.json` order. */
  trainers: TrainerData[];
  /** The run's final table (its own trainers' rows), when written. */
  summary?: RunSummary;
}

/**
 * Parses `log.jsonl`: one JSON object per line with `trainer`, `step` and numeric `logs`. Throws a
 * DictlearnError naming `file` for an empty log or a line that is not such an object (a
 * truncated last line included: trainSAE writes whole lines, so a cut line means a damaged file).
 */
export function parseLog(text: string, file: string): LogRow[] {
  const lines = text.split('\n');
  const rows: LogRow[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    let e: unknown;
    try {
      e = JSON.parse(line);
    } catch {
      const last = i >= lines.length - 2 && !text.endsWith('\n');
      throw new DictlearnError(
        file,
        `line ${i + 1} is not valid JSON${last ? ' (the file ends mid-line: truncated?)' : ''}; expected one log entry {"trainer", "step", "logs"} per line`,
      );
    }
    const o = e as Partial<LogRow>;
    const ok =
      o !== null &&
      typeof o === 'object' &&
      typeof o.trainer === 'string' &&
      Number.isInteger(o.step) &&
      o.logs !== null &&
      typeof o.logs === 'object';
    if (!ok) {
      throw new DictlearnError(
        file,
        `line ${i + 1} is not a log entry; expected {"trainer": string, "step": integer, "logs": {...}}, got ${line.slice(0, 80)}`,
      );
    }
    const logs: Record<string, number> = {};
    for (const [k, v] of Object.entries(o.logs as object)) if (typeof v === 'number') logs[k] = v;
    rows.push({ trainer: o.trainer as string, step: o.step as number, logs });
  }
  if (rows.length === 0) {
    throw new DictlearnError(
      file,
      'holds no log entries; a run logs every --log-every steps (was it stopped before the first log step?)',
    );
  }
  return rows;
}

/** The curve points of `metrics` in a log, one per (line, metric) present, in log order. */
export function curvePoints(log: readonly LogRow[], metrics: readonly string[]): CurvePoint[] {
  const out: CurvePoint[] = [];
  for (const r of log) {
    for (const m of metrics) {
      const v = r.logs[m];
      if (v !== undefined && Number.isFinite(v))
        out.push({ trainer: r.trainer, step: r.step, metric: m, value: v });
    }
  }
  return out;
}

/**
 * The frontier points of runs: L0 and FVE from the final table (the evaluation rows), and L0 and
 * MSE from each trainer's last log line (`l0`, `mse_loss` of the last logged training batch),
 * as a second point set with `mse` only, so each plot uses one consistent measurement.
 */
export function frontierPoints(runs: readonly RunData[]): FrontierPoint[] {
  const out: FrontierPoint[] = [];
  for (const run of runs) {
    for (const t of run.trainers) {
      if (t.summary) out.push({ label: t.name, series: run.label, l0: t.summary.l0, fve: t.summary.fve });
      const last = [...run.log].reverse().find((r) => r.trainer === t.name);
      const mse = last?.logs.mse_loss;
      if (last && mse !== undefined && last.logs.l0 !== undefined) {
        out.push({ label: t.name, series: run.label, l0: last.logs.l0, mse });
      }
    }
  }
  return out;
}

/**
 * Reads reference points for the frontier: a JSON array (or `{ "points": [...] }`) of
 * `{ "label": string, "l0": number > 0, "fve"?: number, "mse"?: number, "series"?: string }`, each
 * with fve or mse. Throws a DictlearnError naming the file and the entry that is wrong.
 */
export function parseReferencePoints(text: string, file: string): FrontierPoint[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new DictlearnError(file, `is not valid JSON (${(e as Error).message})`);
  }
  const list = Array.isArray(json) ? json : (json as { points?: unknown })?.points;
  if (!Array.isArray(list)) {
    throw new DictlearnError(file, 'expected a JSON array of reference points, or {"points": [...]}');
  }
  return list.map((p, i) => {
    const o = p as Record<string, unknown>;
    const num = (k: string) => typeof o?.[k] === 'number' && Number.isFinite(o[k] as number);
    const what = `points[${i}]`;
    if (o === null || typeof o !== 'object' || typeof o.label !== 'string') {
      throw new DictlearnError(
        file,
        `${what} needs a "label" string; expected {"label", "l0", "fve" and/or "mse"}`,
      );
    }
    if (!num('l0') || (o.l0 as number) <= 0) {
      throw new DictlearnError(
        file,
        `${what} ("${o.label}") needs "l0", a positive number; got ${JSON.stringify(o.l0)}`,
      );
    }
    if (!num('fve') && !num('mse')) {
      throw new DictlearnError(file, `${what} ("${o.label}") needs "fve" or "mse" as a number`);
    }
    if (o.series !== undefined && typeof o.series !== 'string') {
      throw new DictlearnError(file, `${what} ("${o.label}"): "series" must be a string`);
    }
    return {
      label: o.label,
      series: (o.series as string | undefined) ?? 'reference',
      l0: o.l0 as number,
      ...(num('fve') ? { fve: o.fve as number } : {}),
      ...(num('mse') ? { mse: o.mse as number } : {}),
      reference: true,
    };
  });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function readJson(path: string): Promise<unknown> {
  const text = await readFile(path, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DictlearnError(path, `is not valid JSON (${(e as Error).message})`);
  }
}

/** Reads a `density.json`, checking its shape. */
export async function readDensityFile(path: string): Promise<DensityFile> {
  const d = (await readJson(path)) as Partial<DensityFile>;
  const ok =
    d?.format === 'dictlearn-density' &&
    Array.isArray(d.density) &&
    d.density.every((v) => typeof v === 'number' && v >= 0 && v <= 1);
  if (!ok) {
    throw new DictlearnError(
      path,
      'expected {"format": "dictlearn-density", "density": [numbers in 0..1], "tokens": n}',
    );
  }
  return d as DensityFile;
}

/** Writes a trainer's firing frequencies into its dictionary folder (temp file + rename). */
export async function writeDensityFile(
  folder: string,
  density: ArrayLike<number>,
  tokens: number,
  scoredOn?: string,
): Promise<void> {
  const file: DensityFile = {
    format: 'dictlearn-density',
    tokens,
    ...(scoredOn ? { scoredOn } : {}),
    density: Array.from(density),
  };
  await writeFileAtomic(join(folder, DENSITY_FILE), `${JSON.stringify(file)}\n`);
}

/** Writes a run's final table as `summary.json` in its folder (temp file + rename). */
export async function writeSummaryFile(dir: string, summary: RunSummary): Promise<void> {
  await writeFileAtomic(join(dir, SUMMARY_FILE), `${JSON.stringify(summary, null, 1)}\n`);
}

/** The summary row saved at `folder` (matched by `savedTo`, which ends with the folder's path below `root`). */
function summaryRowFor(
  summary: RunSummary | undefined,
  root: string,
  folder: string,
): SummaryRow | undefined {
  if (!summary) return undefined;
  const rel = relative(root, folder);
  return summary.trainers.find(
    (t) =>
      t.savedTo !== undefined && (t.savedTo === rel || t.savedTo.replace(/\/+$/, '').endsWith(`/${rel}`)),
  );
}

async function readOneRun(
  dir: string,
  label: string,
  summary: RunSummary | undefined,
  root: string,
): Promise<RunData> {
  const run = (await readJson(join(dir, 'run.json'))) as Record<string, unknown>;
  const names = Array.isArray(run.trainers)
    ? (run.trainers as { name?: unknown }[]).map((t) => String(t.name))
    : [];
  const logFile = join(dir, 'log.jsonl');
  if (!(await exists(logFile))) {
    throw new DictlearnError(
      logFile,
      'is missing; a run folder has run.json and log.jsonl (run with --log-every > 0)',
    );
  }
  const log = parseLog(await readFile(logFile, 'utf8'), logFile);
  for (const r of log) if (!names.includes(r.trainer)) names.push(r.trainer);
  const trainers: TrainerData[] = [];
  for (const name of names) {
    const folder = join(dir, name);
    const t: TrainerData = { name };
    if (await exists(join(folder, 'config.json'))) t.folder = folder;
    t.summary = summaryRowFor(summary, root, folder);
    if (await exists(join(folder, DENSITY_FILE)))
      t.density = await readDensityFile(join(folder, DENSITY_FILE));
    if (await exists(join(folder, 'features.html'))) t.featuresPage = join(folder, 'features.html');
    trainers.push(t);
  }
  const own = trainers.map((t) => t.summary).filter((s): s is SummaryRow => s !== undefined);
  return {
    dir,
    label,
    run,
    log,
    trainers,
    ...(summary ? { summary: { ...summary, trainers: own } } : {}),
  };
}

/**
 * Reads a run folder: the `--out` of `dictlearn train` or `dictlearn demo` (`run.json`,
 * `log.jsonl`, a folder per trainer, `summary.json`), or of a language-model run (a folder per hook,
 * each a run; one RunData per hook). Throws a DictlearnError naming the folder when it is neither.
 */
export async function readRunFolder(dir: string): Promise<RunData[]> {
  const root = resolve(dir);
  const st = await stat(root).catch(() => undefined);
  if (!st?.isDirectory())
    throw new DictlearnError(dir, 'is not a folder; expected the --out folder of dictlearn train or demo');
  const summaryFile = join(root, SUMMARY_FILE);
  const summary = (await exists(summaryFile)) ? ((await readJson(summaryFile)) as RunSummary) : undefined;
  if (summary && !Array.isArray(summary.trainers)) {
    throw new DictlearnError(
      summaryFile,
      'expected {"trainers": [...]} (the final table of dictlearn train --json)',
    );
  }
  const label = basename(root);
  if (await exists(join(root, 'run.json'))) return [await readOneRun(root, label, summary, root)];
  const hooks: RunData[] = [];
  for (const entry of (await readdir(root, { withFileTypes: true })).sort((a, b) =>
    a.name < b.name ? -1 : 1,
  )) {
    if (entry.isDirectory() && (await exists(join(root, entry.name, 'run.json')))) {
      hooks.push(await readOneRun(join(root, entry.name), `${label}/${entry.name}`, summary, root));
    }
  }
  if (hooks.length === 0) {
    throw new DictlearnError(
      dir,
      'is not a dictlearn run folder: no run.json in it or in its sub-folders (expected the --out of dictlearn train or dictlearn demo)',
    );
  }
  return hooks;
}
