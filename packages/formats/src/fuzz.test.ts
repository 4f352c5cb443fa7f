// A seeded mutation fuzzer over every format: truncations, flipped bytes, huge sizes and offsets,
// hostile pickles (other globals, object-building opcodes) inside valid archives, path traversal,
// duplicate / overlapping / huge safetensors entries, NaN weights, broken configs. Every case must
// either load (a finite dictionary) or throw a DictlearnError naming a file of the case — never
// another exception, never a hang, never an allocation the file cannot back.
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DictlearnError } from '@dictlearn/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDictionary, writeDictionary } from './api.js';
import { inspectDictionary } from './inspect.js';
import { dictionaryFromParts } from './parts.js';
import { FIXTURES, randomParts, seededRandom, useCpu } from './test-support.js';
import { readZip, writeZip } from './zip.js';

const CASES_PER_BASE = Number(process.env.DICTLEARN_FUZZ_CASES ?? 60);
const SEED = Number(process.env.DICTLEARN_FUZZ_SEED ?? 20260101);

type Files = Record<string, Uint8Array>;
type Rand = () => number;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: Rand, n: number) => Math.floor(r() * n);

const HUGE = [0xffffffff, 0x7fffffff, 0x80000000, 0xfffffff0, 1e9 | 0, 65535];

// ---- byte-level mutations (any file)
function truncate(b: Uint8Array, r: Rand) {
  return b.slice(0, int(r, b.length));
}
function flip(b: Uint8Array, r: Rand) {
  const out = Uint8Array.from(b);
  for (let i = 1 + int(r, 4); i > 0; i--) out[int(r, out.length)] ^= 1 << int(r, 8);
  return out;
}
function hugeField(b: Uint8Array, r: Rand, from = 0) {
  const out = Uint8Array.from(b);
  if (out.length < 8) return out;
  const at = from + int(r, Math.max(1, out.length - 4 - from));
  new DataView(out.buffer).setUint32(Math.min(at, out.length - 4), pick(r, HUGE), true);
  return out;
}

// ---- torch archive mutations, rebuilt with valid CRCs so they reach the unpickler and readers
function rebuild(b: Uint8Array, edit: (entries: { name: string; data: Uint8Array }[]) => void) {
  const zip = readZip(b, 'base');
  const entries = [...zip.entries.keys()].map((name) => ({ name, data: Uint8Array.from(zip.read(name)) }));
  edit(entries);
  return writeZip(entries);
}
const HOSTILE_GLOBALS = [
  'os\nsystem\n',
  'builtins\neval\n',
  'subprocess\nPopen\n',
  'torch\nload\n',
  '__builtin__\nexec\n',
];
function torchMutation(b: Uint8Array, r: Rand): Uint8Array {
  switch (int(r, 8)) {
    case 0: // a global the unpickler must refuse, in place of an allowed one
      return rebuild(b, (es) => {
        const p = es.find((e) => e.name.endsWith('data.pkl'))!;
        const s = dec(p.data);
        const i = s.indexOf('c', 2);
        const g = enc(pick(r, HOSTILE_GLOBALS));
        const at = p.data.indexOf(0x63, i < 0 ? 2 : i);
        if (at >= 0)
          p.data = Uint8Array.from([...p.data.subarray(0, at + 1), ...g, ...p.data.subarray(at + 1)]);
      });
    case 1: // random opcode bytes spliced into the pickle (NEWOBJ, INST, REDUCE, junk)
      return rebuild(b, (es) => {
        const p = es.find((e) => e.name.endsWith('data.pkl'))!;
        const at = 2 + int(r, p.data.length - 2);
        const junk = [pick(r, [0x81, 0x69, 0x52, 0x62, 0x93, 0x8a, 0x58, 0xff]), int(r, 256), int(r, 256)];
        p.data = Uint8Array.from([...p.data.subarray(0, at), ...junk, ...p.data.subarray(at)]);
      });
    case 2: // flipped pickle bytes
      return rebuild(b, (es) => {
        const p = es.find((e) => e.name.endsWith('data.pkl'))!;
        p.data = flip(p.data, r);
      });
    case 3: // path traversal / absolute names
      return rebuild(b, (es) => {
        const e = pick(r, es);
        e.name = pick(r, ['../', '/', '..\\', 'a/../../', 'C:/'] as const) + e.name;
      });
    case 4: // a storage of another size than the pickle declares
      return rebuild(b, (es) => {
        const s = es.filter((e) => /\/data\/\d+$/.test(e.name));
        const e = pick(r, s);
        e.data =
          r() < 0.5
            ? e.data.slice(0, int(r, e.data.length))
            : Uint8Array.from([...e.data, ...new Uint8Array(4)]);
      });
    case 5: // NaN / ∞ weights (the float32 bit patterns), with valid CRCs
      return rebuild(b, (es) => {
        const s = es.filter((e) => /\/data\/\d+$/.test(e.name) && e.data.length >= 8);
        const e = pick(r, s);
        new DataView(e.data.buffer).setUint32(
          4 * int(r, e.data.length / 4),
          pick(r, [0x7fc00000, 0x7f800000, 0xff800000]),
          true,
        );
      });
    case 6: // a missing or duplicated entry
      return rebuild(b, (es) => {
        const i = int(r, es.length);
        if (r() < 0.5) es.splice(i, 1);
        else es.push({ ...es[i] });
      });
    default: // huge sizes / offsets in the central directory or end record
      return hugeField(b, r, Math.max(0, b.length - 400));
  }
}

// ---- safetensors mutations
function stMutation(b: Uint8Array, r: Rand): Uint8Array {
  const n = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(dec(b.subarray(8, 8 + n))) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: number[] }
  >;
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const data = b.subarray(8 + n);
  const write = (h: unknown, body: Uint8Array, raw?: string) => {
    const json = enc(raw ?? JSON.stringify(h));
    const out = new Uint8Array(8 + json.length + body.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    out.set(body, 8 + json.length);
    return out;
  };
  const a = pick(r, names);
  const other = pick(r, names);
  switch (int(r, 7)) {
    case 0: // overlapping entries
      header[a].data_offsets = [...header[other].data_offsets];
      return write(header, data);
    case 1: {
      // a tensor named twice (JSON keeps the last: the reader must not)
      const s = JSON.stringify(header);
      return write(null, data, `${s.slice(0, -1)},${JSON.stringify(a)}:${JSON.stringify(header[other])}}`);
    }
    case 2: // huge shapes or offsets
      if (r() < 0.5) header[a].shape = header[a].shape.map(() => pick(r, [1e9, 2 ** 53, 4294967297]));
      else header[a].data_offsets = [header[a].data_offsets[0], pick(r, [1e12, 2 ** 53, 4294967296])];
      return write(header, data);
    case 3: {
      // NaN weights
      const body = Uint8Array.from(data);
      const [begin, end] = header[a].data_offsets;
      if (end - begin >= 4 && header[a].dtype === 'F32') {
        new DataView(body.buffer).setUint32(begin + 4 * int(r, (end - begin) / 4), 0x7fc00001, true);
      }
      return write(header, body);
    }
    case 4: // an unknown dtype, a missing tensor, or a header length past the end
      if (r() < 0.33) header[a].dtype = pick(r, ['F8', 'U64', 'float32', '']);
      else if (r() < 0.5) delete header[a];
      else return hugeField(b, r, 0).slice(0, b.length);
      return write(header, data);
    case 5:
      return truncate(b, r);
    default:
      return r() < 0.5 ? flip(b, r) : hugeField(b, r);
  }
}

// ---- JSON config mutations
function jsonMutation(b: Uint8Array, r: Rand): Uint8Array {
  if (r() < 0.15) return truncate(b, r);
  const value = JSON.parse(dec(b));
  const paths: (string | number)[][] = [];
  const walk = (v: unknown, p: (string | number)[]) => {
    if (v && typeof v === 'object') {
      for (const [k, c] of Object.entries(v)) {
        paths.push([...p, Array.isArray(v) ? Number(k) : k]);
        walk(c, [...p, Array.isArray(v) ? Number(k) : k]);
      }
    }
  };
  walk(value, []);
  const path = pick(r, paths);
  let parent = value;
  for (const k of path.slice(0, -1)) parent = parent[k];
  const last = path[path.length - 1];
  if (r() < 0.3) delete parent[last];
  else parent[last] = pick(r, [null, -1, 0, 1e12, 2.5, 'x', [], {}, true, Number.MAX_SAFE_INTEGER]);
  return enc(JSON.stringify(value));
}

function mutate(name: string, b: Uint8Array, r: Rand): Uint8Array {
  if (name.endsWith('.json')) return jsonMutation(b, r);
  if (name.endsWith('.pt'))
    return r() < 0.7 ? torchMutation(b, r) : pick(r, [truncate, flip, hugeField])(b, r);
  return stMutation(b, r);
}

let root: string;
const bases: [string, Files][] = [];
beforeAll(async () => {
  await useCpu();
  root = await mkdtemp(join(tmpdir(), 'dl-formats-fuzz-'));
  const load = async (dir: string): Promise<Files> => {
    const out: Files = {};
    for (const f of await readdir(dir))
      if (f !== 'expected.json') out[f] = new Uint8Array(await readFile(join(dir, f)));
    return out;
  };
  for (const c of [
    'dl/topk',
    'dl/gated',
    'dl/matryoshka',
    'saelens/jumprelu',
    'saelens/gated',
    'sparsify/topk',
  ]) {
    bases.push([c, await load(`${FIXTURES}${c}`)]);
  }
  const own = join(root, 'own');
  const d = dictionaryFromParts(randomParts('batch-topk', { k: 3 }, 5), 'test');
  await writeDictionary(d, own, 'dictlearn');
  d.dispose();
  bases.push(['dictlearn', await load(own)]);
});
afterAll(() => rm(root, { recursive: true, force: true }));

describe('mutation fuzzer', () => {
  it(`${CASES_PER_BASE} seeded mutations of each of 7 files: a dictionary or a DictlearnError naming the file`, async () => {
    const r = seededRandom(SEED);
    const rssBefore = process.memoryUsage().rss;
    let loaded = 0;
    let refused = 0;
    let slowest = 0;
    for (const [label, files] of bases) {
      for (let i = 0; i < CASES_PER_BASE; i++) {
        const dir = join(root, `${label.replace('/', '-')}-${i}`);
        await mkdir(dir, { recursive: true });
        const names = Object.keys(files);
        const target = pick(r, names);
        for (const n of names)
          await writeFile(join(dir, n), n === target ? mutate(n, files[n], r) : files[n]);
        const started = performance.now();
        for (const attempt of [() => loadDictionary(dir), () => inspectDictionary(dir)]) {
          try {
            const out = await attempt();
            if ('dictionary' in out) {
              for (const t of Object.values(out.dictionary.params)) {
                expect(Array.from(await t.data()).every(Number.isFinite), `${label} #${i}: ${target}`).toBe(
                  true,
                );
              }
              out.dictionary.dispose();
              loaded++;
            }
          } catch (e) {
            if (!(e instanceof DictlearnError) || !e.message.includes(dir)) {
              throw new Error(
                `${label} #${i} (mutated ${target}): expected a DictlearnError naming ${dir}, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`,
              );
            }
            if (attempt.toString().includes('loadDictionary')) refused++;
          }
        }
        slowest = Math.max(slowest, performance.now() - started);
        await rm(dir, { recursive: true, force: true });
      }
    }
    // Every case ends quickly (no hang), memory stays near where it was (no huge allocation),
    // and the mutations reach both outcomes.
    expect(slowest).toBeLessThan(2000);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(512 * 2 ** 20);
    expect(refused).toBeGreaterThan(bases.length * CASES_PER_BASE * 0.5);
    expect(loaded + refused).toBe(bases.length * CASES_PER_BASE);
    console.log(
      `fuzz: ${bases.length * CASES_PER_BASE} cases, ${refused} refused, ${loaded} loaded, slowest ${slowest.toFixed(0)} ms`,
    );
  }, 120_000);
});
