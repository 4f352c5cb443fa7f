import type { Shape } from './types.js';

/**
 * Every error dictlearn throws on bad input. `op` names the operation (or file, or
 * field) that refused the input; the message says what was given and what was expected.
 */
export class DictlearnError extends Error {
  /** The operation, file or setting that refused the input. */
  readonly op: string;
  constructor(op: string, message: string) {
    super(`${op}: ${message}`);
    this.name = 'DictlearnError';
    this.op = op;
  }
}

/** Formats a shape the way errors print it: `[4, 3]`, `[]` for a scalar. */
export function fmtShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

/** Throws a {@link DictlearnError} for `op` when `condition` is false. */
export function check(condition: unknown, op: string, message: () => string): asserts condition {
  if (!condition) throw new DictlearnError(op, message());
}
