import { DictlearnError, useBackend } from '@dictlearn/core';
import { type EvalMetrics, evaluate, formatMetrics } from '@dictlearn/eval';
import { loadDictionary } from '@dictlearn/formats';
import { openSource } from './plan.js';
import type { RunConfig } from './train-config.js';

/** Options of `dictlearn eval`. */
export interface EvalOptions {
  /**
   * A saved dictionary in any format @dictlearn/formats reads: a dictlearn folder (config.json +
   * sae.safetensors), dictionary_learning's ae.pt, a SAELens or a sparsify folder.
   */
  checkpoint: string;
  /** dictionary_learning's class, when its config.json is missing (e.g. `BatchTopKSAE`). */
  dictClass?: string;
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
  const { dictionary: dict } = await loadDictionary(o.checkpoint, {
    backend: backend.name,
    dictClass: o.dictClass,
  });
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
