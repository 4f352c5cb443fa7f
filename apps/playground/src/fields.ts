/**
 * The architecture form: every registered architecture and its hyper-parameters, learned from
 * the plugins themselves (so a new plugin shows up with its fields and nothing here drifts), and
 * the sweep a form describes (comma-separated values → one trainer per combination).
 */
import { createArchitecture, DictlearnError, listPlugins } from '@dictlearn/core';

/** How a field is edited and parsed. */
export type FieldKind = 'number' | 'boolean' | 'string' | 'json';

/** One hyper-parameter of an architecture, as the form shows it. */
export interface ArchField {
  /** The config key, e.g. `l1Penalty`. */
  key: string;
  /** How it is edited. */
  kind: FieldKind;
  /** The value the form starts with: the plugin's default, or a suggestion for a required field. */
  value: unknown;
  /**
   * True when the plugin has no default (e.g. TopK's `k`): the starting value is the page's
   * suggestion for a toy run, not the plugin's.
   */
  required: boolean;
}

/** Sizes of the run, for the suggestions of required fields that depend on them. */
export interface RunSizes {
  /** Width d of the data. */
  dim: number;
  /** Features F of each dictionary. */
  dictSize: number;
  /** Mean active true features per sample (synthetic data), a fair k. */
  meanActive: number;
}

/**
 * Starting values for fields a plugin requires without a default. The plugins name these in their
 * validation errors; the page needs a value to show, sized for a toy run. Only fields with no
 * default appear here: every other field and its default come from the plugin.
 */
const REQUIRED_SUGGESTIONS: Record<string, (s: RunSizes) => unknown> = {
  k: (s) => Math.max(1, Math.round(s.meanActive)),
  // Matryoshka prefixes: a quarter, a quarter, the rest (they must sum to F).
  groups: (s) => {
    const q = Math.max(1, Math.floor(s.dictSize / 4));
    return s.dictSize >= 3 ? [q, q, s.dictSize - 2 * q] : [s.dictSize];
  },
  inner: () => 'standard',
  heads: (s) => [4, 2, 1].find((h) => s.dim % h === 0 && s.dictSize % h === 0) ?? 1,
};

/** A required field named by a validation error, and the kind the error says it takes. */
const REQUIRED =
  /field '([A-Za-z_][A-Za-z0-9_]*)' (?:is required(?: \(an? (number|string|boolean)\))?|must be .*got undefined)/;

function kindOf(v: unknown): FieldKind {
  if (typeof v === 'number') return 'number';
  if (typeof v === 'boolean') return 'boolean';
  if (typeof v === 'string') return 'string';
  return 'json';
}

/** Names of every registered architecture, sorted. */
export function architectureNames(): string[] {
  return listPlugins('architecture').sort();
}

/**
 * The fields of an architecture: the keys and defaults of the config its factory resolves from
 * `{}`. A field the factory requires is filled with the page's suggestion (or, lacking one, a
 * placeholder of the kind the error names) until the factory accepts the config; such fields are
 * marked `required`. Throws a `DictlearnError` naming the architecture when no config can be made.
 */
export function architectureFields(name: string, sizes: RunSizes): ArchField[] {
  const given: Record<string, unknown> = {};
  const required = new Set<string>();
  for (let attempt = 0; attempt < 16; attempt++) {
    let config: Record<string, unknown>;
    try {
      config = createArchitecture(name, given).config as Record<string, unknown>;
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      const m = REQUIRED.exec(message);
      if (!m || m[1] in given) {
        throw new DictlearnError(
          `architecture '${name}'`,
          `the page cannot build a default config (${message}); given ${JSON.stringify(given)}`,
        );
      }
      const suggest = REQUIRED_SUGGESTIONS[m[1]];
      given[m[1]] = suggest ? suggest(sizes) : m[2] === 'string' ? '' : m[2] === 'boolean' ? false : 1;
      required.add(m[1]);
      continue;
    }
    return Object.entries(config).map(([key, value]) => ({
      key,
      kind: kindOf(value),
      value,
      required: required.has(key),
    }));
  }
  throw new DictlearnError(`architecture '${name}'`, 'too many required fields to fill in');
}

/** The text a field shows for a value (JSON for arrays and objects). */
export function fieldText(field: Pick<ArchField, 'kind'>, value: unknown): string {
  return field.kind === 'json' ? JSON.stringify(value) : String(value);
}

/**
 * The values a field's text lists: comma-separated for numbers, booleans and strings (a sweep),
 * one JSON value for `json` fields (JSON has its own commas). Throws a `DictlearnError` naming the
 * field and what was expected.
 */
export function parseFieldValues(key: string, kind: FieldKind, text: string): unknown[] {
  const where = `field '${key}'`;
  if (kind === 'json') {
    try {
      return [JSON.parse(text)];
    } catch (e) {
      throw new DictlearnError(
        where,
        `'${text}' is not JSON (${(e as Error).message}); expected e.g. [32, 32, 64]`,
      );
    }
  }
  const parts = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (parts.length === 0)
    throw new DictlearnError(where, `is empty; expected a ${kind} (or several, comma-separated)`);
  return parts.map((s) => {
    if (kind === 'number') {
      const v = Number(s);
      if (!Number.isFinite(v)) throw new DictlearnError(where, `'${s}' is not a finite number`);
      return v;
    }
    if (kind === 'boolean') {
      if (s !== 'true' && s !== 'false') throw new DictlearnError(where, `'${s}' is not true or false`);
      return s === 'true';
    }
    return s;
  });
}

/** One swept axis: a key and the values it takes. */
export interface SweepAxis {
  /** Config key (or trainer option such as `lr`). */
  key: string;
  /** Its values, one or more. */
  values: unknown[];
}

/** One combination of a sweep: its values by key, and a label naming the swept ones. */
export interface SweepPoint {
  /** Values of every axis. */
  values: Record<string, unknown>;
  /** `key=value` of each axis with more than one value (the architecture name when none). */
  label: string;
}

/** Most settings one run trains side by side. */
export const MAX_SETTINGS = 8;

/**
 * Every combination of the axes' values (the first axis varies slowest), each labelled by the
 * swept keys. Throws when there would be more than {@link MAX_SETTINGS}.
 */
export function expandSweep(axes: SweepAxis[], fallbackLabel: string): SweepPoint[] {
  const count = axes.reduce((n, a) => n * a.values.length, 1);
  if (count > MAX_SETTINGS) {
    throw new DictlearnError(
      'sweep',
      `${axes
        .filter((a) => a.values.length > 1)
        .map((a) => `${a.key} (${a.values.length})`)
        .join(' × ')} makes ${count} settings; at most ${MAX_SETTINGS} train side by side in the page`,
    );
  }
  let points: Record<string, unknown>[] = [{}];
  for (const a of axes) points = points.flatMap((p) => a.values.map((v) => ({ ...p, [a.key]: v })));
  const swept = axes.filter((a) => a.values.length > 1).map((a) => a.key);
  return points.map((values) => ({
    values,
    label:
      swept.length === 0 ? fallbackLabel : swept.map((k) => `${k}=${JSON.stringify(values[k])}`).join(' '),
  }));
}
