/**
 * Text corpora: plain text (documents separated by blank lines) or JSONL (one JSON object per line
 * with a text field).
 *
 * @module
 */
import { DictlearnError, readFileBytes } from '@dictlearn/core';

/** How a text file holds its documents. */
export type TextFormat = 'text' | 'jsonl';

/** Options of {@link readDocuments} and {@link parseDocuments}. */
export interface TextOptions {
  /** `'text'` or `'jsonl'` (default: `'jsonl'` for `.jsonl`/`.ndjson` files, else `'text'`). */
  format?: TextFormat;
  /** The JSONL field that holds each document's text (default `'text'`). */
  textField?: string;
}

/** The format of a file by its extension. */
export function formatOf(file: string, format: TextFormat | undefined): TextFormat {
  if (format !== undefined) {
    if (format !== 'text' && format !== 'jsonl') {
      throw new DictlearnError(
        file,
        `unknown text format ${JSON.stringify(format)}; expected 'text' or 'jsonl'`,
      );
    }
    return format;
  }
  return /\.(jsonl|ndjson)$/i.test(file) ? 'jsonl' : 'text';
}

/**
 * Splits one file's bytes into documents. Plain text: runs of lines separated by one or more blank
 * lines (whitespace-only lines count as blank), each trimmed. JSONL: the `textField` string of each
 * non-empty line. Throws a `DictlearnError` naming the file for bytes that are not UTF-8, a JSONL
 * line that is not an object with that field, or a file without any non-empty document.
 */
export function parseDocuments(bytes: Uint8Array, file: string, options: TextOptions = {}): string[] {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    throw new DictlearnError(
      file,
      `the text is not valid UTF-8 (first bad byte at offset ${at}); expected UTF-8 text`,
    );
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const format = formatOf(file, options.format);
  const docs: string[] = [];
  if (format === 'text') {
    for (const d of text.split(/\r?\n[ \t]*(?:\r?\n[ \t]*)+/)) {
      const t = d.trim();
      if (t) docs.push(t);
    }
  } else {
    const field = options.textField ?? 'text';
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].trim();
      if (!line) continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (e) {
        throw new DictlearnError(
          `${file}:${i + 1}`,
          `not valid JSON (${e instanceof Error ? e.message : String(e)}); expected one JSON object per line`,
        );
      }
      const t = value && typeof value === 'object' ? (value as Record<string, unknown>)[field] : undefined;
      if (typeof t !== 'string') {
        throw new DictlearnError(
          `${file}:${i + 1}`,
          `expected an object with a string field '${field}', got ${line.length > 60 ? `${line.slice(0, 60)}…` : line}`,
        );
      }
      if (t.trim()) docs.push(t);
    }
  }
  if (docs.length === 0) {
    throw new DictlearnError(
      file,
      `the file holds no text (${bytes.length === 0 ? 'it is empty' : 'only blank documents'}); expected ${format === 'text' ? 'UTF-8 text, documents separated by blank lines' : `JSONL lines with a '${options.textField ?? 'text'}' field`}`,
    );
  }
  return docs;
}

/** Offset of the first byte of the first invalid UTF-8 sequence (the longest prefix that decodes, by bisection). */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let lo = 0;
  let hi = bytes.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    try {
      // `stream: true` accepts a prefix that ends inside a character; only invalid bytes throw.
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, mid), { stream: true });
      lo = mid;
    } catch {
      hi = mid - 1;
    }
  }
  // The byte at `lo` broke the text. If a character was still open before it, the broken sequence
  // starts at that character's lead byte.
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, lo));
    return lo;
  } catch {
    let k = lo - 1;
    while (k > 0 && (bytes[k] & 0xc0) === 0x80) k--;
    return k;
  }
}

/** One file's documents. */
export interface TextFile {
  /** The path. */
  file: string;
  /** Its documents, in order. */
  documents: string[];
}

/**
 * A text file's bytes already in memory (a browser `fetch`, say): parsed exactly as a file read from
 * disk; `file` names it in errors and decides the format by its extension.
 */
export interface TextBytes {
  /** A name for the text (a URL or file name). */
  readonly file: string;
  /** The file's bytes (UTF-8). */
  readonly bytes: Uint8Array;
}

/** A text file: a path (read from disk, Node) or its bytes ({@link TextBytes}, anywhere). */
export type TextInput = string | TextBytes;

/** Reads the documents of every file, in the order given (paths need Node; {@link TextBytes} work anywhere). */
export async function readDocuments(
  files: TextInput | readonly TextInput[],
  options: TextOptions = {},
): Promise<TextFile[]> {
  const list = typeof files === 'string' || !Array.isArray(files) ? [files as TextInput] : [...files];
  if (list.length === 0) throw new DictlearnError('text', 'expected one or more text or JSONL files');
  const out: TextFile[] = [];
  for (const f of list) {
    if (typeof f === 'string') {
      out.push({ file: f, documents: parseDocuments(await readFileBytes(f), f, options) });
    } else if (f && typeof f === 'object' && typeof f.file === 'string' && f.bytes instanceof Uint8Array) {
      out.push({ file: f.file, documents: parseDocuments(f.bytes, f.file, options) });
    } else {
      throw new DictlearnError('text', 'expected a file path or { file, bytes: Uint8Array } for each text');
    }
  }
  return out;
}
