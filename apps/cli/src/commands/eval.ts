import { Dictionary, DictlearnError, useBackend } from '@dictlearn/core';
import { type EvalMetrics, evaluate, formatMetrics } from '@dictlearn/eval';
import { openSource } from './plan.js';
import type { RunConfig } from './train-config.js';

/** Options of `dictlearn eval`. */
export interface EvalOptions {
  /** Directory of a saved dictionary (config.json + sae.safetensors). */
  checkpoint: string;
  /** Where the activations come from. */
  source: RunConfig['source'];
  /** Rows per batch. */
  batchSize: number;
  /** Batches to evaluate. */
  batches: number;
  /** Backend. */
  backend: string;
  /** Receives notes on how the data is read (e.g. a 3-D array read as rows); default: none. */
  notice?: (text: string) => void;
}

/** Loads a dictionary and evaluates it on a source: the REFERENCE metrics. */
export async function runEval(o: EvalOptions): Promise<EvalMetrics> {
  const backend = await useBackend(o.backend);
  const dict = await Dictionary.load(o.checkpoint, { backend: backend.name });
  try {
    const source = await openSource(o.source);
    for (const n of (source as { notices?: readonly string[] }).notices ?? []) o.notice?.(n);
    if (source.dim !== dict.activationDim) {
      const files = o.source.files as string[] | undefined;
      const what = files?.length ? files[0] : `--source ${o.source.type}`;
      const flag = files?.length ? '' : ' (set --dim)';
      throw new DictlearnError(
        what,
        `the data has width ${source.dim} but the dictionary at ${o.checkpoint} expects ${dict.activationDim}${flag}`,
      );
    }
    return await evaluate(dict, source.batches({ batchSize: o.batchSize, backend: backend.name }), {
      maxBatches: o.batches,
    });
  } finally {
    dict.dispose();
  }
}

export { formatMetrics };
