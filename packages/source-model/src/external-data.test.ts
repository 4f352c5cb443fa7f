import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DictlearnError } from '@dictlearn/core';
import { afterAll, describe, expect, it } from 'vitest';
import { tokenEmbeddings } from './embeddings.js';
import { FIXTURES, reference } from './fixtures.js';
import { LanguageModel } from './model.js';
import { OnnxModel } from './onnx.js';
import { concatBytes, encodeBytesField, encodeStringField, encodeVarintField, readFields } from './proto.js';

const dir = mkdtempSync(join(tmpdir(), 'dictlearn-external-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NEOX = `${FIXTURES}gpt-neox/model.onnx`;

function entry(key: string, value: string): Uint8Array {
  return encodeBytesField(13, concatBytes([encodeStringField(1, key), encodeStringField(2, value)]));
}

/**
 * The model with every initializer's `raw_data` moved to a side file, as onnx.save_model(...,
 * save_as_external_data=True) stores it: `data_location = EXTERNAL` and `external_data` entries
 * location / offset / length, the data 64-byte aligned. `location` may be changed per initializer
 * (to plant a bad one); `length: false` leaves the length out (then the data runs to the file's end).
 */
function externalize(
  bytes: Uint8Array,
  options: { location?: (name: string) => string; length?: boolean } = {},
): { model: Uint8Array; data: Uint8Array } {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const tensor = (b: Uint8Array): Uint8Array => {
    const fields = readFields(b);
    const raw = fields.find((f) => f.no === 9);
    if (!raw) return b;
    const name = new TextDecoder().decode(fields.find((f) => f.no === 8)?.bytes);
    const pad = (64 - (size % 64)) % 64;
    chunks.push(new Uint8Array(pad), raw.bytes);
    const offset = size + pad;
    size = offset + raw.bytes.length;
    return concatBytes([
      ...fields.filter((f) => f.no !== 9).map((f) => f.raw),
      entry('location', options.location?.(name) ?? 'model.onnx.data'),
      entry('offset', String(offset)),
      ...(options.length === false ? [] : [entry('length', String(raw.bytes.length))]),
      encodeVarintField(14, 1),
    ]);
  };
  const graph = (b: Uint8Array) =>
    concatBytes(readFields(b).map((f) => (f.no === 5 ? encodeBytesField(5, tensor(f.bytes)) : f.raw)));
  const model = concatBytes(
    readFields(bytes).map((f) => (f.no === 7 ? encodeBytesField(7, graph(f.bytes)) : f.raw)),
  );
  return { model, data: concatBytes(chunks) };
}

/** Writes a model and its data file into a new folder of the temp dir; returns the model's path. */
function save(name: string, files: { model: Uint8Array; data?: Uint8Array; dataName?: string }): string {
  const folder = join(dir, name);
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'model.onnx'), files.model);
  if (files.data) writeFileSync(join(folder, files.dataName ?? 'model.onnx.data'), files.data);
  return join(folder, 'model.onnx');
}

async function loadError(path: string): Promise<DictlearnError> {
  try {
    const m = await LanguageModel.load(path);
    await m.release();
  } catch (e) {
    expect(e).toBeInstanceOf(DictlearnError);
    expect((e as Error).message).not.toContain('\n');
    return e as DictlearnError;
  }
  throw new Error(`expected LanguageModel.load(${path}) to fail`);
}

describe('models with external data (weights in side files, as every model over 2 GB)', () => {
  const single = new Uint8Array(readFileSync(NEOX));
  const ref = reference('gpt-neox');
  const seq = ref.contexts[0].length;
  const batch = ref.contexts.length;
  const tokens = Int32Array.from(ref.contexts.flat());

  it('the NeoX model re-saved with external data gives the single-file activations and logits exactly', async () => {
    const ext = externalize(single);
    // Every weight moved out: the model proto is a fraction of the file.
    expect(ext.model.length).toBeLessThan(single.length / 4);
    const path = save('neox', ext);
    const a = await LanguageModel.load(NEOX);
    const b = await LanguageModel.load(path);
    expect([...b.graph.initializers.values()].filter((t) => t.external).length).toBeGreaterThan(20);
    const hooks = ref.hooks.map((h) => h.hook);
    const want = await a.forward(
      tokens,
      batch,
      seq,
      hooks.map((h) => a.resolve(h)),
      { logits: true },
    );
    const got = await b.forward(
      tokens,
      batch,
      seq,
      hooks.map((h) => b.resolve(h)),
      { logits: true },
    );
    expect(got.logits).toEqual(want.logits);
    for (const h of hooks) expect(got.hooks.get(h)?.data, h).toEqual(want.hooks.get(h)?.data);
    // An early hook alone: the pruned graph keeps only some external weights.
    const early = b.resolve('gpt_neox.layers.0');
    const alone = await b.forward(tokens, batch, seq, [early]);
    expect(alone.hooks.get(early.hook)?.data).toEqual(want.hooks.get('gpt_neox.layers.0')?.data);
    // Weights read by this package (nearest tokens) come from the side file too.
    const ea = tokenEmbeddings(a.graph);
    const eb = tokenEmbeddings(b.graph);
    expect(eb.embedding.data).toEqual(ea.embedding.data);
    expect(eb.unembedding.data).toEqual(ea.unembedding.data);
    await a.release();
    await b.release();
    // Nothing was written beside the model (no temporary copies).
    expect(readdirSync(join(dir, 'neox')).sort()).toEqual(['model.onnx', 'model.onnx.data']);
  });

  it('external data without lengths (to the end of the file) and offsets read as the dims say', async () => {
    const ext = externalize(single, { length: false });
    const b = await LanguageModel.load(save('neox-nolength', ext));
    const a = OnnxModel.parse(single, NEOX);
    expect(b.graph.initializerValues('gpt_neox.embed_in.weight')).toEqual(
      a.initializerValues('gpt_neox.embed_in.weight'),
    );
    await b.release();
  });

  it("the dynamo export's side file (written by onnx.save_model) holds the TorchScript export's weights", async () => {
    const dynamo = await LanguageModel.load(`${FIXTURES}llama/model-dynamo.onnx`);
    const script = await LanguageModel.load(`${FIXTURES}llama/model.onnx`);
    const d = tokenEmbeddings(dynamo.graph);
    const s = tokenEmbeddings(script.graph);
    expect(dynamo.graph.initializers.get(d.embedding.name)?.externalData).toMatchObject({
      location: 'model-dynamo.onnx.data',
    });
    expect(d.embedding.data).toEqual(s.embedding.data);
    expect(d.unembedding.data).toEqual(s.unembedding.data);
    expect(d.tied).toBe(false);
    await dynamo.release();
    await script.release();
  });

  it('data given as bytes (a browser fetched it): the same values, and a missing file named', async () => {
    const ext = externalize(single);
    const a = await LanguageModel.load(NEOX);
    const b = await LanguageModel.fromBytes(ext.model, 'remote/model.onnx', {
      externalData: { 'model.onnx.data': ext.data },
    });
    const hook = 'gpt_neox.layers.1';
    const want = await a.forward(tokens, batch, seq, [a.resolve(hook)]);
    const got = await b.forward(tokens, batch, seq, [b.resolve(hook)]);
    expect(got.hooks.get(hook)?.data).toEqual(want.hooks.get(hook)?.data);
    expect(tokenEmbeddings(b.graph).embedding.data).toEqual(tokenEmbeddings(a.graph).embedding.data);
    await a.release();
    await b.release();
    await expect(
      LanguageModel.fromBytes(ext.model, 'remote/model.onnx', { externalData: { 'other.data': ext.data } }),
    ).rejects.toThrow(
      /model\.onnx\.data: not among the external data files given \(other\.data\): remote\/model\.onnx keeps initializer/,
    );
  });

  it('a graph parsed without a reader lists external weights but says why it cannot read them', () => {
    const g = OnnxModel.parse(externalize(single).model, 'bare.onnx');
    const t = g.initializers.get('gpt_neox.embed_in.weight');
    expect(t?.external).toBe(true);
    expect(t?.externalData).toEqual({ location: 'model.onnx.data', offset: 0, length: 453 * 64 * 4 });
    expect(() => g.initializerValues('gpt_neox.embed_in.weight')).toThrow(
      /bare\.onnx: initializer 'gpt_neox\.embed_in\.weight' is stored in the external data file 'model\.onnx\.data' and no reader was given/,
    );
  });

  it('a missing data file: names it and the initializer', async () => {
    const path = save('missing', { model: externalize(single).model });
    const e = await loadError(path);
    expect(e.message).toMatch(
      /missing\/model\.onnx\.data: does not exist: .*missing\/model\.onnx keeps initializer '[^']+' in it; expected the external data file beside the model/,
    );
  });

  it('a location outside the model directory (path traversal, absolute path) is refused', async () => {
    // The file exists: only the location is at fault.
    writeFileSync(join(dir, 'outside.data'), externalize(single).data);
    const up = externalize(single, { location: () => '../outside.data' });
    const e = await loadError(save('traversal', up));
    expect(e.message).toMatch(
      /traversal\/model\.onnx: initializer '[^']+' names the external data file '\.\.\/outside\.data', outside the model's directory/,
    );
    const abs = externalize(single, { location: () => join(dir, 'outside.data') });
    expect((await loadError(save('absolute', abs))).message).toMatch(/outside the model's directory/);
    const deep = externalize(single, { location: () => 'sub/../../outside.data' });
    expect((await loadError(save('deep', deep))).message).toMatch(/outside the model's directory/);
  });

  it('a data file reached through a symbolic link is read (a Hugging Face cache links into blobs/)', async () => {
    const ext = externalize(single);
    const blobs = join(dir, 'blobs');
    mkdirSync(blobs, { recursive: true });
    writeFileSync(join(blobs, 'abc123'), ext.data);
    const path = save('linked', { model: ext.model });
    symlinkSync(join(blobs, 'abc123'), join(dir, 'linked', 'model.onnx.data'));
    const m = await LanguageModel.load(path);
    const h = m.resolve('gpt_neox.layers.0');
    expect((await m.forward(tokens, batch, seq, [h])).hooks.get(h.hook)?.dim).toBe(64);
    await m.release();
  });

  it('a data file shorter than the offsets and lengths say: names the file, the initializer and the sizes', async () => {
    const ext = externalize(single);
    const path = save('truncated', { model: ext.model, data: ext.data.subarray(0, ext.data.length - 100) });
    const e = await loadError(path);
    expect(e.message).toMatch(
      new RegExp(
        `truncated/model\\.onnx\\.data: initializer '[^']+' \\(named in .*truncated/model\\.onnx\\) lies at bytes \\d+…${ext.data.length} but the file holds ${ext.data.length - 100} bytes`,
      ),
    );
  });

  it('a single file over protobuf’s 2 GB limit: says how to re-save it with external data', async () => {
    const path = join(dir, 'huge.onnx');
    writeFileSync(path, '');
    truncateSync(path, 2 ** 31 + 4096); // sparse: takes no disk space
    const e = await loadError(path);
    expect(e.message).toMatch(
      /huge\.onnx: the file is 2\.00 GiB, over protobuf's 2 GiB limit for one ONNX file; .*save_as_external_data=True/,
    );
    rmSync(path);
  });
});
