/**
 * Architecture hyper-parameters on the command line. Each architecture flag (`--l1`, `--k`, …)
 * and each `--set key=value` names one config key of the architectures and takes a
 * comma-separated list: the trainers of a run are every chosen architecture × every combination
 * of the values of the keys that architecture accepts (a sweep). A key no chosen architecture
 * accepts is an error naming the flag and the architectures.
 */
import { createArchitecture } from '@dictlearn/core';
import { ConfigError, numberList } from './train-config.js';

/** Flags with a name of their own: flag → the architecture config key it sets. */
export const ARCH_FLAGS: Readonly<Record<string, string>> = {
  l1: 'l1Penalty',
  k: 'k',
  'aux-k': 'auxK',
  'aux-k-alpha': 'auxkAlpha',
  'dead-tokens': 'deadTokens',
  'target-l0': 'targetL0',
  'sparsity-penalty': 'sparsityPenalty',
  bandwidth: 'bandwidth',
  'p-end': 'pEnd',
};

/** One swept key: where it came from (for messages) and its values. */
export interface SweptKey {
  /** `--k`, `--set foo`: how the user named it. */
  flag: string;
  /** The config key. */
  key: string;
  /** The values (numbers, strings or booleans), one trainer per value. */
  values: unknown[];
}

/** Parses a `--set key=v1,v2` value: numbers stay numbers, `true`/`false` booleans, else strings. */
export function parseSet(text: string): SweptKey {
  const eq = text.indexOf('=');
  const key = eq > 0 ? text.slice(0, eq).trim() : '';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) || eq === text.length - 1) {
    throw new ConfigError(
      `--set must be key=value or key=v1,v2 (an architecture config key, e.g. --set k=16,32), got '${text}'`,
    );
  }
  const values = text
    .slice(eq + 1)
    .split(',')
    .map((s) => s.trim())
    .map((s) =>
      s === 'true' ? true : s === 'false' ? false : s !== '' && Number.isFinite(Number(s)) ? Number(s) : s,
    );
  return { flag: `--set ${key}`, key, values };
}

/** The swept keys of the architecture flags given (in ARCH_FLAGS order) and of every `--set`. */
export function sweptKeys(values: Record<string, unknown>, sets: string[] = []): SweptKey[] {
  const out: SweptKey[] = [];
  for (const [flag, key] of Object.entries(ARCH_FLAGS)) {
    const text = values[flag];
    if (typeof text === 'string') out.push({ flag: `--${flag}`, key, values: numberList(flag, text) });
  }
  for (const s of sets) out.push(parseSet(s));
  const seen = new Map<string, string>();
  for (const s of out) {
    const before = seen.get(s.key);
    if (before) throw new ConfigError(`${s.flag} and ${before} both set '${s.key}'; give it once`);
    seen.set(s.key, s.flag);
  }
  return out;
}

/** The config keys an architecture accepts: the fields of its resolved default config. */
export function configKeysOf(architecture: string): Set<string> {
  try {
    return new Set(
      Object.keys(createArchitecture(architecture, {}, undefined, `--arch ${architecture}`).config),
    );
  } catch (e) {
    if (!(e as Error).message.includes('is required')) throw e;
  }
  // An architecture with required fields (topk's k) cannot be made from {}; given a field it does
  // not know, the config validator lists the ones it does.
  try {
    createArchitecture(architecture, { [PROBE_FIELD]: 0 }, undefined, `--arch ${architecture}`);
  } catch (e) {
    const known = /\(known: ([^)]*)\)/.exec((e as Error).message);
    if (known) return new Set(known[1].split(', '));
  }
  // Otherwise let the architecture's own validation judge each key.
  return new Set(['*']);
}

/** A config field no architecture has, to make the validator list the fields it knows. */
const PROBE_FIELD = '\u0000probe';

/**
 * The trainers' architecture configs: for each architecture, every combination of the swept
 * values of the keys it accepts (an architecture that accepts none gets one trainer).
 */
export function sweepConfigs(
  architectures: string[],
  swept: SweptKey[],
): { architecture: string; config: Record<string, unknown> }[] {
  const keysOf = new Map(architectures.map((a) => [a, configKeysOf(a)]));
  for (const s of swept) {
    if (!architectures.some((a) => keysOf.get(a)!.has(s.key) || keysOf.get(a)!.has('*'))) {
      throw new ConfigError(
        `${s.flag} sets '${s.key}', which ${architectures.length === 1 ? `architecture '${architectures[0]}' does not accept` : `none of ${architectures.join(', ')} accepts`} (its keys: ${[
          ...keysOf.values(),
        ]
          .flatMap((k) => [...k])
          .filter((k, i, all) => all.indexOf(k) === i)
          .join(', ')})`,
      );
    }
  }
  return architectures.flatMap((architecture) => {
    const keys = keysOf.get(architecture)!;
    let configs: Record<string, unknown>[] = [{}];
    for (const s of swept) {
      if (!keys.has(s.key) && !keys.has('*')) continue;
      configs = configs.flatMap((c) => s.values.map((v) => ({ ...c, [s.key]: v })));
    }
    return configs.map((config) => ({ architecture, config }));
  });
}
