import { parseArgs } from 'node:util';
import { DictlearnError, tensor, useBackend } from '@dictlearn/core';
import {
  FORMAT_ALIASES,
  type FormatName,
  formatInspectReport,
  inspectDictionary,
  loadDictionary,
  writeDictionary,
  writeOnnx,
} from '@dictlearn/formats';
import { ConfigError } from './train-config.js';

/** The format names `--to` / `--format` accept, for messages. */
const FORMAT_CHOICES = 'dictlearn, dl (dictionary_learning), saelens, sparsify, and onnx for --to';

/** A `--format` / `--to` value as a format name; a clear usage error otherwise. */
export function parseFormat(flag: string, value: string): FormatName {
  const f = FORMAT_ALIASES[value.toLowerCase()];
  if (f) return f;
  if (value.toLowerCase() === 'onnx') {
    throw new ConfigError(`--${flag} onnx: ONNX models can be written (convert --to onnx) but not read`);
  }
  throw new ConfigError(`--${flag} must be one of ${FORMAT_CHOICES}, got '${value}'`);
}

const READ_FLAGS = {
  format: { type: 'string' },
  'dict-class': { type: 'string' },
} as const;

/** `dictlearn inspect PATH [--format F] [--dict-class C] [--json]`: what a dictionary file holds. */
export async function inspectCommand(args: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { ...READ_FLAGS, json: { type: 'boolean', default: false } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new ConfigError('usage: dictlearn inspect PATH [--format F] [--json]');
  const report = await inspectDictionary(positionals[0], {
    format: values.format ? parseFormat('format', values.format) : undefined,
    dictClass: values['dict-class'],
  });
  out(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatInspectReport(report));
  return 0;
}

/**
 * `dictlearn convert IN OUT --to FORMAT`: reads a dictionary in any format, checks it loads as a
 * dictlearn dictionary (architecture registered, shapes, finite weights), writes it in FORMAT
 * into the folder OUT, then reads OUT back and compares the features of a random batch.
 */
export async function convertCommand(args: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      ...READ_FLAGS,
      to: { type: 'string' },
      force: { type: 'boolean', default: false },
      backend: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 2 || !values.to) {
    throw new ConfigError(`usage: dictlearn convert IN OUT --to FORMAT (${FORMAT_CHOICES})`);
  }
  const [input, output] = positionals;
  const to = values.to.toLowerCase() === 'onnx' ? 'onnx' : parseFormat('to', values.to);
  const { existsSync, readdirSync, statSync } = await import('node:fs');
  if (
    existsSync(output) &&
    (!statSync(output).isDirectory() || readdirSync(output).length > 0) &&
    !values.force
  ) {
    throw new ConfigError(
      `${output} already exists and is not an empty folder: choose another OUT, or pass --force to write into it`,
    );
  }
  const backend = await useBackend(values.backend ?? 'cpu');
  const { dictionary, read } = await loadDictionary(input, {
    format: values.format ? parseFormat('format', values.format) : undefined,
    dictClass: values['dict-class'],
    backend: backend.name,
  });
  try {
    if (to === 'onnx') {
      const files = await writeOnnx(dictionary, output);
      out(
        `exported ${input} (${read.format}, ${read.parts.architecture}, d ${dictionary.activationDim}, F ${dictionary.dictSize}) to ONNX: ${files.join(', ')}\n` +
          'inputs x [batch, d] (encode, forward) and features [batch, F] (decode); outputs features, reconstruction\n',
      );
      return 0;
    }
    const files = await writeDictionary(dictionary, output, to);
    const { dictionary: back } = await loadDictionary(output, { format: to, backend: backend.name });
    try {
      // 16 rows of uniform noise in ±2: the two must agree exactly, since every writer stores
      // the parameters bit for bit.
      const d = dictionary.activationDim;
      let s = 12345;
      const rand = () => {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        return (s / 2 ** 32 - 0.5) * 4;
      };
      const x = tensor(Float32Array.from({ length: 16 * d }, rand), [16, d], { backend: backend.name });
      const a = dictionary.encode(x);
      const b = back.encode(x);
      const [fa, fb] = [await a.data(), await b.data()];
      let worst = 0;
      for (let i = 0; i < fa.length; i++) worst = Math.max(worst, Math.abs(fa[i] - fb[i]));
      for (const t of [x, a, b]) t.dispose();
      if (worst > 1e-5) {
        throw new DictlearnError(
          output,
          `the written dictionary's features differ from the input's by up to ${worst}`,
        );
      }
      out(
        `converted ${input} (${read.format}${read.formatArchitecture !== read.parts.architecture ? ` ${read.formatArchitecture}` : ''}, ${read.parts.architecture}, d ${dictionary.activationDim}, F ${dictionary.dictSize}) to ${to}: ${files.join(', ')}\n` +
          `checked: ${output} reads back with the same features (max |Δf| ${worst})\n`,
      );
      for (const n of read.notes) out(`note: ${n}\n`);
    } finally {
      back.dispose();
    }
  } finally {
    dictionary.dispose();
  }
  return 0;
}
