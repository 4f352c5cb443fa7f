import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DictlearnError, useBackend } from '@dictlearn/core';
import { type AmortisationGap, amortisationGap, featureDensity, groupSparsity } from '@dictlearn/eval';
import { loadDictionary } from '@dictlearn/formats';
import type { EvalOptions } from './eval.js';
import { openSource } from './plan.js';
import { ConfigError } from './train-config.js';

/** What `dictlearn eval` adds to the reference metrics: optimal codes and per-head figures. */
export interface EvalExtrasOptions extends EvalOptions {
  /** `--codes fista|omp`: the amortisation gap against inference-time codes. */
  codes?: 'fista' | 'omp';
  /** `--codes-l1 λ`: FISTA's penalty (default: matched to the encoder's L0). */
  codesL1?: number;
  /** `--codes-iterations N`: FISTA iterations per solve (default 300). */
  codesIterations?: number;
  /** `--atoms K`: OMP's atoms per row (default: the encoder's L0, rounded). */
  atoms?: number;
}

/** Per-head sparsity of a block-diagonal dictionary. */
export interface HeadFigures {
  /** H. */
  heads: number;
  /** Mean active features of each head per row. */
  l0: number[];
  /** Fraction of each head's features that never fired. */
  deadFraction: number[];
}

/** The extra figures (each present when it applies). */
export interface EvalExtras {
  /** For a `blockdiag` dictionary. */
  heads?: HeadFigures;
  /** With `--codes`. */
  gap?: AmortisationGap;
}

/**
 * Whether `path` is a dictlearn folder whose config.json names the `blockdiag` architecture
 * (read without loading the weights; any other format or an unreadable file: false).
 */
export async function isBlockDiagonal(path: string): Promise<boolean> {
  try {
    const config = JSON.parse(await readFile(join(path, 'config.json'), 'utf8')) as {
      architecture?: { name?: string };
    };
    return config.architecture?.name === 'blockdiag';
  } catch {
    return false;
  }
}

/** Checks the `--codes` flags; returns the validated method (undefined without `--codes`). */
export function parseCodes(value: string | undefined): 'fista' | 'omp' | undefined {
  if (value === undefined) return undefined;
  if (value !== 'fista' && value !== 'omp') {
    throw new ConfigError(`--codes must be 'fista' or 'omp', got '${value}'`);
  }
  return value;
}

/**
 * Loads the dictionary and, on the same batches as `dictlearn eval`: per-head L0 and dead
 * fractions when it is block-diagonal, and with `codes` the amortisation gap (FVE of the
 * encoder vs inference-time codes on its decoder at equal L0).
 */
export async function runEvalExtras(o: EvalExtrasOptions): Promise<EvalExtras> {
  const backend = await useBackend(o.backend);
  const { dictionary: dict } = await loadDictionary(o.checkpoint, {
    backend: backend.name,
    dictClass: o.dictClass,
  });
  const out: EvalExtras = {};
  try {
    const source = await openSource(o.source);
    if (source.dim !== dict.activationDim) {
      throw new DictlearnError(
        o.checkpoint,
        `the data has width ${source.dim} but the dictionary expects ${dict.activationDim}`,
      );
    }
    const batches = () => source.batches({ batchSize: o.batchSize, backend: backend.name });
    if (dict.arch.name === 'blockdiag') {
      const heads = (dict.arch.config as { heads: number }).heads;
      const density = await featureDensity(dict, batches(), { maxBatches: o.batches });
      out.heads = { heads, ...groupSparsity(density, heads) };
    }
    if (o.codes) {
      out.gap = await amortisationGap(dict, batches(), {
        codes: o.codes,
        maxBatches: o.batches,
        l1Penalty: o.codesL1,
        iterations: o.codesIterations,
        atoms: o.atoms,
      });
    }
    return out;
  } finally {
    dict.dispose();
  }
}

/** The extra tables, or '' when there is nothing to add. */
export function formatEvalExtras(e: EvalExtras): string {
  const parts: string[] = [];
  if (e.heads) {
    const { l0, deadFraction } = e.heads;
    parts.push(
      `per head (${e.heads.heads} heads)`,
      ['head', ...l0.map((_, h) => String(h))].join('\t'),
      ['L0', ...l0.map((v) => v.toFixed(2))].join('\t'),
      ['dead', ...deadFraction.map((v) => `${(v * 100).toFixed(1)}%`)].join('\t'),
    );
  }
  if (e.gap) {
    const g = e.gap;
    const how =
      g.optimal.method === 'fista'
        ? `FISTA codes (λ ${g.optimal.l1Penalty?.toPrecision(3)})`
        : `OMP codes (${g.optimal.atoms} atoms)`;
    if (parts.length) parts.push('');
    parts.push(
      `amortisation gap: the encoder vs ${how} on the same decoder, ${g.tokens} rows`,
      `            L0       FVE`,
      `encoder  ${g.encoder.l0.toFixed(2).padStart(6)}  ${g.encoder.fve.toFixed(4)}`,
      `${g.optimal.method.padEnd(7)}  ${g.optimal.l0.toFixed(2).padStart(6)}  ${g.optimal.fve.toFixed(4)}`,
      `gap (optimal − encoder FVE): ${g.gap.toFixed(4)}`,
    );
  }
  return parts.join('\n');
}
