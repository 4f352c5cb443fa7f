import { DictlearnError } from '@dictlearn/core';
import { encodePng } from './png.js';

/** The shape each decoder row is drawn as: height, width and channels (1 grayscale, 3 RGB). */
export interface ImageShape {
  /** Rows of pixels. */
  height: number;
  /** Columns of pixels. */
  width: number;
  /** 1 (grayscale) or 3 (RGB). */
  channels: 1 | 3;
}

/** Parses `--image-shape H,W[,C]` and checks H·W·C against the activation dimension `d`. */
export function parseImageShape(text: string, d?: number): ImageShape {
  const parts = text.split(',').map((s) => Number(s.trim()));
  const [height, width, channels = 1] = parts;
  const ok =
    (parts.length === 2 || parts.length === 3) &&
    parts.every((v) => Number.isInteger(v) && v > 0) &&
    (channels === 1 || channels === 3);
  if (!ok)
    throw new DictlearnError(
      '--image-shape',
      `expected H,W or H,W,C with C 1 or 3 (e.g. 28,28), got '${text}'`,
    );
  if (d !== undefined && height * width * channels !== d) {
    throw new DictlearnError(
      '--image-shape',
      `${text} holds ${height * width * channels} values but the activations have d = ${d}; H·W·C must equal d`,
    );
  }
  return { height, width, channels: channels as 1 | 3 };
}

/**
 * A decoder row as 8-bit pixels: values laid out row-major as H×W×C (numpy's order for an image
 * flattened with `reshape(-1)`), scaled by the row's largest |value| so 0 is mid-grey, the most
 * positive value white and the most negative black (decoder rows have no natural range).
 */
export function rowPixels(row: ArrayLike<number>, shape: ImageShape): Uint8Array {
  const n = shape.height * shape.width * shape.channels;
  let m = 0;
  for (let i = 0; i < n; i++) m = Math.max(m, Math.abs(row[i]));
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.round(127.5 + (m > 0 ? (127.5 * row[i]) / m : 0));
  return out;
}

/**
 * Feature ids ordered most-used first: by firing frequency, highest first, ties by id; without
 * frequencies, in id order. At most `limit`.
 */
export function mostUsedFirst(
  dictSize: number,
  density: ArrayLike<number> | undefined,
  limit: number,
): number[] {
  const ids = Array.from({ length: dictSize }, (_, i) => i);
  if (density) ids.sort((a, b) => density[b] - density[a] || a - b);
  return ids.slice(0, limit);
}

/** One PNG of the tiles of `ids` in a grid of `columns`, 1-pixel gaps, each tile at `scale`× size. */
export function tileSheetPng(
  rows: Float32Array,
  d: number,
  ids: readonly number[],
  shape: ImageShape,
  columns = 16,
  scale = 2,
): Buffer {
  const c = shape.channels;
  const tw = shape.width * scale;
  const th = shape.height * scale;
  const cols = Math.min(columns, Math.max(1, ids.length));
  const gridRows = Math.ceil(ids.length / cols);
  const W = cols * (tw + 1) + 1;
  const H = gridRows * (th + 1) + 1;
  const px = new Uint8Array(W * H * c).fill(255);
  ids.forEach((id, k) => {
    const tile = rowPixels(rows.subarray(id * d, (id + 1) * d), shape);
    const ox = (k % cols) * (tw + 1) + 1;
    const oy = Math.floor(k / cols) * (th + 1) + 1;
    for (let y = 0; y < th; y++) {
      for (let x = 0; x < tw; x++) {
        const src = (Math.floor(y / scale) * shape.width + Math.floor(x / scale)) * c;
        const dst = ((oy + y) * W + ox + x) * c;
        for (let ch = 0; ch < c; ch++) px[dst + ch] = tile[src + ch];
      }
    }
  });
  return encodePng(W, H, c, px);
}

/** One tile as a PNG at its own size (the HTML scales it up with `image-rendering: pixelated`). */
export function tilePng(row: ArrayLike<number>, shape: ImageShape): Buffer {
  return encodePng(shape.width, shape.height, shape.channels, rowPixels(row, shape));
}
