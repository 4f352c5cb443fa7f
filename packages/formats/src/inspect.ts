/**
 * `inspect`: what a dictionary file holds, in any format, without loading it into a backend:
 * format, architecture, sizes, each stored tensor's dtype, shape and norm, decoder row norms,
 * non-finite values, and what a conversion would have to change. An architecture dictlearn
 * cannot load yet is reported, with its tensors, rather than refused.
 */
import { DictlearnError, decodeSafetensors, fmtShape } from '@dictlearn/core';
import { detectFormat, type ReadOptions, readDictionary } from './api.js';
import { dirname, join, pathKind, readFileBytes, readJson } from './files.js';
import type { FormatName, HostParam, ReadResult, StoredTensor } from './parts.js';
import { readTorchStateDict } from './torch.js';

/** Statistics of one tensor. */
export interface TensorStats {
  /** Name (the file's key, or dictlearn's parameter name). */
  name: string;
  /** Element type as stored. */
  dtype: string;
  /** Shape. */
  shape: number[];
  /** Frobenius (L2) norm of the finite values. */
  norm: number;
  /** Smallest finite value. */
  min: number;
  /** Largest finite value. */
  max: number;
  /** Count of NaN and ±∞ values. */
  nonFinite: number;
}

/** What `inspect` reports. */
export interface InspectReport {
  /** The path inspected. */
  path: string;
  /** The format detected (or given). */
  format: FormatName;
  /** The files read. */
  files: string[];
  /** The format's own architecture name (DL class, SAELens architecture…), when known. */
  formatArchitecture?: string;
  /** The dictlearn architecture and config, when the file maps onto one. */
  architecture?: {
    /** Registry name. */
    name: string;
    /** Hyper-parameters. */
    config: Record<string, unknown>;
  };
  /** Width d, when known. */
  activationDim?: number;
  /** Features F, when known. */
  dictSize?: number;
  /** The stored tensors with statistics (dictlearn names when the file mapped onto dictlearn). */
  tensors: TensorStats[];
  /** The tensors as the file stores them (its own key names, dtypes and shapes), when mapped. */
  stored?: StoredTensor[];
  /** Norms of the decoder's rows (one per feature), when the dictionary has a decoder. */
  decoderRowNorms?: {
    /** Smallest row norm. */
    min: number;
    /** Mean row norm. */
    mean: number;
    /** Largest row norm. */
    max: number;
  };
  /** Why the file cannot be loaded as a dictlearn dictionary, when it cannot. */
  problem?: string;
  /** What reading it decided or changed. */
  notes: string[];
}

function stats(name: string, dtype: string, shape: number[], values: ArrayLike<number>): TensorStats {
  let s = 0;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let nonFinite = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      nonFinite++;
      continue;
    }
    s += v * v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return {
    name,
    dtype,
    shape,
    norm: Math.sqrt(s),
    min: values.length ? min : 0,
    max: values.length ? max : 0,
    nonFinite,
  };
}

function rowNorms(p: HostParam): { min: number; mean: number; max: number } {
  const [rows, cols] = p.shape;
  let min = Number.POSITIVE_INFINITY;
  let max = 0;
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += p.values[r * cols + c] ** 2;
    const n = Math.sqrt(s);
    if (n < min) min = n;
    if (n > max) max = n;
    sum += n;
  }
  return { min: rows ? min : 0, mean: rows ? sum / rows : 0, max };
}

/** The stored tensors of a file that did not map onto dictlearn, read raw for the report. */
async function readStoredRaw(
  path: string,
  format: FormatName,
): Promise<{ files: string[]; tensors: TensorStats[] }> {
  const dir = (await pathKind(path)) === 'dir' ? path : dirname(path);
  if (format === 'dictionary_learning') {
    const weights = (await pathKind(path)) === 'dir' ? join(path, 'ae.pt') : path;
    const sd = readTorchStateDict(await readFileBytes(weights), weights);
    return {
      files: [weights],
      tensors: Object.entries(sd.tensors).map(([k, t]) => stats(k, t.dtype, t.shape, t.values)),
    };
  }
  const weights =
    (await pathKind(path)) === 'file'
      ? path
      : join(dir, format === 'saelens' ? 'sae_weights.safetensors' : 'sae.safetensors');
  const file = decodeSafetensors(await readFileBytes(weights), weights);
  return {
    files: [weights],
    tensors: Object.entries(file.tensors).map(([k, t]) =>
      stats(k, t.dtype, t.shape, t.data as ArrayLike<number>),
    ),
  };
}

/**
 * Inspects the dictionary at `path` (any of the four formats). Files that are unreadable, corrupt
 * or hostile still throw (a clear error naming the file); a readable file whose architecture
 * dictlearn does not support yet is reported with {@link InspectReport.problem}.
 */
export async function inspectDictionary(path: string, options: ReadOptions = {}): Promise<InspectReport> {
  const format = options.format ?? (await detectFormat(path));
  let read: ReadResult;
  try {
    read = await readDictionary(path, { ...options, format });
  } catch (e) {
    if (!(e instanceof DictlearnError) || !/not supported yet|cannot tell which|non-finite/.test(e.message))
      throw e;
    const raw = await readStoredRaw(path, format);
    let formatArchitecture: string | undefined;
    if (format !== 'dictionary_learning') {
      const cfg = (await readJson(
        join((await pathKind(path)) === 'dir' ? path : dirname(path), 'cfg.json'),
      ).catch(() => undefined)) as Record<string, unknown> | undefined;
      formatArchitecture = typeof cfg?.architecture === 'string' ? cfg.architecture : undefined;
    }
    return {
      path,
      format,
      files: raw.files,
      formatArchitecture,
      tensors: raw.tensors,
      problem: e.message,
      notes: [],
    };
  }
  const { parts } = read;
  const dtypes = new Map<string, StoredTensor>(read.stored.map((s) => [s.name, s]));
  const tensors = Object.entries(parts.params).map(([k, p]) =>
    stats(
      k,
      dtypes.get(k)?.dtype ?? (read.format === 'dictlearn' ? 'F32' : `${uniqueDtype(read.stored)}`),
      p.shape,
      p.values,
    ),
  );
  const dec = parts.params.W_dec;
  return {
    path,
    format: read.format,
    files: read.files,
    formatArchitecture: read.formatArchitecture,
    architecture: { name: parts.architecture, config: parts.config },
    activationDim: parts.activationDim,
    dictSize: parts.dictSize,
    tensors,
    stored: read.stored,
    decoderRowNorms: dec && dec.shape.length === 2 ? rowNorms(dec) : undefined,
    notes: read.notes,
  };
}

function uniqueDtype(stored: StoredTensor[]): string {
  const floats = new Set(
    stored.filter((s) => s.dtype.startsWith('F') || s.dtype === 'BF16').map((s) => s.dtype),
  );
  return floats.size === 1 ? [...floats][0] : [...floats].join('/') || 'F32';
}

const FORMAT_LABEL: Record<FormatName, string> = {
  dictlearn: 'dictlearn',
  dictionary_learning: 'dictionary_learning',
  saelens: 'SAELens',
  sparsify: 'sparsify',
};

const num = (v: number) =>
  Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : v.toFixed(4);

/** The report as aligned text lines, for a terminal. */
export function formatInspectReport(r: InspectReport): string {
  const lines: string[] = [];
  const row = (k: string, v: string) => lines.push(`${k.padEnd(13)}${v}`);
  row('path', r.path);
  row('format', `${FORMAT_LABEL[r.format]}${r.formatArchitecture ? ` (${r.formatArchitecture})` : ''}`);
  row('files', r.files.join(', '));
  if (r.architecture) row('architecture', `${r.architecture.name} ${JSON.stringify(r.architecture.config)}`);
  if (r.activationDim !== undefined && r.dictSize !== undefined) {
    row(
      'sizes',
      `d = ${r.activationDim}, F = ${r.dictSize} (expansion ${Number.isInteger(r.dictSize / r.activationDim) ? r.dictSize / r.activationDim : (r.dictSize / r.activationDim).toFixed(3)})`,
    );
  }
  if (r.problem) row('not loadable', r.problem);
  lines.push('tensors');
  const w = Math.max(4, ...r.tensors.map((t) => t.name.length));
  lines.push(
    `  ${'name'.padEnd(w)}  dtype  ${'shape'.padEnd(12)}  ${'norm'.padStart(10)}  ${'min'.padStart(10)}  ${'max'.padStart(10)}`,
  );
  for (const t of r.tensors) {
    lines.push(
      `  ${t.name.padEnd(w)}  ${t.dtype.padEnd(5)}  ${fmtShape(t.shape).padEnd(12)}  ${num(t.norm).padStart(10)}  ${num(t.min).padStart(10)}  ${num(t.max).padStart(10)}${t.nonFinite ? `  ${t.nonFinite} non-finite!` : ''}`,
    );
  }
  if (r.stored && r.format !== 'dictlearn') {
    row('stored as', r.stored.map((s) => `${s.name} ${s.dtype} ${fmtShape(s.shape)}`).join(', '));
  }
  if (r.decoderRowNorms) {
    const n = r.decoderRowNorms;
    row('decoder rows', `norm min ${num(n.min)}, mean ${num(n.mean)}, max ${num(n.max)}`);
  }
  const bad = r.tensors.reduce((s, t) => s + t.nonFinite, 0);
  row(
    'summary',
    r.problem
      ? 'readable, but not loadable as a dictlearn dictionary (see above)'
      : bad
        ? `${bad} non-finite value(s): loading will refuse this file`
        : 'loadable',
  );
  for (const note of r.notes) row('note', note);
  return `${lines.join('\n')}\n`;
}
