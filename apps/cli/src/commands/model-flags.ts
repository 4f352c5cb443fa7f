/**
 * The flags of `--source model` (kept apart from ./model.ts so that parsing flags loads no model
 * runtime).
 */
import { ConfigError, type RunConfig } from './train-config.js';

/** The `model` source options the flags of `train` and `eval` set. */
export const MODEL_FLAGS = {
  model: { type: 'string' },
  hook: { type: 'string' },
  text: { type: 'string', multiple: true },
  tokenizer: { type: 'string' },
  'context-length': { type: 'string' },
  'forward-batch': { type: 'string' },
  'drop-bos': { type: 'boolean' },
  prefetch: { type: 'string' },
  'model-threads': { type: 'string' },
} as const;

type Values = Record<string, string | boolean | string[] | undefined>;

function intFlag(flag: string, text: string | undefined, min: 0 | 1): number | undefined {
  if (text === undefined) return undefined;
  const v = Number(text);
  if (text.trim() === '' || !Number.isSafeInteger(v) || v < min)
    throw new ConfigError(
      `--${flag} must be a ${min === 0 ? 'non-negative' : 'positive'} integer, got '${text}'`,
    );
  return v;
}

/**
 * The `model` source of a run from the flags (`--model`, `--hook a,b`, `--text FILE`, …) over the
 * config file's `source`; a model flag with another source is a ConfigError.
 */
export function modelSourceFromFlags(
  values: Values,
  base: RunConfig['source'] | undefined,
  type: string,
): RunConfig['source'] | undefined {
  const given = Object.keys(MODEL_FLAGS).filter((f) => values[f] !== undefined);
  if (type !== 'model') {
    if (given.length > 0) {
      throw new ConfigError(
        `--${given[0]} is an option of --source model (a language model's activations), not ${type}`,
      );
    }
    return undefined;
  }
  const src: RunConfig['source'] = { ...(base && base.type === 'model' ? base : {}), type: 'model' };
  if (values.model !== undefined) src.model = values.model;
  if (values.hook !== undefined) src.hooks = (values.hook as string).split(',').map((s) => s.trim());
  if (values.text !== undefined) src.text = values.text;
  if (values.tokenizer !== undefined) src.tokenizer = values.tokenizer;
  for (const [flag, field, min] of [
    ['context-length', 'contextLength', 1],
    ['forward-batch', 'forwardBatch', 1],
    ['prefetch', 'prefetch', 0],
    ['model-threads', 'intraOpThreads', 1],
  ] as const) {
    const v = intFlag(flag, values[flag] as string | undefined, min);
    if (v !== undefined) src[field] = v;
  }
  if (values['drop-bos'] !== undefined) src.dropBos = values['drop-bos'];
  if (values['data-seed'] !== undefined) {
    const seed = Number(values['data-seed']);
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new ConfigError(`--data-seed must be a non-negative integer, got '${values['data-seed']}'`);
    src.seed = seed;
  }
  const other = ['data', 'dim', 'num-features', 'mean-active', 'noise'].filter(
    (f) => values[f] !== undefined,
  );
  if (other.length > 0) {
    throw new ConfigError(
      `--${other[0]} is an option of file or synthetic sources; --source model reads the model's activations on --text`,
    );
  }
  for (const [field, flag] of [
    ['model', '--model m.onnx'],
    ['text', '--text FILE'],
  ] as const) {
    if (src[field] === undefined) throw new ConfigError(`--source model needs ${flag}`);
  }
  if (src.hooks === undefined && src.hook === undefined)
    throw new ConfigError(
      '--source model needs --hook H (a module path such as gpt_neox.layers.1; a comma list for several)',
    );
  return src;
}
