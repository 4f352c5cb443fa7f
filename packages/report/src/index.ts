/**
 * `@dictlearn/report`: one self-contained HTML report of dictlearn runs (no script, no network at
 * view time): the L0–FVE and L0–MSE frontier across every dictionary (with reference points),
 * and per run the final table, training curves from `log.jsonl`, a feature-density histogram per
 * trainer and decoder rows drawn as image tiles. Plots are vega-lite specs
 * (`@dictlearn/report/specs`, browser-safe) rendered to SVG in Node by vega, and to PNG by resvg.
 *
 * ```ts
 * import { writeReport } from '@dictlearn/report';
 * await writeReport({ runs: ['runs/demo'], out: 'runs/demo/report.html', pngDir: 'runs/demo/plots' });
 * ```
 * @packageDocumentation
 */
export { encodePng, type PngSize, pngSize } from './png.js';
export { renderSvg, svgToPng } from './render.js';
export {
  buildReport,
  type Report,
  type ReportJson,
  type ReportOptions,
  type ReportPlot,
  type WriteReportOptions,
  type WrittenReport,
  writeReport,
} from './report.js';
export {
  curvePoints,
  DENSITY_FILE,
  type DensityFile,
  frontierPoints,
  type LogRow,
  parseLog,
  parseReferencePoints,
  type RunData,
  type RunSummary,
  readDensityFile,
  readRunFolder,
  SUMMARY_FILE,
  type SummaryRow,
  type TrainerData,
  writeDensityFile,
  writeSummaryFile,
} from './run.js';
export * from './specs.js';
export {
  type ImageShape,
  mostUsedFirst,
  parseImageShape,
  rowPixels,
  tilePng,
  tileSheetPng,
} from './tiles.js';
