/**
 * The ZIP container of torch's `torch.save` files, read and written by hand.
 *
 * Only what torch writes is read: *stored* (uncompressed) entries, optionally ZIP64, with the
 * sizes in the central directory (torch's writer puts them in a data descriptor after the data
 * and leaves the local header's sizes 0). Every size and offset is checked against the real
 * length of the file before anything is sliced, so a hostile archive cannot make the reader
 * allocate more than the file holds; entry names must be relative paths without `..`; CRC-32s
 * are verified when an entry is read.
 */
import { DictlearnError } from '@dictlearn/core';

/** One entry of an archive, located and checked (its data are not read yet). */
export interface ZipEntry {
  /** The entry's path inside the archive (`ae/data.pkl`). */
  name: string;
  /** Byte offset of the entry's data in the file. */
  dataOffset: number;
  /** Size of the data in bytes (stored: compressed = uncompressed). */
  size: number;
  /** CRC-32 of the data, from the central directory. */
  crc32: number;
  /** Compression method (0 = stored; torch writes only stored entries). */
  method: number;
}

/** A parsed archive: its entries by name, in central-directory order. */
export interface ZipArchive {
  /** Entries by name. */
  entries: Map<string, ZipEntry>;
  /** Reads one entry's bytes (a view into the file), verifying its CRC-32. */
  read(name: string): Uint8Array;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;

let crcTable: Uint32Array | undefined;

/** CRC-32 (the ZIP polynomial 0xEDB88320) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  const t = crcTable;
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** True when `bytes` start like a ZIP archive (a local file header, or an empty archive). */
export function looksLikeZip(bytes: Uint8Array): boolean {
  if (bytes.length < 4) return false;
  const sig = bytes[0] | (bytes[1] << 8) | (bytes[2] << 16) | (bytes[3] << 24);
  return sig >>> 0 === SIG_LOCAL || sig >>> 0 === SIG_EOCD;
}

function u64(view: DataView, at: number, source: string, field: string): number {
  const lo = view.getUint32(at, true);
  const hi = view.getUint32(at + 4, true);
  // 2^53 bytes is far beyond any file; a larger value is a corrupt or hostile field.
  if (hi >= 0x200000) throw new DictlearnError(source, `zip: ${field} ${hi}·2^32+${lo} is not a valid size`);
  return hi * 2 ** 32 + lo;
}

/**
 * The one place entry names are judged: a relative path of plain segments. Refuses absolute
 * paths, drive letters, backslashes, `.`/`..` segments and control characters, so no name can
 * point outside the archive's folder however a caller uses it.
 */
function checkEntryName(name: string, source: string): void {
  const bad = (why: string) =>
    new DictlearnError(source, `zip: entry name ${JSON.stringify(name)} ${why} (path traversal refused)`);
  if (name.length === 0) throw bad('is empty');
  if (name.startsWith('/')) throw bad('is an absolute path');
  if (/^[A-Za-z]:/.test(name)) throw bad('starts with a drive letter');
  if (name.includes('\\')) throw bad('contains a backslash');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f]/.test(name)) throw bad('contains a control character');
  for (const seg of name.split('/')) {
    if (seg === '..' || seg === '.') throw bad(`has a '${seg}' segment`);
  }
}

/**
 * Parses the central directory of a ZIP archive held in memory and checks every entry against
 * the file: the end-of-central-directory record (and its ZIP64 form), the directory inside the
 * file, each local header matching its central record, names without traversal, no duplicate
 * names and no two entries' data overlapping. Compressed entries are listed but refused by
 * `read`. `source` names the file in errors.
 */
export function readZip(bytes: Uint8Array, source: string): ZipArchive {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = bytes.byteLength;
  if (size < 22) {
    throw new DictlearnError(source, `zip: file is ${size} bytes, too short for a zip archive: truncated`);
  }
  // The end-of-central-directory record sits in the last 22 + 65535 bytes; take the last
  // signature whose comment length reaches exactly the end of the file.
  let eocd = -1;
  for (let at = size - 22; at >= Math.max(0, size - 22 - 0xffff); at--) {
    if (view.getUint32(at, true) === SIG_EOCD && at + 22 + view.getUint16(at + 20, true) === size) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) {
    throw new DictlearnError(
      source,
      'zip: no end-of-central-directory record at the end of the file: truncated or not a zip archive',
    );
  }
  let count = view.getUint16(eocd + 10, true);
  let cdSize = view.getUint32(eocd + 12, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  let cdEnd = eocd;
  const locator = eocd - 20;
  if (locator >= 0 && view.getUint32(locator, true) === SIG_EOCD64_LOCATOR) {
    const at = u64(view, locator + 8, source, 'ZIP64 end-of-directory offset');
    if (at + 56 > locator || view.getUint32(at, true) !== SIG_EOCD64) {
      throw new DictlearnError(
        source,
        `zip: the ZIP64 end-of-directory record at byte ${at} is missing or cut`,
      );
    }
    count = u64(view, at + 32, source, 'ZIP64 entry count');
    cdSize = u64(view, at + 40, source, 'ZIP64 central directory size');
    cdOffset = u64(view, at + 48, source, 'ZIP64 central directory offset');
    cdEnd = at;
  } else if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    throw new DictlearnError(source, 'zip: the archive needs ZIP64 records but has none: corrupt file');
  }
  if (cdOffset + cdSize > cdEnd) {
    throw new DictlearnError(
      source,
      `zip: the central directory (bytes ${cdOffset}..${cdOffset + cdSize}) runs past its end record at byte ${cdEnd}: truncated or corrupt file`,
    );
  }
  // Each central record is at least 46 bytes: a count larger than the directory can hold is a lie.
  if (count * 46 > cdSize) {
    throw new DictlearnError(
      source,
      `zip: ${count} entries cannot fit in a central directory of ${cdSize} bytes: corrupt file`,
    );
  }
  const entries = new Map<string, ZipEntry>();
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let at = cdOffset;
  for (let i = 0; i < count; i++) {
    if (at + 46 > cdOffset + cdSize || view.getUint32(at, true) !== SIG_CENTRAL) {
      throw new DictlearnError(
        source,
        `zip: central directory record ${i} at byte ${at} is missing or corrupt`,
      );
    }
    const flags = view.getUint16(at + 8, true);
    const method = view.getUint16(at + 10, true);
    const crc = view.getUint32(at + 16, true);
    let compSize = view.getUint32(at + 20, true);
    let uncompSize = view.getUint32(at + 24, true);
    const nameLen = view.getUint16(at + 28, true);
    const extraLen = view.getUint16(at + 30, true);
    const commentLen = view.getUint16(at + 32, true);
    let localOffset = view.getUint32(at + 42, true);
    const next = at + 46 + nameLen + extraLen + commentLen;
    if (next > cdOffset + cdSize) {
      throw new DictlearnError(
        source,
        `zip: central directory record ${i} runs past the directory: corrupt file`,
      );
    }
    let name: string;
    try {
      name = decoder.decode(bytes.subarray(at + 46, at + 46 + nameLen));
    } catch {
      throw new DictlearnError(source, `zip: entry ${i} has a name that is not UTF-8`);
    }
    checkEntryName(name, source);
    // ZIP64 extended information: the fields that read 0xFFFFFFFF follow, in this order.
    for (let e = at + 46 + nameLen; e + 4 <= at + 46 + nameLen + extraLen; ) {
      const id = view.getUint16(e, true);
      const len = view.getUint16(e + 2, true);
      if (e + 4 + len > at + 46 + nameLen + extraLen) break;
      if (id === 0x0001) {
        let p = e + 4;
        const take = (field: string): number => {
          if (p + 8 > e + 4 + len) {
            throw new DictlearnError(source, `zip: entry '${name}': ZIP64 field ${field} is missing`);
          }
          const v = u64(view, p, source, `entry '${name}' ${field}`);
          p += 8;
          return v;
        };
        if (uncompSize === 0xffffffff) uncompSize = take('uncompressed size');
        if (compSize === 0xffffffff) compSize = take('compressed size');
        if (localOffset === 0xffffffff) localOffset = take('local header offset');
      }
      e += 4 + len;
    }
    if (flags & 1) throw new DictlearnError(source, `zip: entry '${name}' is encrypted`);
    // A compressed entry is located (so a caller can still see what the archive is) but never
    // read: see `read` below.
    if (method === 0 && compSize !== uncompSize) {
      throw new DictlearnError(
        source,
        `zip: stored entry '${name}' declares ${compSize} stored bytes but ${uncompSize} uncompressed: corrupt file`,
      );
    }
    if (localOffset + 30 > cdOffset || view.getUint32(localOffset, true) !== SIG_LOCAL) {
      throw new DictlearnError(
        source,
        `zip: entry '${name}': no local header at byte ${localOffset}: truncated or corrupt file`,
      );
    }
    const localNameLen = view.getUint16(localOffset + 26, true);
    const localExtraLen = view.getUint16(localOffset + 28, true);
    const localMethod = view.getUint16(localOffset + 8, true);
    const localName = bytes.subarray(localOffset + 30, localOffset + 30 + localNameLen);
    const centralName = bytes.subarray(at + 46, at + 46 + nameLen);
    if (
      localNameLen !== nameLen ||
      localName.some((b, j) => b !== centralName[j]) ||
      localMethod !== method
    ) {
      throw new DictlearnError(
        source,
        `zip: entry '${name}': the local header at byte ${localOffset} does not match the central directory`,
      );
    }
    const dataOffset = localOffset + 30 + localNameLen + localExtraLen;
    if (dataOffset + compSize > cdOffset) {
      throw new DictlearnError(
        source,
        `zip: entry '${name}' declares ${compSize} bytes at byte ${dataOffset}, past the end of the entries (byte ${cdOffset}): truncated or corrupt file`,
      );
    }
    if (entries.has(name)) throw new DictlearnError(source, `zip: entry '${name}' appears twice`);
    entries.set(name, { name, dataOffset, size: compSize, crc32: crc, method });
    at = next;
  }
  // Entries may not share bytes: overlapping entries are how "zip bombs" multiply one payload.
  const sorted = [...entries.values()].sort((a, b) => a.dataOffset - b.dataOffset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    if (sorted[i].dataOffset < prev.dataOffset + prev.size) {
      throw new DictlearnError(
        source,
        `zip: entries '${prev.name}' and '${sorted[i].name}' overlap: corrupt or hostile archive`,
      );
    }
  }
  const verified = new Set<string>();
  return {
    entries,
    read(name: string): Uint8Array {
      const e = entries.get(name);
      if (!e) throw new DictlearnError(source, `zip: no entry '${name}' in the archive`);
      if (e.method !== 0) throw compressedError(e, source);
      const data = bytes.subarray(e.dataOffset, e.dataOffset + e.size);
      if (!verified.has(name)) {
        const got = crc32(data);
        if (got !== e.crc32) {
          throw new DictlearnError(
            source,
            `zip: entry '${name}' fails its CRC-32 check (stored ${hex(e.crc32)}, computed ${hex(got)}): the file is corrupt`,
          );
        }
        verified.add(name);
      }
      return data;
    },
  };
}

/** The error for a compressed entry (torch writes stored entries only). */
export function compressedError(e: ZipEntry, source: string): DictlearnError {
  return new DictlearnError(
    source,
    `zip: entry '${e.name}' is compressed (method ${e.method}${e.method === 8 ? ', deflate' : ''}); torch.save writes stored entries: re-save the file with torch.save`,
  );
}

function hex(v: number): string {
  return `0x${v.toString(16).padStart(8, '0')}`;
}

/** One entry to write: its name and bytes. */
export interface ZipInput {
  /** Path inside the archive. */
  name: string;
  /** The bytes (stored uncompressed). */
  data: Uint8Array;
}

/**
 * Writes a stored (uncompressed) ZIP archive the way torch's `PyTorchStreamWriter` does: each
 * entry's data start on a multiple of `align` bytes (the padding is a local-header extra field
 * with id `FB`, as torch writes it), UTF-8 names, ZIP64 end records. Sizes go in the local
 * headers directly (torch uses data descriptors; readers accept both).
 */
export function writeZip(files: readonly ZipInput[], align = 64): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  const needs64 = (v: number) => v >= 0xffffffff;
  for (const f of files) {
    const name = enc.encode(f.name);
    const crc = crc32(f.data);
    const size = f.data.byteLength;
    const big = needs64(size) || needs64(offset);
    const zip64Len = big ? 4 + 16 : 0;
    const pad = (align - ((offset + 30 + name.length + zip64Len + 4) % align)) % align;
    const extraLen = zip64Len + 4 + pad;
    const local = new Uint8Array(30 + name.length + extraLen);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, SIG_LOCAL, true);
    lv.setUint16(4, big ? 45 : 20, true);
    lv.setUint16(6, 0x0800, true);
    lv.setUint16(8, 0, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, big ? 0xffffffff : size, true);
    lv.setUint32(22, big ? 0xffffffff : size, true);
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, extraLen, true);
    local.set(name, 30);
    let e = 30 + name.length;
    if (big) {
      lv.setUint16(e, 0x0001, true);
      lv.setUint16(e + 2, 16, true);
      lv.setBigUint64(e + 4, BigInt(size), true);
      lv.setBigUint64(e + 12, BigInt(size), true);
      e += 20;
    }
    lv.setUint16(e, 0x4246, true); // 'FB': torch's alignment padding
    lv.setUint16(e + 2, pad, true);
    local.fill(0x5a, e + 4, e + 4 + pad); // 'Z', as torch pads
    parts.push(local, f.data);
    const c64 = needs64(size) || needs64(offset);
    const cExtra = c64 ? 4 + 24 : 0;
    const rec = new Uint8Array(46 + name.length + cExtra);
    const cv = new DataView(rec.buffer);
    cv.setUint32(0, SIG_CENTRAL, true);
    cv.setUint16(4, c64 ? 45 : 20, true);
    cv.setUint16(6, c64 ? 45 : 20, true);
    cv.setUint16(8, 0x0800, true);
    cv.setUint16(10, 0, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, c64 ? 0xffffffff : size, true);
    cv.setUint32(24, c64 ? 0xffffffff : size, true);
    cv.setUint16(28, name.length, true);
    cv.setUint16(30, cExtra, true);
    cv.setUint32(42, c64 ? 0xffffffff : offset, true);
    rec.set(name, 46);
    if (c64) {
      const p = 46 + name.length;
      cv.setUint16(p, 0x0001, true);
      cv.setUint16(p + 2, 24, true);
      cv.setBigUint64(p + 4, BigInt(size), true);
      cv.setBigUint64(p + 12, BigInt(size), true);
      cv.setBigUint64(p + 20, BigInt(offset), true);
    }
    central.push(rec);
    offset += local.byteLength + size;
  }
  const cdOffset = offset;
  const cdSize = central.reduce((s, c) => s + c.byteLength, 0);
  const tail = new Uint8Array(56 + 20 + 22);
  const tv = new DataView(tail.buffer);
  // ZIP64 end of central directory record + locator (torch always writes them), then the
  // classic record with the fields that overflow set to their 0xFF… markers.
  tv.setUint32(0, SIG_EOCD64, true);
  tv.setBigUint64(4, 44n, true);
  tv.setUint16(12, 45, true);
  tv.setUint16(14, 45, true);
  tv.setBigUint64(24, BigInt(files.length), true);
  tv.setBigUint64(32, BigInt(files.length), true);
  tv.setBigUint64(40, BigInt(cdSize), true);
  tv.setBigUint64(48, BigInt(cdOffset), true);
  tv.setUint32(56, SIG_EOCD64_LOCATOR, true);
  tv.setBigUint64(64, BigInt(cdOffset + cdSize), true);
  tv.setUint32(72, 1, true);
  tv.setUint32(76, SIG_EOCD, true);
  tv.setUint16(84, Math.min(files.length, 0xffff), true);
  tv.setUint16(86, Math.min(files.length, 0xffff), true);
  tv.setUint32(88, Math.min(cdSize, 0xffffffff), true);
  tv.setUint32(92, Math.min(cdOffset, 0xffffffff), true);
  const out = new Uint8Array(offset + cdSize + tail.byteLength);
  let p = 0;
  for (const part of parts) {
    out.set(part, p);
    p += part.byteLength;
  }
  for (const c of central) {
    out.set(c, p);
    p += c.byteLength;
  }
  out.set(tail, p);
  return out;
}
