import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DictlearnError } from '@dictlearn/core';
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURES } from './fixtures.js';
import { LanguageModel } from './model.js';
import { encodeValueInfo, OnnxType, type OnnxValueInfo } from './onnx.js';
import { concatBytes, encodeBytesField, encodeStringField, encodeVarintField } from './proto.js';
import { ModelSource, type ModelSourceOptions } from './source.js';
import { parseDocuments } from './text.js';

const dir = mkdtempSync(join(tmpdir(), 'dictlearn-source-model-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MODEL = `${FIXTURES}gpt2/model.onnx`;
const TOKENIZER = `${FIXTURES}gpt2/tokenizer.json`;
const base: ModelSourceOptions = {
  model: MODEL,
  tokenizer: TOKENIZER,
  text: `${FIXTURES}heldout.txt`,
  hooks: 'transformer.h.0',
  contextLength: 16,
  forwardBatch: 2,
};

async function failure(options: Partial<ModelSourceOptions>): Promise<DictlearnError> {
  try {
    await ModelSource.open({ ...base, ...options });
  } catch (e) {
    expect(e).toBeInstanceOf(DictlearnError);
    // One line, naming what was at fault.
    expect((e as Error).message).not.toContain('\n');
    return e as DictlearnError;
  }
  throw new Error('expected ModelSource.open to fail');
}

/** An ONNX model of one node, with the given inputs and outputs. */
function tinyOnnx(inputs: OnnxValueInfo[], outputs: OnnxValueInfo[], op = 'Identity'): Uint8Array {
  const node = concatBytes([
    encodeStringField(1, inputs[0].name),
    encodeStringField(2, outputs[0].name),
    encodeStringField(4, op),
  ]);
  const graph = concatBytes([
    encodeBytesField(1, node),
    encodeStringField(2, 'g'),
    ...inputs.map((v) => encodeBytesField(11, encodeValueInfo(v))),
    ...outputs.map((v) => encodeBytesField(12, encodeValueInfo(v))),
  ]);
  const opset = concatBytes([encodeStringField(1, ''), encodeVarintField(2, 17)]);
  return concatBytes([encodeVarintField(1, 8), encodeBytesField(7, graph), encodeBytesField(8, opset)]);
}

describe('bad input gets one clear line naming the file', () => {
  it('a hook the model does not have: the nearest module names', async () => {
    const e = await failure({ hooks: 'transformer.h.0.atn' });
    expect(e.message).toMatch(
      /gpt2\/model\.onnx: hook 'transformer\.h\.0\.atn': the model has no module 'transformer\.h\.0\.atn'; nearest module names: transformer\.h\.0\.attn/,
    );
  });

  it('a tokenizer with more tokens than the model predicts: names both files', async () => {
    const json = JSON.parse(readFileSync(TOKENIZER, 'utf8'));
    json.added_tokens.push({
      id: 600,
      content: '<|extra|>',
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    });
    const path = join(dir, 'big-tokenizer.json');
    writeFileSync(path, JSON.stringify(json));
    const e = await failure({ tokenizer: path });
    expect(e.message).toContain(`${path}: the tokenizer has 601 tokens but ${MODEL} predicts 453`);
  });

  it('empty, blank and non-UTF-8 text, and bad JSONL lines', async () => {
    const empty = join(dir, 'empty.txt');
    writeFileSync(empty, '');
    expect((await failure({ text: empty })).message).toMatch(
      /empty\.txt: the file holds no text \(it is empty\)/,
    );
    const blank = join(dir, 'blank.txt');
    writeFileSync(blank, '\n  \n\n\t\n');
    expect((await failure({ text: blank })).message).toMatch(
      /blank\.txt: the file holds no text \(only blank documents\)/,
    );
    const latin1 = join(dir, 'latin1.txt');
    writeFileSync(latin1, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x6f, 0x6b]));
    expect((await failure({ text: latin1 })).message).toMatch(
      /latin1\.txt: the text is not valid UTF-8 \(first bad byte at offset 3\)/,
    );
    expect(() =>
      parseDocuments(new TextEncoder().encode('{"text": "a"}\n{"body": "b"}\n'), 'c.jsonl'),
    ).toThrow(/^c\.jsonl:2: expected an object with a string field 'text'/);
    expect(() => parseDocuments(new TextEncoder().encode('{"text": "a"}\nnot json\n'), 'd.jsonl')).toThrow(
      /^d\.jsonl:2: not valid JSON/,
    );
  });

  it('an ONNX file that is not a causal LM', async () => {
    const f = (t: number, dims: (number | string)[]) => ({ elemType: t, dims });
    const noIds = join(dir, 'classifier.onnx');
    writeFileSync(
      noIds,
      tinyOnnx(
        [{ name: 'pixels', ...f(OnnxType.FLOAT, [1, 3]) }],
        [{ name: 'y', ...f(OnnxType.FLOAT, [1, 3]) }],
      ),
    );
    expect((await failure({ model: noIds })).message).toMatch(
      /classifier\.onnx: the graph has no input 'input_ids' \(its inputs: pixels\); expected an ONNX export of a causal language model/,
    );
    const noLogits = join(dir, 'encoder.onnx');
    writeFileSync(
      noLogits,
      tinyOnnx(
        [{ name: 'input_ids', ...f(OnnxType.INT64, ['b', 's']) }],
        [{ name: 'pooled', ...f(OnnxType.INT64, ['b', 's']) }],
      ),
    );
    expect((await failure({ model: noLogits })).message).toMatch(
      /encoder\.onnx: the graph has no logits output \(its outputs: pooled \[b, s\]\)/,
    );
    const cached = join(dir, 'with-past.onnx');
    writeFileSync(
      cached,
      tinyOnnx(
        [
          { name: 'input_ids', ...f(OnnxType.INT64, ['b', 's']) },
          { name: 'past_key_values.0.key', ...f(OnnxType.FLOAT, ['b', 4, 'p', 16]) },
        ],
        [{ name: 'logits', ...f(OnnxType.FLOAT, ['b', 's', 10]) }],
      ),
    );
    expect((await failure({ model: cached })).message).toMatch(
      /with-past\.onnx: the graph has inputs this source cannot fill: past_key_values\.0\.key \(an export with a KV cache/,
    );
    const text = join(dir, 'notes.onnx');
    writeFileSync(text, 'this is not a model\n');
    expect((await failure({ model: text })).message).toMatch(/notes\.onnx: not an ONNX model/);
    expect((await failure({ model: join(dir, 'missing.onnx') })).message).toMatch(
      /missing\.onnx: could not read the file/,
    );
  });

  it('bad options name the option', async () => {
    expect((await failure({ contextLength: 1 })).message).toMatch(/'contextLength' must be at least 2/);
    expect((await failure({ forwardBatch: 0 })).message).toMatch(/'forwardBatch' must be a positive integer/);
    expect((await failure({ outlierMultiple: -1 })).message).toMatch(
      /'outlierMultiple' must be a positive number/,
    );
    expect((await failure({ hooks: [] })).message).toMatch(/'hooks' must name at least one hook/);
    expect(
      (await failure({ start: { epoch: 0, document: 5000, token: 0, contexts: 0, row: 0 } })).message,
    ).toMatch(/option 'start': position document 5000 is past the 100 documents/);
  });

  it('a model loads once and serves several sources', async () => {
    const model = await LanguageModel.load(MODEL);
    const a = await ModelSource.open({ ...base, model });
    const b = await ModelSource.open({ ...base, model, hooks: 'transformer.h.1' });
    expect(a.dim).toBe(64);
    expect(b.dim).toBe(64);
    await model.release();
  });
});
