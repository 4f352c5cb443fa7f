/**
 * Vega-lite specs of the playground's own views (the training curves come from
 * `@dictlearn/report/specs`, shared with the report): how closely each setting's learned
 * features match the true ones, and one feature's decoder row against its matched true feature.
 */
import { VEGA_LITE_SCHEMA, type VegaLiteSpec } from '@dictlearn/report/specs';

/** One learned feature's best cosine to a true feature, with its rank within its setting. */
export interface RecoveryPoint {
  /** The setting's label. */
  trainer: string;
  /** 1-based rank by cosine, largest first. */
  rank: number;
  /** The cosine. */
  cos: number;
}

/**
 * For each setting, its learned features' cosines to their nearest true feature, sorted (one line
 * per setting), with the 0.9 line that counts a feature as recovered.
 */
export function recoverySpec(points: readonly RecoveryPoint[], threshold = 0.9): VegaLiteSpec {
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: 'learned features, sorted by cosine to the nearest true feature',
    width: 420,
    height: 160,
    layer: [
      {
        data: { values: points.map((p) => ({ ...p })) },
        mark: { type: 'line', strokeWidth: 1.5, interpolate: 'step-after' },
        encoding: {
          x: { field: 'rank', type: 'quantitative', title: 'learned feature (rank)' },
          y: { field: 'cos', type: 'quantitative', title: 'cosine', scale: { domain: [-1, 1] } },
          color: { field: 'trainer', type: 'nominal', title: 'setting' },
        },
      },
      {
        data: { values: [{ threshold }] },
        mark: { type: 'rule', strokeDash: [4, 3], color: '#57606a' },
        encoding: { y: { field: 'threshold', type: 'quantitative' } },
      },
    ],
  } as VegaLiteSpec;
}

/** A decoder row and (when there is one) the true feature it matches, component by component. */
export function featureRowSpec(
  title: string,
  learned: readonly number[],
  truth: readonly number[] | undefined,
): VegaLiteSpec {
  const values = learned.map((v, i) => ({ component: i, series: 'learned (unit norm)', value: v }));
  if (truth) values.push(...truth.map((v, i) => ({ component: i, series: 'true feature', value: v })));
  return {
    $schema: VEGA_LITE_SCHEMA,
    title,
    width: 520,
    height: 150,
    data: { values },
    mark: { type: 'bar' },
    encoding: {
      x: {
        field: 'component',
        type: 'ordinal',
        title: 'component of the activation',
        axis: { labelOverlap: true },
      },
      xOffset: { field: 'series', type: 'nominal' },
      y: { field: 'value', type: 'quantitative', title: 'value' },
      color: {
        field: 'series',
        type: 'nominal',
        title: null,
        scale: { range: ['#0969da', '#cf222e'] },
      },
      tooltip: [
        { field: 'series', type: 'nominal' },
        { field: 'component', type: 'ordinal' },
        { field: 'value', type: 'quantitative', format: '.3f' },
      ],
    },
  } as VegaLiteSpec;
}
