/** A minimal line plot on a canvas: the series, its range and the last value. */
export function drawSeries(canvas: HTMLCanvasElement, values: number[], color: string): void {
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  if (values.length === 0) return;
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const span = hi - lo || 1;
  ctx.strokeStyle = color;
  ctx.lineWidth = 2;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = 8 + (i / Math.max(1, values.length - 1)) * (w - 16);
    const y = h - 20 - ((v - lo) / span) * (h - 36);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = '#57606a';
  ctx.font = '11px system-ui';
  ctx.fillText(
    `${values[values.length - 1].toPrecision(4)}  (range ${lo.toPrecision(3)} … ${hi.toPrecision(3)})`,
    8,
    h - 5,
  );
}

/**
 * Ground-truth features against their closest learned decoder rows: each feature is a column
 * pair of d cells (truth above, learned below), coloured by value, with a cosine bar.
 */
export function drawFeatures(
  canvas: HTMLCanvasElement,
  truth: Float32Array,
  learned: Float32Array,
  best: Int32Array,
  cos: Float32Array,
  d: number,
): void {
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const n = best.length;
  const cw = canvas.width / n;
  const ch = (canvas.height - 24) / (2 * d);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const scale = Math.sqrt(d) / 2.5; // unit vectors: entries are about ±1/√d
  const colour = (v: number) => {
    const t = Math.max(-1, Math.min(1, v * scale));
    const c = Math.round(255 * (1 - Math.abs(t)));
    return t >= 0 ? `rgb(255,${c},${c})` : `rgb(${c},${c},255)`;
  };
  for (let f = 0; f < n; f++) {
    const j = best[f];
    let norm = 0;
    for (let k = 0; k < d; k++) norm += learned[j * d + k] ** 2;
    norm = Math.sqrt(norm) || 1;
    for (let k = 0; k < d; k++) {
      ctx.fillStyle = colour(truth[f * d + k]);
      ctx.fillRect(f * cw, k * ch, cw, ch);
      ctx.fillStyle = colour(learned[j * d + k] / norm);
      ctx.fillRect(f * cw, (d + k) * ch, cw, ch);
    }
    ctx.fillStyle = cos[f] > 0.9 ? '#1a7f37' : '#cf222e';
    const bar = Math.max(0, cos[f]) * 20;
    ctx.fillRect(f * cw, canvas.height - bar, cw - 1, bar);
  }
}
