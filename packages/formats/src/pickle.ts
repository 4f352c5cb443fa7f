/**
 * A restricted pickle interpreter, written for torch state dicts, and the matching writer.
 *
 * Python's pickle format is a small stack machine whose `GLOBAL` and `REDUCE` opcodes import and
 * call arbitrary Python functions: loading an untrusted pickle with Python's own `pickle` runs
 * whatever it names. This interpreter never executes anything. It knows only the opcodes a
 * state dict uses (protocols 2–4: containers, numbers, strings, memo, persistent ids) and only
 * the globals its caller allows; `REDUCE` of an allowed global calls the caller's TypeScript
 * handler, and any other global, any object-constructing opcode (`NEWOBJ`, `INST`, `OBJ`…) and
 * any unknown opcode is refused with an error naming it. Every length read from the stream is
 * checked against the bytes that remain before anything is sliced.
 */
import { DictlearnError } from '@dictlearn/core';

/** A Python tuple. */
export class PyTuple {
  /** The items. */
  readonly items: PyValue[];
  /** A tuple of `items`. */
  constructor(items: PyValue[]) {
    this.items = items;
  }
}

/** A Python list. */
export class PyList {
  /** The items. */
  readonly items: PyValue[];
  /** A list of `items`. */
  constructor(items: PyValue[]) {
    this.items = items;
  }
}

/** A Python dict or `collections.OrderedDict` (insertion order kept), with str/int keys. */
export class PyDict {
  /** Entries in insertion order. */
  readonly map = new Map<string | number, PyValue>();
  /** Whether it was built as `collections.OrderedDict`. */
  readonly ordered: boolean;
  /** An empty dict (an OrderedDict when `ordered`). */
  constructor(ordered = false) {
    this.ordered = ordered;
  }
}

/** A global the stream named (`module.name`), allowed by the caller; only ever a token. */
export class PyGlobal {
  /** The module, e.g. `torch._utils`. */
  readonly module: string;
  /** The name in the module, e.g. `_rebuild_tensor_v2`. */
  readonly name: string;
  /** The global `module.name`. */
  constructor(module: string, name: string) {
    this.module = module;
    this.name = name;
  }
  /** `module.name`. */
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An object a caller's handler returned (a tensor reference, a storage…). */
export class PyOpaque<T = unknown> {
  /** What it stands for (`'tensor'`, `'storage'`). */
  readonly kind: string;
  /** The caller's value. */
  readonly value: T;
  /** Wraps a caller's `value` of `kind`. */
  constructor(kind: string, value: T) {
    this.kind = kind;
    this.value = value;
  }
}

/** The values the interpreter builds. */
export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyTuple
  | PyList
  | PyDict
  | PyGlobal
  | PyOpaque;

/** What a caller allows, and how allowed globals behave. */
export interface UnpickleOptions {
  /** Names the file (and entry) in errors. */
  source: string;
  /**
   * Globals that may be named, `'module.name'` → what `REDUCE` of it does (called with the
   * argument tuple's items), or `null` for a global that may only appear as a value (e.g. a
   * storage type inside a persistent id).
   */
  globals: Record<string, ((args: PyValue[], at: number) => PyValue) | null>;
  /** Resolves a persistent id (`BINPERSID`); omitted = persistent ids are refused. */
  persistentLoad?: (pid: PyValue, at: number) => PyValue;
  /**
   * `BUILD` (set an object's state): return true to accept it. Omitted = refused. torch uses it
   * to attach `_metadata` to a state dict's OrderedDict.
   */
  build?: (target: PyValue, state: PyValue, at: number) => boolean;
}

const OPCODE_NAMES: Record<number, string> = {
  40: 'MARK',
  46: 'STOP',
  48: 'POP',
  49: 'POP_MARK',
  50: 'DUP',
  70: 'FLOAT',
  73: 'INT',
  74: 'BININT',
  75: 'BININT1',
  76: 'LONG',
  77: 'BININT2',
  78: 'NONE',
  80: 'PERSID',
  81: 'BINPERSID',
  82: 'REDUCE',
  83: 'STRING',
  84: 'BINSTRING',
  85: 'SHORT_BINSTRING',
  86: 'UNICODE',
  88: 'BINUNICODE',
  97: 'APPEND',
  98: 'BUILD',
  99: 'GLOBAL',
  100: 'DICT',
  125: 'EMPTY_DICT',
  101: 'APPENDS',
  103: 'GET',
  104: 'BINGET',
  105: 'INST',
  106: 'LONG_BINGET',
  108: 'LIST',
  93: 'EMPTY_LIST',
  111: 'OBJ',
  112: 'PUT',
  113: 'BINPUT',
  114: 'LONG_BINPUT',
  115: 'SETITEM',
  116: 'TUPLE',
  41: 'EMPTY_TUPLE',
  117: 'SETITEMS',
  71: 'BINFLOAT',
  128: 'PROTO',
  129: 'NEWOBJ',
  130: 'EXT1',
  131: 'EXT2',
  132: 'EXT4',
  133: 'TUPLE1',
  134: 'TUPLE2',
  135: 'TUPLE3',
  136: 'NEWTRUE',
  137: 'NEWFALSE',
  138: 'LONG1',
  139: 'LONG4',
  66: 'BINBYTES',
  67: 'SHORT_BINBYTES',
  140: 'SHORT_BINUNICODE',
  141: 'BINUNICODE8',
  142: 'BINBYTES8',
  143: 'EMPTY_SET',
  144: 'ADDITEMS',
  145: 'FROZENSET',
  146: 'NEWOBJ_EX',
  147: 'STACK_GLOBAL',
  148: 'MEMOIZE',
  149: 'FRAME',
  150: 'BYTEARRAY8',
  151: 'NEXT_BUFFER',
  152: 'READONLY_BUFFER',
};

const MARK = Symbol('mark');
type Slot = PyValue | typeof MARK;

/** A short description of a value for error messages. */
export function describePy(v: PyValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  if (typeof v === 'string') return `str ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'number' || typeof v === 'bigint') return `int/float ${v}`;
  if (typeof v === 'boolean') return `bool ${v}`;
  if (v instanceof Uint8Array) return `bytes (${v.length})`;
  if (v instanceof PyTuple) return `tuple of ${v.items.length}`;
  if (v instanceof PyList) return `list of ${v.items.length}`;
  if (v instanceof PyDict) return `${v.ordered ? 'OrderedDict' : 'dict'} of ${v.map.size}`;
  if (v instanceof PyGlobal) return `global ${v.qualified}`;
  return v.kind;
}

/**
 * Runs a pickle stream under the restrictions of `options` and returns the value it builds.
 * Throws a `DictlearnError` naming `options.source`, the byte offset and the opcode or
 * global for anything outside them, for a truncated stream and for a malformed one.
 */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions): PyValue {
  const { source } = options;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: Slot[] = [];
  const memo = new Map<number, PyValue>();
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  let opAt = 0;
  const fail = (message: string): never => {
    throw new DictlearnError(source, `pickle byte ${opAt}: ${message}`);
  };
  const need = (n: number, what: string) => {
    if (n < 0 || pos + n > bytes.length) {
      fail(`${what} needs ${n} bytes but only ${bytes.length - pos} remain: truncated or corrupt pickle`);
    }
  };
  const u8 = () => {
    need(1, 'an opcode argument');
    return bytes[pos++];
  };
  const u16 = () => {
    need(2, 'an opcode argument');
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4, 'an opcode argument');
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (what: string) => {
    need(8, what);
    const lo = view.getUint32(pos, true);
    const hi = view.getUint32(pos + 4, true);
    pos += 8;
    if (hi >= 0x200000) fail(`${what} of ${hi}·2^32 bytes cannot be right`);
    return hi * 2 ** 32 + lo;
  };
  const text = (n: number, what: string): string => {
    need(n, what);
    const s = bytes.subarray(pos, pos + n);
    pos += n;
    try {
      return utf8.decode(s);
    } catch {
      return fail(`${what} is not valid UTF-8`);
    }
  };
  const line = (what: string): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail(`${what} has no terminating newline: truncated pickle`);
    const s = text(end - pos, what);
    pos = end + 1;
    return s;
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined) fail('the stack is empty: malformed pickle');
    if (v === MARK) fail('found a MARK where a value was expected: malformed pickle');
    return v as PyValue;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) fail('expected a value on the stack: malformed pickle');
    return v as PyValue;
  };
  const popMark = (): PyValue[] => {
    let i = stack.length - 1;
    while (i >= 0 && stack[i] !== MARK) i--;
    if (i < 0) fail('no MARK on the stack: malformed pickle');
    const items = stack.splice(i) as Slot[];
    items.shift();
    return items as PyValue[];
  };
  const key = (k: PyValue): string | number => {
    if (typeof k === 'string' || typeof k === 'number') return k;
    return fail(`a dict key must be a str or int, got ${describePy(k)}`);
  };
  const setItems = (d: PyValue, items: PyValue[]) => {
    if (!(d instanceof PyDict)) fail(`SETITEM(S) on ${describePy(d)}, expected a dict`);
    if (items.length % 2) fail('SETITEMS with an odd number of items: malformed pickle');
    for (let i = 0; i < items.length; i += 2) (d as PyDict).map.set(key(items[i]), items[i + 1]);
  };
  const global = (module: string, name: string): PyGlobal => {
    const q = `${module}.${name}`;
    if (!(q in options.globals)) {
      const allowed = Object.keys(options.globals).join(', ');
      fail(`refuses global '${q}': only ${allowed} may appear in a state dict (nothing is ever executed)`);
    }
    return new PyGlobal(module, name);
  };
  const memoGet = (i: number): PyValue => {
    if (!memo.has(i)) fail(`memo slot ${i} was never stored: malformed pickle`);
    return memo.get(i) as PyValue;
  };

  for (;;) {
    opAt = pos;
    if (pos >= bytes.length) fail('the stream ends without STOP: truncated pickle');
    const op = bytes[pos++];
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail('pickle protocol above 5');
        break;
      case 0x95: // FRAME: a length prefix for the next opcodes; nothing to do but check it
        if (u64('FRAME') > bytes.length - pos) fail('FRAME runs past the end: truncated pickle');
        break;
      case 0x28:
        stack.push(MARK);
        break;
      case 0x2e: {
        // STOP
        const v = pop();
        if (stack.length) fail(`STOP with ${stack.length} values left on the stack: malformed pickle`);
        return v;
      }
      case 0x30:
        pop();
        break;
      case 0x31:
        popMark();
        break;
      case 0x32:
        stack.push(top());
        break;
      case 0x4e:
        stack.push(null);
        break;
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      case 0x4a:
        need(4, 'BININT');
        stack.push(view.getInt32(pos, true));
        pos += 4;
        break;
      case 0x4b:
        stack.push(u8());
        break;
      case 0x4d:
        stack.push(u16());
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement of n ≤ 8 bytes (state dicts hold small ints)
        const n = u8();
        if (n > 8) fail(`LONG1 of ${n} bytes: integers wider than 64 bits are not supported`);
        need(n, 'LONG1');
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[pos + i]);
        if (n > 0 && bytes[pos + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        pos += n;
        stack.push(
          v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v,
        );
        break;
      }
      case 0x47:
        need(8, 'BINFLOAT');
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58:
        stack.push(text(u32(), 'BINUNICODE'));
        break;
      case 0x8c:
        stack.push(text(u8(), 'SHORT_BINUNICODE'));
        break;
      case 0x8d:
        stack.push(text(u64('BINUNICODE8'), 'BINUNICODE8'));
        break;
      case 0x43:
      case 0x42: {
        const n = op === 0x43 ? u8() : u32();
        need(n, OPCODE_NAMES[op]);
        stack.push(bytes.slice(pos, pos + n));
        pos += n;
        break;
      }
      case 0x29:
        stack.push(new PyTuple([]));
        break;
      case 0x74:
        stack.push(new PyTuple(popMark()));
        break;
      case 0x85:
        stack.push(new PyTuple([pop()]));
        break;
      case 0x86: {
        const b = pop();
        stack.push(new PyTuple([pop(), b]));
        break;
      }
      case 0x87: {
        const c = pop();
        const b = pop();
        stack.push(new PyTuple([pop(), b, c]));
        break;
      }
      case 0x5d:
        stack.push(new PyList([]));
        break;
      case 0x6c:
        stack.push(new PyList(popMark()));
        break;
      case 0x61: {
        const v = pop();
        const l = top();
        if (!(l instanceof PyList)) fail(`APPEND to ${describePy(l)}, expected a list`);
        (l as PyList).items.push(v);
        break;
      }
      case 0x65: {
        const items = popMark();
        const l = top();
        if (!(l instanceof PyList)) fail(`APPENDS to ${describePy(l)}, expected a list`);
        (l as PyList).items.push(...items);
        break;
      }
      case 0x7d:
        stack.push(new PyDict());
        break;
      case 0x64: {
        const d = new PyDict();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x71:
        memo.set(u8(), top());
        break;
      case 0x72:
        memo.set(u32(), top());
        break;
      case 0x94:
        memo.set(memo.size, top());
        break;
      case 0x68:
        stack.push(memoGet(u8()));
        break;
      case 0x6a:
        stack.push(memoGet(u32()));
        break;
      case 0x63: {
        const module = line('GLOBAL module');
        const name = line('GLOBAL name');
        stack.push(global(module, name));
        break;
      }
      case 0x93: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') {
          fail('STACK_GLOBAL needs two strings: malformed pickle');
        }
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x51: {
        const pid = pop();
        if (!options.persistentLoad) fail('persistent ids (BINPERSID) are not allowed here');
        stack.push(options.persistentLoad!(pid, opAt));
        break;
      }
      case 0x52: {
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PyGlobal)) fail(`REDUCE calls ${describePy(fn)}, which is not an allowed global`);
        if (!(args instanceof PyTuple))
          fail(`REDUCE with ${describePy(args)} as arguments, expected a tuple`);
        const handler = options.globals[(fn as PyGlobal).qualified];
        if (!handler) fail(`global '${(fn as PyGlobal).qualified}' may appear here but not be called`);
        stack.push(handler!((args as PyTuple).items, opAt));
        break;
      }
      case 0x62: {
        const state = pop();
        const target = top();
        if (!options.build?.(target, state, opAt)) {
          fail(`BUILD (setting the state of ${describePy(target)}) is not allowed here`);
        }
        break;
      }
      default: {
        const name = OPCODE_NAMES[op];
        fail(
          name
            ? `opcode ${name} (0x${op.toString(16)}) is not supported by the restricted unpickler${
                ['NEWOBJ', 'NEWOBJ_EX', 'INST', 'OBJ', 'EXT1', 'EXT2', 'EXT4'].includes(name)
                  ? ' (it constructs an arbitrary object)'
                  : ''
              }`
            : `unknown opcode 0x${op.toString(16)}: not a pickle, or a corrupt one`,
        );
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// writer

/** A pickle writer for the opcodes a torch state dict uses (protocol 2, as `torch.save`). */
export class PickleWriter {
  #chunks: number[] = [];
  #memo = new Map<string, number>();
  #nextMemo = 0;

  /** Raw opcode bytes. */
  op(...bytes: number[]): this {
    for (const b of bytes) this.#chunks.push(b & 0xff);
    return this;
  }

  #u32(v: number): void {
    this.op(v, v >>> 8, v >>> 16, v >>> 24);
  }

  /** Stores the top of the stack in the next memo slot (BINPUT / LONG_BINPUT). */
  put(): number {
    const i = this.#nextMemo++;
    if (i < 256) this.op(0x71, i);
    else {
      this.op(0x72);
      this.#u32(i);
    }
    return i;
  }

  /** Pushes memo slot `i` (BINGET / LONG_BINGET). */
  get(i: number): this {
    if (i < 256) return this.op(0x68, i);
    this.op(0x6a);
    this.#u32(i);
    return this;
  }

  /** Pushes a global, memoised so a second use is a BINGET. */
  global(module: string, name: string): this {
    const k = `g:${module}.${name}`;
    const m = this.#memo.get(k);
    if (m !== undefined) return this.get(m);
    this.op(0x63);
    for (const b of new TextEncoder().encode(`${module}\n${name}\n`)) this.op(b);
    this.#memo.set(k, this.put());
    return this;
  }

  /** Pushes a str (BINUNICODE), memoised when `memoise` (torch memoises every str). */
  str(s: string, memoise = true): this {
    const k = `s:${s}`;
    const m = memoise ? this.#memo.get(k) : undefined;
    if (m !== undefined) return this.get(m);
    const b = new TextEncoder().encode(s);
    this.op(0x58);
    this.#u32(b.length);
    for (const x of b) this.op(x);
    if (memoise) this.#memo.set(k, this.put());
    return this;
  }

  /** Pushes an int (BININT1 / BININT2 / BININT / LONG1, as Python's pickler chooses). */
  int(v: number): this {
    if (!Number.isSafeInteger(v)) throw new DictlearnError('pickle', `cannot write ${v} as an int`);
    if (v >= 0 && v < 256) return this.op(0x4b, v);
    if (v >= 0 && v < 65536) return this.op(0x4d, v, v >>> 8);
    if (v >= -(2 ** 31) && v < 2 ** 31) {
      this.op(0x4a);
      this.#u32(v >>> 0);
      return this;
    }
    let x = BigInt(v);
    const out: number[] = [];
    for (let i = 0; i < 8; i++) {
      out.push(Number(x & 0xffn));
      x >>= 8n;
    }
    // Python writes the fewest bytes that keep the sign.
    while (
      out.length > 1 &&
      ((out.at(-1) === 0 && !(out.at(-2)! & 0x80)) || (out.at(-1) === 0xff && out.at(-2)! & 0x80))
    )
      out.pop();
    return this.op(0x8a, out.length, ...out);
  }

  /** Pushes a tuple of ints (EMPTY_TUPLE / TUPLE1-3 / MARK…TUPLE), memoised as torch does. */
  intTuple(values: readonly number[]): this {
    if (values.length === 0) return this.op(0x29);
    if (values.length > 3) this.op(0x28);
    for (const v of values) this.int(v);
    this.op(values.length === 1 ? 0x85 : values.length === 2 ? 0x86 : values.length === 3 ? 0x87 : 0x74);
    this.put();
    return this;
  }

  /** The bytes written so far. */
  bytes(): Uint8Array {
    return Uint8Array.from(this.#chunks);
  }
}
