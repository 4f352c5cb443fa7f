import { Dictionary, useBackend } from '@dictlearn/core';
import { type EvalMetrics, evaluate, formatMetrics } from '@dictlearn/eval';
import { makeSource } from './train.js';
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
}

/** Loads a dictionary and evaluates it on a source: the REFERENCE metrics. */
export async function runEval(o: EvalOptions): Promise<EvalMetrics> {
  const backend = await useBackend(o.backend);
  const dict = await Dictionary.load(o.checkpoint, { backend: backend.name });
  try {
    const source = await makeSource(o.source);
    if (source.dim !== dict.activationDim) {
      throw new Error(
        `the data has width ${source.dim} but the dictionary at ${o.checkpoint} expects ${dict.activationDim}`,
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
