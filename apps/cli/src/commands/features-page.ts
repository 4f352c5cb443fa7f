/**
 * The self-contained HTML page of `dictlearn features`: inline CSS and script, no request at view
 * time (a Content-Security-Policy forbids any), every piece of text from the model or the corpus
 * escaped.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import type {
  ContextExample,
  FeatureReport,
  NearestLists,
  NearestToken,
  UnitSummary,
} from '@dictlearn/source-model';

/** What the page says about the run besides the report. */
export interface PageInfo {
  /** The dictionary directory. */
  dictionary: string;
  /** Its architecture name. */
  architecture: string;
  /** The text files read. */
  text: readonly string[];
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Text for HTML element content or a quoted attribute value. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** A token as shown: line breaks and tabs made visible (the page keeps spaces), then escaped. */
function tokenHtml(token: string): string {
  return escapeHtml(token.replace(/\r/g, '␍').replace(/\n/g, '↵').replace(/\t/g, '⇥'));
}

function fmt(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e4 || a < 1e-3)) return v.toExponential(2);
  return v.toFixed(digits);
}

function percent(v: number): string {
  return v >= 0.001 ? `${(100 * v).toFixed(2)}%` : `${(100 * v).toExponential(1)}%`;
}

/**
 * One context: tokens highlighted by the unit's value relative to its largest value. Positions of
 * `bos` were left out of the analysis and are shown plain (their values are often huge).
 */
function contextHtml(e: ContextExample, scale: number, bos: number | undefined): string {
  const top = e.position - e.offset;
  const spans = e.tokens.map((t, i) => {
    const v = e.values[i];
    if (e.ids[i] === bos) {
      return `<span class="tok bos" title="${escapeHtml(`${JSON.stringify(t)}: ${fmt(v)} (BOS, left out)`)}">${tokenHtml(t)}</span>`;
    }
    const a = scale > 0 ? Math.min(1, Math.abs(v) / scale) : 0;
    // Orange for positive values, blue for negative ones (neurons); the top token is outlined.
    const bg = v >= 0 ? `rgba(255,140,0,${a.toFixed(3)})` : `rgba(40,110,255,${a.toFixed(3)})`;
    const cls = i === top ? 'tok top' : 'tok';
    return `<span class="${cls}" style="background:${bg}" title="${escapeHtml(`${JSON.stringify(t)}: ${fmt(v)}`)}">${tokenHtml(t)}</span>`;
  });
  return `<li class="ctx" data-context="${e.context}" data-position="${e.position}"><span class="val">${fmt(e.value)}</span><span class="text">${spans.join('')}</span></li>`;
}

function tokenList(list: readonly NearestToken[] | undefined): string {
  if (!list) return '<td></td>';
  const items = list.map(
    (t) =>
      `<li title="token ${t.id}, cosine ${fmt(t.cosine)}"><span class="ntok">${tokenHtml(t.token)}</span> <span class="cos">${t.cosine.toFixed(2)}</span></li>`,
  );
  return `<td><ol class="near">${items.join('')}</ol></td>`;
}

function nearestHtml(
  nearest: NearestLists | undefined,
  random: NearestLists | undefined,
  what: string,
): string {
  if (!nearest) return '';
  const rows: string[] = [];
  const heads: string[] = [];
  heads.push(`<th>embedding: ${escapeHtml(what)}</th>`, random ? '<th>embedding: random direction</th>' : '');
  rows.push(tokenList(nearest.embedding), random ? tokenList(random.embedding) : '');
  if (nearest.unembedding) {
    heads.push(
      `<th>unembedding: ${escapeHtml(what)}</th>`,
      random ? '<th>unembedding: random direction</th>' : '',
    );
    rows.push(tokenList(nearest.unembedding), random ? tokenList(random.unembedding) : '');
  }
  return `<table class="nearest"><tr>${heads.join('')}</tr><tr>${rows.join('')}</tr></table>`;
}

function cardHtml(card: UnitSummary, kind: 'feature' | 'neuron', bos: number | undefined): string {
  const title = kind === 'feature' ? `Feature ${card.index}` : `Neuron ${card.index}`;
  const scale = card.maxActivation;
  const contexts = card.examples.map((e) => contextHtml(e, scale, bos)).join('');
  return `<section class="card ${kind}" id="${kind}-${card.index}" data-index="${card.index}">
<h3>${title}</h3>
<p class="stats">fires on ${percent(card.frequency)} of tokens (${card.firings}) · mean when firing ${fmt(card.meanActivation)} · max ${fmt(card.maxActivation)}</p>
<ol class="contexts">${contexts || '<li class="none">never fires on this text</li>'}</ol>
${nearestHtml(card.nearest, card.random, kind === 'feature' ? 'decoder direction' : 'basis direction')}
</section>`;
}

function summaryHtml(r: FeatureReport): string {
  if (!r.nearestSummary) {
    return `<p class="note">No nearest-token lists: ${escapeHtml(r.nearestNote ?? 'not computed')}</p>`;
  }
  const line = (name: string, s: { features: number; neurons: number; random: number }) =>
    `<tr><th>${name}</th><td>${fmt(s.features)}</td><td>${fmt(s.neurons)}</td><td>${fmt(s.random)}</td></tr>`;
  const e = r.embeddings;
  return `<table class="summary"><tr><th>mean cosine of the nearest tokens</th><th>features</th><th>neurons</th><th>random directions</th></tr>
${line(`embedding (${escapeHtml(e?.embedding ?? '')})`, r.nearestSummary.embedding)}
${r.nearestSummary.unembedding ? line(`unembedding (${escapeHtml(e?.unembedding ?? '')})`, r.nearestSummary.unembedding) : ''}
</table>
<p class="note">${e?.tied ? 'The model ties its unembedding to the embedding: one list per direction. ' : ''}Nearest-token lists compare a direction with the rows of the token embedding (and unembedding) by cosine; they mean something only for directions in the residual stream's space. A random direction's list is the chance baseline: a real feature's list should look less like a hodgepodge.</p>`;
}

const CSS = `
body{font:14px/1.45 system-ui,sans-serif;margin:0;padding:0 1.5rem 3rem;color:#1d1d1f;background:#fafafa}
h1{font-size:1.4rem;margin:1.2rem 0 .4rem}h2{font-size:1.15rem;margin:1.6rem 0 .6rem}h3{margin:0 0 .3rem;font-size:1rem}
table.meta td,table.meta th{text-align:left;padding:.1rem .8rem .1rem 0;vertical-align:top}
table.summary{border-collapse:collapse;margin:.6rem 0}table.summary td,table.summary th{border:1px solid #ddd;padding:.2rem .6rem;text-align:left}
.note{color:#555;max-width:60rem}
nav button{font:inherit;padding:.3rem .9rem;margin-right:.4rem;border:1px solid #bbb;background:#fff;border-radius:4px;cursor:pointer}
nav button.on{background:#1d1d1f;color:#fff}
#filter{font:inherit;padding:.3rem .5rem;margin-left:1rem;width:16rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(34rem,1fr));gap:1rem}
.card{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:.8rem 1rem}
.stats{color:#555;margin:.1rem 0 .5rem}
ol.contexts{list-style:none;padding:0;margin:0 0 .6rem}
.ctx{display:flex;gap:.6rem;padding:.15rem 0;border-bottom:1px solid #f0f0f0}
.val{flex:0 0 4.2rem;text-align:right;color:#666;font-variant-numeric:tabular-nums}
.text{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;overflow-wrap:anywhere}
.tok{border-radius:2px}.tok.top{outline:1.5px solid #b35900}.tok.bos{color:#999}
table.nearest{border-collapse:collapse;width:100%;font-size:12.5px}
table.nearest th{text-align:left;font-weight:600;color:#444;padding-right:.6rem}
table.nearest td{vertical-align:top;padding-right:.6rem}
ol.near{margin:0;padding-left:1.4rem}.ntok{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre;background:#f1f1f1;border-radius:2px}
.cos{color:#777}
.hidden{display:none}
`;

// Tabs and a text filter; runs without network access and touches only this document.
const SCRIPT = `
(function(){
  var views=document.querySelectorAll('[data-view]');
  var buttons=document.querySelectorAll('nav button');
  function show(name){
    views.forEach(function(v){v.classList.toggle('hidden',name!=='both'&&v.getAttribute('data-view')!==name);});
    buttons.forEach(function(b){b.classList.toggle('on',b.getAttribute('data-show')===name);});
  }
  buttons.forEach(function(b){b.addEventListener('click',function(){show(b.getAttribute('data-show'));});});
  var filter=document.getElementById('filter');
  filter.addEventListener('input',function(){
    var q=filter.value.toLowerCase();
    document.querySelectorAll('.card').forEach(function(c){c.classList.toggle('hidden',q!==''&&c.textContent.toLowerCase().indexOf(q)<0);});
  });
  show('features');
  document.body.setAttribute('data-ready','1');
})();
`;

// Only this script may run: text that slipped through unescaped could not execute.
const SCRIPT_HASH = `sha256-${createHash('sha256').update(SCRIPT).digest('base64')}`;

/** The HTML page of a feature report: one document, no external resources. */
export function renderFeaturesPage(r: FeatureReport, info: PageInfo): string {
  const meta: [string, string][] = [
    [
      'dictionary',
      `${info.dictionary} (${info.architecture}, d = ${r.dictionary.activationDim}, F = ${r.dictionary.dictSize})`,
    ],
    ['model', r.model],
    ['hook', r.hook],
    ['text', info.text.join(', ')],
    [
      'analysed',
      `${r.contexts} contexts of ${r.contextLength} tokens, ${r.tokens} tokens${r.skipBos ? ' (BOS positions left out)' : ''}`,
    ],
    ['shown', r.selection],
    ['random baseline', `seed ${r.seed} (Philox, 'baseline' key domain)`],
  ];
  const features = r.features.map((c) => cardHtml(c, 'feature', r.bos)).join('\n');
  const neurons = r.neurons.map((c) => cardHtml(c, 'neuron', r.bos)).join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src '${SCRIPT_HASH}'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dictlearn features: ${escapeHtml(info.dictionary)}</title>
<style>${CSS}</style>
</head>
<body>
<h1>Features of ${escapeHtml(info.dictionary)}</h1>
<table class="meta">${meta.map(([k, v]) => `<tr><th>${k}</th><td>${escapeHtml(v)}</td></tr>`).join('')}</table>
${summaryHtml(r)}
<nav><button data-show="features">Features (${r.features.length})</button><button data-show="neurons">Neurons (${r.neurons.length})</button><button data-show="both">Side by side</button><input id="filter" type="search" placeholder="filter cards by text"></nav>
<h2 data-view="features">Features</h2>
<div class="grid" id="features" data-view="features">${features}</div>
<h2 data-view="neurons">Neurons: the raw activation dimensions</h2>
<div class="grid" id="neurons" data-view="neurons">${neurons || '<p class="note">The neurons view was not asked for.</p>'}</div>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
