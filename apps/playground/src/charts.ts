/** Renders vega-lite specs into the page as SVG (vega's `View`), with throttled live updates. */

import type { VegaLiteSpec } from '@dictlearn/report/specs';
import { parse, View } from 'vega';
import { compile } from 'vega-lite';

const views = new WeakMap<HTMLElement, View>();

/** Renders `spec` into `el` as SVG, replacing (and finalizing) what was there. */
export async function render(el: HTMLElement, spec: VegaLiteSpec): Promise<View> {
  views.get(el)?.finalize();
  el.replaceChildren();
  const view = new View(parse(compile(spec).spec), { renderer: 'svg', container: el, hover: true });
  views.set(el, view);
  await view.runAsync();
  return view;
}

/**
 * Re-renders a chart from the latest spec at most once per `intervalMs` while data streams in;
 * `flush()` draws the last one now (at the end of a run).
 */
export class ThrottledChart {
  #pending: (() => VegaLiteSpec) | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #last = 0;
  #drawing: Promise<unknown> = Promise.resolve();

  /** Draws into `el` at most once per `intervalMs`. */
  constructor(
    /** Where the chart is drawn. */
    readonly el: HTMLElement,
    /** Least time between two redraws, in milliseconds. */
    readonly intervalMs = 500,
  ) {}

  /** Asks for a redraw with the spec `make` builds (called when the redraw happens). */
  update(make: () => VegaLiteSpec): void {
    this.#pending = make;
    if (this.#timer) return;
    const wait = Math.max(0, this.#last + this.intervalMs - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, wait);
  }

  /** Draws the pending spec now; resolves when it is on the page. */
  async flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const make = this.#pending;
    this.#pending = undefined;
    await this.#drawing;
    if (!make) return;
    this.#last = performance.now();
    this.#drawing = render(this.el, make());
    await this.#drawing;
  }
}
