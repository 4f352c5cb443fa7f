/**
 * The token embedding and unembedding of an ONNX language model, read from its initializers, and
 * the vocabulary tokens nearest (by cosine) to a direction in the model's residual space.
 *
 * @module
 */
import { DictlearnError } from '@dictlearn/core';
import type { OnnxModel } from './onnx.js';

/** A matrix with one row per vocabulary token. */
export interface TokenMatrix {
  /** The initializer it was read from. */
  readonly name: string;
  /** Rows (the vocabulary size the model was built with; may exceed the tokenizer's). */
  readonly rows: number;
  /** Width d of a row. */
  readonly dim: number;
  /** [rows, dim] float32, row-major (transposed on reading when the graph stores [d, vocab]). */
  readonly data: Float32Array;
}

/** A model's token embedding and unembedding (see {@link tokenEmbeddings}). */
export interface TokenEmbeddings {
  /** The input embedding: row v is what token v enters the residual stream as. */
  readonly embedding: TokenMatrix;
  /**
   * The unembedding: row v is the direction whose dot product with the final hidden state gives
   * token v's logit. The embedding itself when the model ties them.
   */
  readonly unembedding: TokenMatrix;
  /** Whether the unembedding is the embedding (the same initializer, or equal values). */
  readonly tied: boolean;
}

/** One vocabulary token and its cosine similarity to a direction. */
export interface TokenScore {
  /** Token id. */
  readonly id: number;
  /** Cosine similarity between the token's row and the direction. */
  readonly cosine: number;
}

/** Names under which exporters store the input embedding (GPT-NeoX, GPT-2, Llama/OPT, BERT-style, others). */
const EMBEDDING_NAME =
  /(^|[./])(embed_in|wte|embed_tokens|word_embeddings|tok_embeddings|token_embedding|embeddings)(\.weight)?$/;
/** Names of a separate output projection to the vocabulary. */
const UNEMBEDDING_NAME = /(^|[./])(embed_out|lm_head|unembed|output)(\.weight)?$/;
/** Ops that pass a value through unchanged in meaning (index reshapes, casts), for tracing inputs. */
const PASS_THROUGH = new Set(['Reshape', 'Cast', 'Unsqueeze', 'Squeeze', 'Flatten', 'Identity']);

/** Whether `value` is `input_ids`, possibly reshaped or cast on the way. */
function fromInputIds(graph: OnnxModel, value: string, depth = 0): boolean {
  if (value === 'input_ids') return true;
  const p = graph.producers.get(value);
  if (p === undefined || depth > 8) return false;
  const node = graph.nodes[p];
  return PASS_THROUGH.has(node.opType) && fromInputIds(graph, node.inputs[0], depth + 1);
}

/** The initializer behind `value` through Transpose/Identity/Cast nodes, and how many transposes. */
function initializerBehind(
  graph: OnnxModel,
  value: string,
): { name: string; transposes: number } | undefined {
  let transposes = 0;
  for (let depth = 0; depth < 8; depth++) {
    if (graph.initializers.has(value)) return { name: value, transposes };
    const p = graph.producers.get(value);
    if (p === undefined) return undefined;
    const node = graph.nodes[p];
    if (node.opType === 'Transpose') transposes++;
    else if (node.opType !== 'Identity' && node.opType !== 'Cast') return undefined;
    value = node.inputs[0];
  }
  return undefined;
}

/** [rows, cols] row-major → [cols, rows]. */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

function shapeText(dims: readonly number[]): string {
  return `[${dims.join(', ')}]`;
}

/** The input embedding: a [vocab, d] initializer gathered by `input_ids`, else one with a known name. */
function findEmbedding(graph: OnnxModel, vocab: number | undefined): TokenMatrix {
  let name: string | undefined;
  for (const n of graph.nodes) {
    if (n.opType !== 'Gather' || !fromInputIds(graph, n.inputs[1] ?? '')) continue;
    const t = graph.initializers.get(n.inputs[0]);
    if (t && t.dims.length === 2 && (vocab === undefined || t.dims[0] === vocab)) {
      name = t.name;
      break;
    }
  }
  name ??= [...graph.initializers.values()].find(
    (t) => t.dims.length === 2 && EMBEDDING_NAME.test(t.name) && (vocab === undefined || t.dims[0] === vocab),
  )?.name;
  if (name === undefined) {
    const named = [...graph.initializers.values()].filter((t) => EMBEDDING_NAME.test(t.name));
    throw new DictlearnError(
      graph.file,
      `found no token embedding: expected a [${vocab ?? 'vocab'}, d] weight that a Gather reads with input_ids, or one named like gpt_neox.embed_in.weight, transformer.wte.weight or model.embed_tokens.weight${named.length ? ` (seen: ${named.map((t) => `${t.name} ${shapeText(t.dims)}`).join(', ')})` : ''}`,
    );
  }
  const t = graph.initializers.get(name) as { dims: readonly number[] };
  return { name, rows: t.dims[0], dim: t.dims[1], data: graph.initializerValues(name) };
}

/**
 * The unembedding: the weight of the MatMul (or Gemm) that produces the logits output, traced back
 * through Add/Reshape/Cast and Transpose nodes to an initializer; else a [vocab, d] or [d, vocab]
 * initializer named like `embed_out.weight` or `lm_head.weight`.
 */
function findUnembedding(
  graph: OnnxModel,
  logits: string,
  vocab: number | undefined,
  dim: number,
): TokenMatrix {
  let value = logits;
  for (let depth = 0; depth < 8; depth++) {
    const p = graph.producers.get(value);
    if (p === undefined) break;
    const node = graph.nodes[p];
    if (node.opType === 'MatMul' || node.opType === 'Gemm') {
      const w = initializerBehind(graph, node.inputs[1]);
      const t = w && graph.initializers.get(w.name);
      if (!w || !t || t.dims.length !== 2) break;
      const [a, b] = t.dims;
      // The dims tell the orientation unless vocab = d; then MatMul (x·B, B [d, vocab]) reads a
      // [d, vocab] weight after an even number of transposes, and Gemm is taken as torch's Linear
      // (transB = 1, weight [vocab, d]; its attribute is not read).
      const storedAsDxV = a !== b ? a === dim : node.opType === 'MatMul' && w.transposes % 2 === 0;
      const values = graph.initializerValues(w.name);
      if (storedAsDxV && a === dim && (vocab === undefined || b === vocab))
        return { name: w.name, rows: b, dim: a, data: transpose(values, a, b) };
      if (!storedAsDxV && b === dim && (vocab === undefined || a === vocab))
        return { name: w.name, rows: a, dim: b, data: values };
      break;
    }
    if (!PASS_THROUGH.has(node.opType) && node.opType !== 'Add') break;
    // Through a bias Add: follow the input that is computed, not the stored bias.
    value = node.inputs.find((i) => i && !graph.initializers.has(i)) ?? '';
  }
  for (const t of graph.initializers.values()) {
    if (t.dims.length !== 2 || !UNEMBEDDING_NAME.test(t.name)) continue;
    const [a, b] = t.dims;
    if (b === dim && (vocab === undefined || a === vocab))
      return { name: t.name, rows: a, dim: b, data: graph.initializerValues(t.name) };
    if (a === dim && (vocab === undefined || b === vocab))
      return { name: t.name, rows: b, dim: a, data: transpose(graph.initializerValues(t.name), a, b) };
  }
  throw new DictlearnError(
    graph.file,
    `found no unembedding: expected the logits output '${logits}' to come from a MatMul with a [${dim}, ${vocab ?? 'vocab'}] weight, or a weight named like embed_out.weight or lm_head.weight`,
  );
}

/**
 * Reads a model's token embedding and unembedding from its ONNX initializers. The embedding is the
 * [vocab, d] weight a Gather reads with `input_ids` (else one named like `gpt_neox.embed_in.weight`,
 * `transformer.wte.weight`, `model.embed_tokens.weight`); the unembedding is the weight of the
 * MatMul that produces `logits` (else one named like `embed_out.weight`, `lm_head.weight`), stored
 * [d, vocab] by the TorchScript exporter and returned as [vocab, d]. Tied models (GPT-2) are
 * detected by the values: the exporter writes the tied weight a second time, transposed. Errors
 * name the file and what was looked for.
 */
export function tokenEmbeddings(
  graph: OnnxModel,
  options: { logits?: string; vocab?: number } = {},
): TokenEmbeddings {
  const embedding = findEmbedding(graph, options.vocab);
  const logits =
    options.logits ??
    graph.outputs.find((o) => o.name === 'logits')?.name ??
    graph.outputs.find((o) => o.dims?.length === 3)?.name ??
    'logits';
  const un = findUnembedding(graph, logits, options.vocab ?? embedding.rows, embedding.dim);
  const tied =
    un.name === embedding.name ||
    (un.rows === embedding.rows && un.data.every((v, i) => v === embedding.data[i]));
  return { embedding, unembedding: tied ? embedding : un, tied };
}

/** The Euclidean norm of each row of a [rows, dim] matrix, in float64. */
export function rowNorms(m: TokenMatrix): Float64Array {
  const out = new Float64Array(m.rows);
  for (let r = 0; r < m.rows; r++) {
    let s = 0;
    for (let j = r * m.dim; j < (r + 1) * m.dim; j++) s += m.data[j] * m.data[j];
    out[r] = Math.sqrt(s);
  }
  return out;
}

/**
 * The `k` rows of `m` (among the first `limit`, default all) most cosine-similar to `direction`,
 * highest first (ties: lower id). Rows and directions of zero norm have no cosine and are never
 * listed. `norms` (from {@link rowNorms}) saves recomputing the row norms for many directions.
 */
export function nearestTokens(
  m: TokenMatrix,
  direction: ArrayLike<number>,
  k: number,
  options: { limit?: number; norms?: Float64Array } = {},
): TokenScore[] {
  if (direction.length !== m.dim) {
    throw new DictlearnError(
      'nearestTokens',
      `a direction of width ${direction.length} against '${m.name}' of width ${m.dim}; nearest tokens need a direction in the model's residual space`,
    );
  }
  const norms = options.norms ?? rowNorms(m);
  let dn = 0;
  for (let j = 0; j < m.dim; j++) dn += direction[j] * direction[j];
  dn = Math.sqrt(dn);
  if (!(dn > 0)) return [];
  const rows = Math.min(m.rows, options.limit ?? m.rows);
  const scores: TokenScore[] = [];
  for (let r = 0; r < rows; r++) {
    if (!(norms[r] > 0)) continue;
    let dot = 0;
    for (let j = 0, o = r * m.dim; j < m.dim; j++) dot += m.data[o + j] * direction[j];
    scores.push({ id: r, cosine: dot / (norms[r] * dn) });
  }
  scores.sort((a, b) => b.cosine - a.cosine || a.id - b.id);
  return scores.slice(0, Math.max(0, k));
}
