import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { Dictionary, DictlearnError, writeFileAtomic } from '@dictlearn/core';
import { renderSvg, svgToPng } from './render.js';
import {
  curvePoints,
  frontierPoints,
  parseReferencePoints,
  type RunData,
  readRunFolder,
  type SummaryRow,
} from './run.js';
import {
  CURVE_METRICS,
  type CurvePoint,
  type DensityHistogram,
  densityHistogram,
  densitySpec,
  type FrontierPoint,
  frontierLines,
  frontierSpec,
  trainingCurvesSpec,
  type VegaLiteSpec,
} from './specs.js';
import { type ImageShape, mostUsedFirst, parseImageShape, tilePng, tileSheetPng } from './tiles.js';

/** Options of {@link buildReport}. */
export interface ReportOptions {
  /** Run folders (the `--out` of `dictlearn train` / `dictlearn demo`). */
  runs: readonly string[];
  /** Where the HTML will be written (links to features pages are made relative to it). */
  out: string;
  /** A JSON file of reference points for the frontier (see `parseReferencePoints`). */
  reference?: string;
  /** `H,W[,C]`: draw decoder rows as images of this shape. */
  imageShape?: string;
  /** Tiles per dictionary (most-used first; default 64). */
  tiles?: number;
  /** Page title. */
  title?: string;
}

/** One plot of the report: its spec, SVG, and where it belongs. */
export interface ReportPlot {
  /** A file-name-safe id (`curves-demo`, `density-demo-0_standard`...), also the PNG's name. */
  id: string;
  /** `curves`, `frontier-fve`, `frontier-mse`, `density` or `tiles`. */
  kind: 'curves' | 'frontier-fve' | 'frontier-mse' | 'density' | 'tiles';
  /** Caption. */
  title: string;
  /** The vega-lite spec (absent for tiles, which are pixel grids). */
  spec?: VegaLiteSpec;
  /** The rendered SVG (absent for tiles). */
  svg?: string;
  /** The PNG, for tiles (vega plots are rasterised from their SVG on demand). */
  png?: Buffer;
}

/** Every number the report shows, as `--json` writes it. */
export interface ReportJson {
  /** Per run. */
  runs: {
    /** Run label. */
    label: string;
    /** Run folder. */
    dir: string;
    /** Final table rows. */
    summary: SummaryRow[];
    /** What the table and densities were measured on. */
    scoredOn?: string;
    /** Training-curve points. */
    curves: CurvePoint[];
    /** Per trainer: the density histogram and the rows it was measured on. */
    density: Record<
      string,
      DensityHistogram & {
        /** Rows the firing frequencies were measured on. */
        tokens: number;
      }
    >;
    /** Per trainer: the feature ids drawn as tiles, in order. */
    tiles: Record<string, number[]>;
    /** Per trainer: the features page's path. */
    featuresPages: Record<string, string>;
  }[];
  /** Frontier points (reference points included), as plotted. */
  frontier: {
    /** L0–FVE points, per series in L0 order. */
    fve: FrontierPoint[];
    /** L0–MSE points, per series in L0 order. */
    mse: FrontierPoint[];
  };
  /** What the report could not show, and why. */
  notes: string[];
}

/** A built report: the HTML, its plots, and the numbers. */
export interface Report {
  /** The self-contained HTML page (inline SVG and PNG data, no script, no network). */
  html: string;
  /** The plots, in page order. */
  plots: ReportPlot[];
  /** Every number shown. */
  json: ReportJson;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function fileId(s: string): string {
  return s.replace(/[^A-Za-z0-9._=-]+/g, '_').replace(/^_+|_+$/g, '');
}

const fmt = (v: number | undefined, digits: number) => (v === undefined ? '–' : v.toFixed(digits));
const pct = (v: number | undefined) => (v === undefined ? '–' : `${(v * 100).toFixed(1)}%`);

function summaryTable(rows: SummaryRow[]): string {
  const ce = rows.some((r) => r.fracRecovered !== undefined);
  const truth = rows.some((r) => r.mmcs !== undefined);
  const head = [
    'trainer',
    'architecture',
    'L0',
    'FVE',
    'dead',
    ...(truth ? ['MMCS', 'recovered'] : []),
    ...(ce ? ['CE rec'] : []),
  ];
  const body = rows.map((r) =>
    [
      r.name,
      r.architecture,
      fmt(r.l0, 2),
      fmt(r.fve, 4),
      pct(r.deadFraction),
      ...(truth ? [fmt(r.mmcs, 4), pct(r.recovered)] : []),
      ...(ce ? [fmt(r.fracRecovered, 4)] : []),
    ]
      .map((c, i) => `<td${i > 1 ? ' class="n"' : ''}>${escapeHtml(c)}</td>`)
      .join(''),
  );
  return `<table class="summary"><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${body
    .map((b) => `<tr>${b}</tr>`)
    .join('')}</tbody></table>`;
}

async function loadDecoderRows(folder: string): Promise<{ rows: Float32Array; d: number; F: number }> {
  const dict = await Dictionary.load(folder, { backend: 'cpu' });
  try {
    const t = dict.decoderRows();
    try {
      const [F, d] = t.shape;
      return { rows: (await t.data()) as Float32Array, d, F };
    } finally {
      t.dispose();
    }
  } finally {
    dict.dispose();
  }
}

/**
 * Reads the run folders and builds the report: the frontier across every dictionary of every run
 * (with reference points), then per run its final table, training curves, a density histogram
 * per trainer, decoder-row tiles (with `imageShape`) and links to features pages. Throws a
 * DictlearnError naming the file for a folder that is not a run, a damaged log or a bad reference file.
 */
export async function buildReport(options: ReportOptions): Promise<Report> {
  if (options.runs.length === 0) throw new DictlearnError('report', 'name at least one run folder');
  const runs: RunData[] = [];
  for (const dir of options.runs) runs.push(...(await readRunFolder(dir)));
  const reference = options.reference
    ? parseReferencePoints(
        await readFile(options.reference, 'utf8').catch((e: Error) => {
          throw new DictlearnError(options.reference!, `cannot be read (${e.message})`);
        }),
        options.reference,
      )
    : [];
  const notes: string[] = [];
  const plots: ReportPlot[] = [];
  const sections: string[] = [];
  const figure = (p: ReportPlot, extra = '') =>
    `<figure class="plot" data-plot="${p.kind}" id="${escapeHtml(p.id)}"${extra}>${p.svg ?? ''}<figcaption>${escapeHtml(p.title)}</figcaption></figure>`;
  const addSpec = async (p: Omit<ReportPlot, 'svg'> & { spec: VegaLiteSpec }) => {
    const plot: ReportPlot = { ...p, svg: await renderSvg(p.spec) };
    plots.push(plot);
    return plot;
  };

  // The frontier across every dictionary of every run.
  const points = [...frontierPoints(runs), ...reference];
  const frontier = { fve: frontierLines(points, 'fve'), mse: frontierLines(points, 'mse') };
  const top: string[] = [];
  for (const y of ['fve', 'mse'] as const) {
    if (frontier[y].filter((p) => !p.reference).length === 0) {
      notes.push(
        `no L0–${y.toUpperCase()} frontier: ${y === 'fve' ? 'no run wrote summary.json (its final table)' : 'no log line has l0 and mse_loss'}`,
      );
      continue;
    }
    const title =
      y === 'fve'
        ? 'L0–FVE frontier (final table: evaluation rows)'
        : 'L0–MSE frontier (last logged training batch: l0, mse_loss)';
    const p = await addSpec({
      id: `frontier-${y}`,
      kind: `frontier-${y}`,
      title,
      spec: frontierSpec(points, y, { title }),
    });
    top.push(figure(p));
  }

  let shape: ImageShape | undefined;
  if (options.imageShape) shape = parseImageShape(options.imageShape);
  const json: ReportJson = { runs: [], frontier, notes };
  const outDir = dirname(resolve(options.out));
  for (const run of runs) {
    const id = fileId(run.label);
    const parts: string[] = [];
    const rows = run.summary?.trainers ?? [];
    const entry: ReportJson['runs'][number] = {
      label: run.label,
      dir: run.dir,
      summary: rows,
      ...(run.summary?.scoredOn ? { scoredOn: run.summary.scoredOn } : {}),
      curves: [],
      density: {},
      tiles: {},
      featuresPages: {},
    };
    if (rows.length > 0) {
      parts.push(
        `<p class="scored">${escapeHtml(`${run.summary?.steps ?? '?'} steps on ${run.summary?.backend ?? '?'}; scored on ${run.summary?.scoredOn ?? '?'}`)}</p>`,
        summaryTable(rows),
      );
    } else
      notes.push(
        `${run.label}: no summary.json (the final table); trained before the report existed, or stopped early`,
      );

    entry.curves = curvePoints(
      run.log,
      CURVE_METRICS.map((m) => m.key),
    );
    const curves = await addSpec({
      id: `curves-${id}`,
      kind: 'curves',
      title: `${run.label}: training curves (log.jsonl, ${new Set(run.log.map((r) => r.step)).size} logged steps)`,
      spec: trainingCurvesSpec(entry.curves),
    });
    parts.push(figure(curves, ` data-run="${escapeHtml(run.label)}"`));

    const density: string[] = [];
    for (const t of run.trainers) {
      if (!t.density) {
        notes.push(`${run.label}/${t.name}: no density.json, so no density histogram`);
        continue;
      }
      const h = densityHistogram(t.density.density);
      entry.density[t.name] = { ...h, tokens: t.density.tokens };
      const title = `${run.label}/${t.name}: feature density on ${t.density.tokens} rows`;
      const p = await addSpec({
        id: `density-${id}-${fileId(t.name)}`,
        kind: 'density',
        title,
        spec: densitySpec(h, { title: `${t.name}: feature density` }),
      });
      density.push(figure(p, ` data-run="${escapeHtml(run.label)}" data-trainer="${escapeHtml(t.name)}"`));
    }
    if (density.length) parts.push(`<div class="row">${density.join('')}</div>`);

    if (shape) {
      for (const t of run.trainers) {
        if (!t.folder) {
          notes.push(`${run.label}/${t.name}: no saved dictionary, so no tiles`);
          continue;
        }
        const { rows: dec, d, F } = await loadDecoderRows(t.folder);
        if (shape.height * shape.width * shape.channels !== d) {
          // Several runs may differ in d; the shape fits some of them.
          notes.push(
            `${run.label}/${t.name}: no tiles, --image-shape ${options.imageShape} holds ${shape.height * shape.width * shape.channels} values but d = ${d}`,
          );
          continue;
        }
        const ids = mostUsedFirst(F, t.density?.density, options.tiles ?? 64);
        entry.tiles[t.name] = ids;
        const imgs = ids
          .map((f) => {
            const src = `data:image/png;base64,${tilePng(dec.subarray(f * d, (f + 1) * d), shape).toString('base64')}`;
            const freq = t.density ? ` · ${t.density.density[f].toExponential(2)}` : '';
            return `<img class="tile" data-feature="${f}" alt="feature ${f}" title="feature ${f}${freq}" src="${src}" width="${shape.width * 3}" height="${shape.height * 3}">`;
          })
          .join('');
        const title = `${run.label}/${t.name}: decoder rows as ${shape.height}×${shape.width}${shape.channels === 3 ? '×3' : ''} images, ${t.density ? 'most-used first' : 'in id order (no density.json)'}`;
        const p: ReportPlot = {
          id: `tiles-${id}-${fileId(t.name)}`,
          kind: 'tiles',
          title,
          png: tileSheetPng(dec, d, ids, shape),
        };
        plots.push(p);
        parts.push(
          `<figure class="plot tiles" data-plot="tiles" id="${escapeHtml(p.id)}" data-run="${escapeHtml(run.label)}" data-trainer="${escapeHtml(t.name)}"><div class="grid">${imgs}</div><figcaption>${escapeHtml(title)}</figcaption></figure>`,
        );
      }
    }

    const pages = run.trainers.filter((t) => t.featuresPage);
    for (const t of pages) entry.featuresPages[t.name] = t.featuresPage!;
    if (pages.length) {
      parts.push(
        `<p class="features">features pages: ${pages
          .map((t) => `<a href="${escapeHtml(relative(outDir, t.featuresPage!))}">${escapeHtml(t.name)}</a>`)
          .join(', ')}</p>`,
      );
    }
    json.runs.push(entry);
    sections.push(
      `<section class="run" data-run="${escapeHtml(run.label)}"><h2>${escapeHtml(run.label)}</h2>${parts.join('\n')}</section>`,
    );
  }

  const title = options.title ?? `dictlearn report: ${runs.map((r) => r.label).join(', ')}`;
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>${escapeHtml(title)}</title>
<style>
body { font: 14px/1.4 system-ui, 'DejaVu Sans', sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; border-top: 1px solid #ddd; padding-top: .8em; }
figure { margin: .5em 1em .5em 0; display: inline-block; vertical-align: top; }
figcaption { font-size: 12px; color: #555; max-width: 760px; }
table.summary { border-collapse: collapse; margin: .5em 0; } table.summary td, table.summary th { padding: 2px 8px; border-bottom: 1px solid #eee; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: flex; flex-wrap: wrap; gap: 2px; max-width: 760px; }
img.tile { image-rendering: pixelated; border: 1px solid #ccc; }
.notes { color: #777; font-size: 12px; }
</style></head>
<body>
<h1>${escapeHtml(title)}</h1>
${top.length ? `<section class="frontier">${top.join('\n')}</section>` : ''}
${sections.join('\n')}
${notes.length ? `<ul class="notes">${notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('')}</ul>` : ''}
</body></html>
`;
  return { html, plots, json };
}

/** Options of {@link writeReport}: {@link ReportOptions} and where the PNGs and JSON go. */
export interface WriteReportOptions extends ReportOptions {
  /** A folder for one PNG per plot (`<plot id>.png`). */
  pngDir?: string;
  /** A file for every number shown. */
  json?: string;
}

/** What {@link writeReport} wrote. */
export interface WrittenReport {
  /** Path of the HTML file. */
  html: string;
  /** Paths of the PNG files (empty without `png`). */
  pngs: string[];
  /** Path of the JSON file, when asked for. */
  json?: string;
  /** The report itself. */
  report: Report;
}

/** Builds the report and writes the HTML (and PNGs, JSON); each file temp + rename. Returns the paths written. */
export async function writeReport(options: WriteReportOptions): Promise<WrittenReport> {
  const report = await buildReport(options);
  await mkdir(dirname(resolve(options.out)), { recursive: true });
  await writeFileAtomic(options.out, report.html);
  const pngs: string[] = [];
  if (options.pngDir) {
    await mkdir(options.pngDir, { recursive: true });
    for (const p of report.plots) {
      const file = join(options.pngDir, `${p.id}.png`);
      await writeFileAtomic(file, p.png ?? (await svgToPng(p.svg!)));
      pngs.push(file);
    }
  }
  if (options.json) {
    await mkdir(dirname(resolve(options.json)), { recursive: true });
    await writeFileAtomic(options.json, `${JSON.stringify(report.json, null, 1)}\n`);
  }
  return { html: options.out, pngs, ...(options.json ? { json: options.json } : {}), report };
}
