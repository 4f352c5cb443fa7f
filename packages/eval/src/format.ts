import { DictlearnError } from '@dictlearn/core';

/**
 * A set of named metrics: {@link EvalMetrics}, {@link GroundTruthRecovery} or any plain object.
 * Only its number-valued entries are printed (arrays such as `maxCos` are skipped).
 */
export type MetricValues = { readonly [name: string]: unknown };

/** One column of a side-by-side table: a label (a dictionary's name) and its metrics. */
export type MetricsColumn = {
  /** Column heading. */
  label: string;
  /** The metrics printed under it. */
  metrics: MetricValues;
};

/** Options of {@link formatMetrics}. */
export interface FormatMetricsOptions {
  /** Digits after the decimal point for non-integer values (default 4). */
  digits?: number;
}

function formatValue(v: number, digits: number, integral: boolean): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return 'Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  if (integral) return String(v);
  const a = Math.abs(v);
  if (v !== 0 && (a < 10 ** -digits || a >= 1e9)) return v.toExponential(Math.max(1, digits - 1));
  return v.toFixed(digits);
}

/**
 * Formats metrics as an aligned plain-text table, one metric per line: names on the left,
 * values right-aligned. Pass one set of metrics for a two-column table, or an array of labelled
 * columns to compare several dictionaries side by side. A row whose values are all integers
 * (`batches`, `tokens`) prints without decimals; NaN prints as `NaN`, a missing value as `-`.
 *
 * ```ts
 * console.log(formatMetrics(await evaluate(dict, batches)));
 * // metric                         value
 * // ----------------------------  -------
 * // l2_loss                        0.4182
 * // ...
 * ```
 */
export function formatMetrics(
  metrics: MetricValues | readonly MetricsColumn[],
  options: FormatMetricsOptions = {},
): string {
  const digits = options.digits ?? 4;
  if (!Number.isInteger(digits) || digits < 0 || digits > 20) {
    throw new DictlearnError('formatMetrics', `options.digits must be an integer in [0, 20], got ${digits}`);
  }
  if (metrics === null || typeof metrics !== 'object') {
    throw new DictlearnError(
      'formatMetrics',
      `expected a metrics object or an array of { label, metrics }, got ${metrics === null ? 'null' : typeof metrics}`,
    );
  }
  const columns: readonly MetricsColumn[] = Array.isArray(metrics)
    ? metrics
    : [{ label: 'value', metrics: metrics as MetricValues }];
  if (columns.length === 0) throw new DictlearnError('formatMetrics', 'no columns to format');
  columns.forEach((c, i) => {
    if (c === null || typeof c !== 'object' || typeof c.label !== 'string' || !c.metrics) {
      throw new DictlearnError('formatMetrics', `column ${i} must be { label: string, metrics: object }`);
    }
  });

  const names: string[] = [];
  for (const c of columns) {
    for (const [name, v] of Object.entries(c.metrics)) {
      if (typeof v === 'number' && !names.includes(name)) names.push(name);
    }
  }
  const header = ['metric', ...columns.map((c) => c.label)];
  const rows = names.map((name) => {
    const values = columns.map((c) => c.metrics[name]);
    const integral = values.every((v) => typeof v !== 'number' || Number.isInteger(v));
    return [name, ...values.map((v) => (typeof v === 'number' ? formatValue(v, digits, integral) : '-'))];
  });
  const table = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...table.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
