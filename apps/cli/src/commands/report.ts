import { parseArgs } from 'node:util';
import { writeReport } from '@dictlearn/report';
import { ConfigError, flagNumber } from './train-config.js';

/** Usage lines of `dictlearn report`, for the command table of `dictlearn --help`. */
export const REPORT_USAGE = `  report    dictlearn report RUN_DIR [RUN_DIR...]: one self-contained HTML page (no script, no
            network) of the L0–FVE and L0–MSE frontier across every dictionary, and per run its
            final table, training curves (loss, MSE, L0, FVE, dead fraction, lr), feature-density
            histograms and links to features pages
            --out FILE (default RUN_DIR/report.html)  --png DIR (a PNG per plot)  --json FILE
            --reference FILE      frontier reference points: [{"label", "l0", "fve" and/or "mse"}]
            --image-shape H,W[,C] decoder rows drawn as images, most-used first (--tiles N, 64)
`;

/** `dictlearn report RUN_DIR... [--out FILE] [--png DIR] [--json FILE] [--reference FILE] [--image-shape H,W[,C]]`. */
export async function reportCommand(args: string[], write: (s: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      out: { type: 'string' },
      png: { type: 'string' },
      json: { type: 'string' },
      reference: { type: 'string' },
      'image-shape': { type: 'string' },
      tiles: { type: 'string' },
      title: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length === 0) {
    throw new ConfigError(
      'usage: dictlearn report RUN_DIR [RUN_DIR...] [--out FILE] [--png DIR] [--json FILE]',
    );
  }
  const tiles = flagNumber('tiles', values.tiles);
  if (tiles !== undefined && !(Number.isInteger(tiles) && tiles > 0)) {
    throw new ConfigError(`--tiles must be a positive integer, got '${values.tiles}'`);
  }
  const out = values.out ?? `${positionals[0].replace(/\/+$/, '')}/report.html`;
  const written = await writeReport({
    runs: positionals,
    out,
    pngDir: values.png,
    json: values.json,
    reference: values.reference,
    imageShape: values['image-shape'],
    tiles,
    title: values.title,
  });
  const plots = written.report.plots.length;
  write(`wrote ${written.html} (${plots} plots)\n`);
  if (written.pngs.length) write(`wrote ${written.pngs.length} PNGs to ${values.png}\n`);
  if (written.json) write(`wrote ${written.json}\n`);
  for (const n of written.report.json.notes) write(`note: ${n}\n`);
  return 0;
}
