import { DictlearnError } from './errors.js';
import { closestName } from './suggest.js';

/**
 * What a source option holds, for {@link parseSourceOptions}: `number`, `integer`, `count` (an
 * integer or `Infinity`), `boolean`, `string` (any), `non-empty string`, `paths` / `strings` (an
 * array or one comma-separated string, no empty item), `{ oneOf }` (one of the listed strings) or
 * `{ object }` (a plain object, described by the text for errors).
 */
export type SourceOptionKind =
  | 'number'
  | 'integer'
  | 'count'
  | 'boolean'
  | 'string'
  | 'non-empty string'
  | 'paths'
  | 'strings'
  | {
      /** The allowed values. */
      oneOf: readonly string[];
    }
  | {
      /** How an error names the expected object, e.g. `a saved position object`. */
      object: string;
    };

/**
 * Checks a source factory's plain options (from a CLI flag or a config file) against `fields`:
 * unknown fields (with the nearest known name), missing `required` ones and wrong types are
 * `DictlearnError`s naming the source and the field. Numbers may be given as numeric strings.
 * Known options set to `undefined` are left out.
 */
export function parseSourceOptions(
  source: string,
  options: Record<string, unknown>,
  fields: Record<string, SourceOptionKind>,
  required: readonly string[] = [],
): Record<string, unknown> {
  const op = `source '${source}'`;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new DictlearnError(op, `options must be an object, got ${JSON.stringify(options)}`);
  }
  const known = Object.keys(fields);
  const out: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(options)) {
    const kind = fields[key];
    if (!kind) {
      const near = closestName(key, known);
      throw new DictlearnError(
        op,
        `unknown option '${key}'${near ? ` (did you mean '${near}'?)` : ''}; expected one of ${known
          .map((k) => `'${k}'`)
          .join(', ')}`,
      );
    }
    if (raw === undefined) continue;
    out[key] = parseSourceOption(op, key, kind, raw);
  }
  for (const key of required) {
    if (out[key] === undefined) throw new DictlearnError(op, `option '${key}' is required`);
  }
  return out;
}

function parseSourceOption(op: string, key: string, kind: SourceOptionKind, raw: unknown): unknown {
  const show = JSON.stringify(raw);
  const fail = (expected: string) =>
    new DictlearnError(op, `option '${key}' must be ${expected}, got ${show}`);
  if (typeof kind === 'object') {
    if ('oneOf' in kind) {
      if (typeof raw !== 'string' || !kind.oneOf.includes(raw))
        throw fail(kind.oneOf.map((v) => `'${v}'`).join(' or '));
      return raw;
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw fail(kind.object);
    return raw;
  }
  switch (kind) {
    case 'boolean':
      if (raw === true || raw === 'true') return true;
      if (raw === false || raw === 'false') return false;
      throw fail('true or false');
    case 'number':
    case 'integer':
    case 'count': {
      const v =
        typeof raw === 'number'
          ? raw
          : typeof raw === 'string' && raw.trim() !== ''
            ? Number(raw)
            : Number.NaN;
      if (kind === 'count' && v === Number.POSITIVE_INFINITY) return v;
      if (!Number.isFinite(v) || (kind !== 'number' && !Number.isSafeInteger(v))) {
        throw fail(kind === 'number' ? 'a number' : 'an integer');
      }
      return v;
    }
    case 'string':
    case 'non-empty string':
      if (typeof raw !== 'string' || (kind === 'non-empty string' && raw === ''))
        throw fail(kind === 'string' ? 'a string' : 'a non-empty string');
      return raw;
    case 'paths':
    case 'strings': {
      const list = typeof raw === 'string' ? raw.split(',').map((s) => s.trim()) : raw;
      if (
        !Array.isArray(list) ||
        list.length === 0 ||
        !list.every((p) => typeof p === 'string' && p !== '')
      ) {
        throw fail(kind === 'paths' ? 'a path or a list of paths' : 'a string or a list of strings');
      }
      return list;
    }
  }
}
