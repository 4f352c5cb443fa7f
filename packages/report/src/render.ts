import type { VegaLiteSpec } from './specs.js';

// vega, vega-lite and resvg (a native addon) load on first use: a program that imports this
// package only to write a run's summary or density files (the CLI's `train`) never loads them,
// and bundlers of such a program never meet resvg's `.node` binary.
let vegaModules: Promise<[typeof import('vega'), typeof import('vega-lite')]> | undefined;
let resvgModule: Promise<typeof import('@resvg/resvg-js')> | undefined;

/**
 * Renders a vega-lite spec to an SVG string in Node: compiled by vega-lite, run by a headless
 * vega `View` (renderer `none`, so no DOM or canvas is needed). Text widths are vega's estimate
 * (no canvas to measure with), which only affects label spacing.
 */
export async function renderSvg(spec: VegaLiteSpec): Promise<string> {
  vegaModules ??= Promise.all([import('vega'), import('vega-lite')]);
  const [{ parse, View }, { compile }] = await vegaModules;
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * Rasterises an SVG with resvg (prebuilt native binary, no install script) at `scale` times its
 * size, with the system's fonts (DejaVu Sans where the SVG names a font the system lacks).
 */
export async function svgToPng(svg: string, scale = 2): Promise<Buffer> {
  resvgModule ??= import('@resvg/resvg-js');
  const { Resvg } = await resvgModule;
  const r = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: scale },
    background: 'white',
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
  });
  return r.render().asPng();
}
