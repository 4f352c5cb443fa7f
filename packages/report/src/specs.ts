/**
 * `@dictlearn/report/specs`: vega-lite specifications of the plots of a dictlearn report, built
 * from plain data (no Node imports, no vega at run time): training curves, the sparsity–fidelity
 * frontier and the feature-density histogram, plus the pure data helpers they need
 * ({@link densityHistogram}, {@link frontierLines}). The report renders them to SVG in Node; the
 * playground renders the same specs live in the browser with vega-embed or `vega.View`.
 *
 * ```ts
 * import { trainingCurvesSpec } from '@dictlearn/report/specs';
 * const spec = trainingCurvesSpec([{ trainer: 'l1=0.1', step: 100, metric: 'loss', value: 0.5 }]);
 * ```
 * @packageDocumentation
 */
import type { TopLevelSpec } from 'vega-lite';

/** A vega-lite specification as the builders return it (compile it with vega-lite's `compile`). */
export type VegaLiteSpec = TopLevelSpec;

/** The vega-lite schema the specs are written against. */
export const VEGA_LITE_SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

/** One logged value of one trainer: a point of a training curve. */
export interface CurvePoint {
  /** Trainer name (one line per trainer). */
  trainer: string;
  /** Steps completed when the value was logged. */
  step: number;
  /** Metric key as log.jsonl names it (`loss`, `mse_loss`, `l0`, `frac_variance_explained`, `dead_fraction`, `lr`). */
  metric: string;
  /** The logged value. */
  value: number;
}

/** The metrics the training-curve plot shows, in order, with their axis titles. */
/** A metric the training-curve plot can show. */
export interface CurveMetric {
  /** Key in log.jsonl. */
  key: string;
  /** Axis and panel title. */
  title: string;
}

/** The metrics the training-curve plot shows by default. */
export const CURVE_METRICS: readonly CurveMetric[] = [
  { key: 'loss', title: 'loss' },
  { key: 'mse_loss', title: 'MSE' },
  { key: 'l0', title: 'L0' },
  { key: 'frac_variance_explained', title: 'FVE' },
  { key: 'dead_fraction', title: 'dead fraction' },
  { key: 'lr', title: 'learning rate' },
];

/** Options shared by the builders. */
export interface SpecOptions {
  /** Plot title. */
  title?: string;
  /** Width of one panel in pixels. */
  width?: number;
  /** Height of one panel in pixels. */
  height?: number;
}

/**
 * Training curves: one small panel per metric (x = step, each y scale its own), one coloured
 * line per trainer, a point per logged step (so a reader, and the report's test, can count the
 * logged steps). Metrics without any point are left out rather than drawn empty.
 */
export function trainingCurvesSpec(
  points: readonly CurvePoint[],
  options: SpecOptions & {
    metrics?: readonly { key: string; title: string }[];
    /** Legend title of the lines (default `trainer`; the playground says `setting`). */
    seriesTitle?: string;
  } = {},
): VegaLiteSpec {
  const metrics = (options.metrics ?? CURVE_METRICS).filter((m) => points.some((p) => p.metric === m.key));
  const panel = (m: { key: string; title: string }) => ({
    title: m.title,
    width: options.width ?? 220,
    height: options.height ?? 140,
    transform: [{ filter: { field: 'metric', equal: m.key } }],
    mark: { type: 'line' as const, point: { size: 14 }, strokeWidth: 1.5 },
    encoding: {
      x: { field: 'step', type: 'quantitative' as const, title: 'step' },
      // '~r' drops trailing zeros and never uses exponents: a flat curve reads 0, not 0.000000, and
      // an L0 of 600 reads 600, not 6e+2.
      y: {
        field: 'value',
        type: 'quantitative' as const,
        title: m.title,
        scale: { zero: false },
        axis: { format: '~r' },
      },
      color: { field: 'trainer', type: 'nominal' as const, title: options.seriesTitle ?? 'trainer' },
      tooltip: [
        { field: 'trainer', type: 'nominal' as const },
        { field: 'step', type: 'quantitative' as const },
        { field: 'value', type: 'quantitative' as const, format: '.4g' },
      ],
    },
  });
  return {
    $schema: VEGA_LITE_SCHEMA,
    ...(options.title ? { title: options.title } : {}),
    data: { values: points.map((p) => ({ ...p })) },
    columns: 3,
    concat: metrics.map(panel),
    resolve: { scale: { y: 'independent' } },
  } as VegaLiteSpec;
}

/** One dictionary on the sparsity–fidelity plane. */
export interface FrontierPoint {
  /** What the point is (trainer name or reference label). */
  label: string;
  /** Which line the point belongs to (a run, a sweep, a reference set). */
  series: string;
  /** Mean active features per row. */
  l0: number;
  /** Fraction of variance explained (for the L0–FVE plot). */
  fve?: number;
  /** Mean squared error per row, ‖x − x̂‖² (for the L0–MSE plot). */
  mse?: number;
  /** Whether the point is a reference figure rather than a dictionary of these runs. */
  reference?: boolean;
}

/**
 * The points of each series sorted by L0, the order the frontier's line joins them in (a line in
 * file order would zig-zag). Points without the y value are dropped.
 */
export function frontierLines(points: readonly FrontierPoint[], y: 'fve' | 'mse'): FrontierPoint[] {
  return points
    .filter((p) => Number.isFinite(p.l0) && Number.isFinite(p[y]))
    .slice()
    .sort((a, b) => (a.series < b.series ? -1 : a.series > b.series ? 1 : a.l0 - b.l0));
}

/**
 * The frontier: L0 (log scale) against FVE or MSE, a line and points per series, reference
 * points as crosses without a line.
 */
export function frontierSpec(
  points: readonly FrontierPoint[],
  y: 'fve' | 'mse',
  options: SpecOptions = {},
): VegaLiteSpec {
  const sorted = frontierLines(points, y).map((p, order) => ({
    ...p,
    reference: p.reference === true,
    order,
  }));
  const yTitle = y === 'fve' ? 'fraction of variance explained' : 'MSE ‖x − x̂‖²';
  const encoding = {
    x: {
      field: 'l0',
      type: 'quantitative' as const,
      title: 'L0 (active features per row)',
      scale: { type: 'log' as const },
    },
    y: { field: y, type: 'quantitative' as const, title: yTitle, scale: { zero: false } },
    color: { field: 'series', type: 'nominal' as const, title: 'run' },
  };
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: options.title ?? `L0–${y === 'fve' ? 'FVE' : 'MSE'} frontier`,
    width: options.width ?? 360,
    height: options.height ?? 240,
    data: { values: sorted },
    layer: [
      {
        transform: [{ filter: 'datum.reference == false' }],
        mark: { type: 'line', strokeWidth: 1.5 },
        encoding: { ...encoding, order: { field: 'order', type: 'quantitative' } },
      },
      {
        mark: { type: 'point', filled: true, size: 50 },
        encoding: {
          ...encoding,
          shape: {
            field: 'reference',
            type: 'nominal',
            title: 'reference',
            scale: { domain: [false, true], range: ['circle', 'cross'] },
          },
          tooltip: [
            { field: 'label', type: 'nominal' },
            { field: 'l0', type: 'quantitative', format: '.3g' },
            { field: y, type: 'quantitative', format: '.4g' },
          ],
        },
      },
    ],
  } as VegaLiteSpec;
}

/** A feature firing on at least this fraction of rows counts as dense (plotted in its own colour). */
export const DENSE_THRESHOLD = 0.1;

/** One bar of the density histogram: features whose log10 firing frequency lies in [lo, hi). */
export interface DensityBin {
  /** Lower edge, log10 of the firing frequency (for the dead bar: one bin width left of the first bin). */
  lo: number;
  /** Upper edge. */
  hi: number;
  /** Features in the bin. */
  count: number;
  /** `dead` (never fired), `dense` (frequency at least {@link DENSE_THRESHOLD}) or `alive`. */
  kind: 'dead' | 'alive' | 'dense';
}

/** A histogram of feature densities, from {@link densityHistogram}. */
export interface DensityHistogram {
  /** Bars, left to right; the first is the dead bar when any feature is dead. */
  bins: DensityBin[];
  /** Features that never fired (density exactly 0). */
  dead: number;
  /** Features that fired on at least {@link DENSE_THRESHOLD} of the rows. */
  dense: number;
  /** Features in all. */
  total: number;
}

/**
 * Bins firing frequencies by log10 with bins `binWidth` wide (default 0.25) aligned to multiples
 * of it, from the bin holding the rarest live feature up to the one holding 1 (a feature firing
 * on every row); a feature exactly on an edge goes into the bin above it. A feature that fired
 * on at least {@link DENSE_THRESHOLD} of the rows is dense, and a bin is drawn dense when its
 * lower edge is at or above log10 of the threshold (the default width puts −1 on an edge).
 * Features with density exactly 0 are dead: log10 is −∞, so they get their own bar one bin left
 * of the first. Densities must lie in [0, 1].
 */
export function densityHistogram(density: ArrayLike<number>, binWidth = 0.25): DensityHistogram {
  if (!(binWidth > 0)) throw new RangeError(`densityHistogram: binWidth must be positive, got ${binWidth}`);
  let dead = 0;
  let dense = 0;
  let minLog = 0;
  const logs: number[] = [];
  for (let i = 0; i < density.length; i++) {
    const v = density[i];
    if (!(v >= 0 && v <= 1)) {
      throw new RangeError(`densityHistogram: density[${i}] is ${v}; a firing frequency lies in [0, 1]`);
    }
    if (v === 0) {
      dead++;
      continue;
    }
    if (v >= DENSE_THRESHOLD) dense++;
    const l = Math.log10(v);
    logs.push(l);
    if (l < minLog) minLog = l;
  }
  // Integer bin indices (k = floor(log10 / width)) keep the edges exact multiples of the width.
  const first = Math.floor(minLog / binWidth + 1e-9);
  const last = 0;
  const counts = new Array<number>(last - first + 1).fill(0);
  for (const l of logs) {
    const k = Math.min(last, Math.floor(l / binWidth + 1e-9));
    counts[k - first]++;
  }
  const denseFrom = Math.log10(DENSE_THRESHOLD);
  const edge = (k: number) => Number((k * binWidth).toFixed(10));
  const bins: DensityBin[] = [];
  if (dead > 0) bins.push({ lo: edge(first - 1), hi: edge(first), count: dead, kind: 'dead' });
  counts.forEach((count, i) => {
    const lo = edge(first + i);
    bins.push({ lo, hi: edge(first + i + 1), count, kind: lo >= denseFrom - 1e-9 ? 'dense' : 'alive' });
  });
  return { bins, dead, dense, total: density.length };
}

/**
 * The feature-density histogram: bars over log10 firing frequency, dead features as their own
 * bar at the left, dense bins in their own colour and a rule at the dense threshold.
 */
export function densitySpec(histogram: DensityHistogram, options: SpecOptions = {}): VegaLiteSpec {
  const pct = (n: number) => `${((100 * n) / Math.max(1, histogram.total)).toFixed(1)}%`;
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: {
      text: options.title ?? 'feature density',
      subtitle: `${histogram.total} features · dead ${histogram.dead} (${pct(histogram.dead)}) · dense ${histogram.dense} (${pct(histogram.dense)}, ≥ ${DENSE_THRESHOLD})`,
    },
    width: options.width ?? 360,
    height: options.height ?? 200,
    data: { values: histogram.bins.map((b) => ({ ...b })) },
    layer: [
      {
        mark: { type: 'bar', binSpacing: 1 },
        encoding: {
          x: {
            field: 'lo',
            type: 'quantitative',
            bin: { binned: true },
            title: 'log10 firing frequency (dead: never fired)',
          },
          x2: { field: 'hi' },
          y: { field: 'count', type: 'quantitative', title: 'features' },
          color: {
            field: 'kind',
            type: 'nominal',
            title: null,
            scale: { domain: ['dead', 'alive', 'dense'], range: ['#b0b0b0', '#4c78a8', '#e45756'] },
          },
          tooltip: [
            { field: 'kind', type: 'nominal' },
            { field: 'lo', type: 'quantitative', format: '.2f' },
            { field: 'hi', type: 'quantitative', format: '.2f' },
            { field: 'count', type: 'quantitative' },
          ],
        },
      },
      {
        data: { values: [{ x: Math.log10(DENSE_THRESHOLD) }] },
        mark: { type: 'rule', strokeDash: [4, 3], color: '#e45756' },
        encoding: { x: { field: 'x', type: 'quantitative' } },
      },
    ],
  } as VegaLiteSpec;
}
