/**
 * torch's `torch.save` file format (the zip serialization of torch ≥ 1.6), for state dicts:
 *
 * ```text
 * <name>/data.pkl        the pickle: an OrderedDict name → torch._utils._rebuild_tensor_v2(
 *                          persistent id ('storage', torch.FloatStorage, key, 'cpu', numel),
 *                          storage offset, size, stride, requires_grad, backward hooks)
 * <name>/data/<key>      each storage's raw little-endian bytes
 * <name>/byteorder       'little'; <name>/version, .format_version, .storage_alignment, ...
 * ```
 *
 * The pickle is run by the restricted interpreter of `pickle.ts`, which allows only the globals
 * listed in {@link TORCH_GLOBALS}. Each tensor's offset, size and stride are checked against its
 * storage, and each storage's size against its zip entry, before any values are copied; the
 * values copied in all stay below a budget tied to the file's length.
 */
import { DictlearnError, fmtShape } from '@dictlearn/core';
import {
  describePy,
  PickleWriter,
  PyDict,
  PyGlobal,
  PyOpaque,
  PyTuple,
  type PyValue,
  unpickle,
} from './pickle.js';
import { compressedError, looksLikeZip, readZip, writeZip, type ZipInput } from './zip.js';

/** Element types of tensors read from torch files (safetensors' names). */
export type HostDType = 'F32' | 'F64' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/**
 * A tensor held on the host: floats (F32, F16, BF16) as `Float32Array`, F64 as `Float64Array`,
 * integers and booleans as `Int32Array` (I64 values must fit in int32).
 */
export interface HostTensor {
  /** Element type in the file. */
  dtype: HostDType;
  /** Shape (`[]` for a scalar). */
  shape: number[];
  /** Values, row-major. */
  values: Float32Array | Float64Array | Int32Array;
}

const STORAGE_TYPES: Record<string, { dtype: HostDType; bytes: number }> = {
  FloatStorage: { dtype: 'F32', bytes: 4 },
  DoubleStorage: { dtype: 'F64', bytes: 8 },
  HalfStorage: { dtype: 'F16', bytes: 2 },
  BFloat16Storage: { dtype: 'BF16', bytes: 2 },
  LongStorage: { dtype: 'I64', bytes: 8 },
  IntStorage: { dtype: 'I32', bytes: 4 },
  ShortStorage: { dtype: 'I16', bytes: 2 },
  CharStorage: { dtype: 'I8', bytes: 1 },
  ByteStorage: { dtype: 'U8', bytes: 1 },
  BoolStorage: { dtype: 'BOOL', bytes: 1 },
};

/** The globals a state dict's pickle may name; everything else is refused. */
export const TORCH_GLOBALS: readonly string[] = [
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  ...Object.keys(STORAGE_TYPES).map((s) => `torch.${s}`),
];

interface StorageRef {
  key: string;
  dtype: HostDType;
  itemBytes: number;
  numel: number;
}

interface TensorRef {
  storage: StorageRef;
  offset: number;
  size: number[];
  stride: number[];
}

/** A decoded state dict: tensors by key (in file order) and the keys of non-tensor values. */
export interface TorchStateDict {
  /** Tensors by state-dict key. */
  tensors: Record<string, HostTensor>;
  /** Keys whose values are not tensors (ignored). */
  ignored: string[];
}

function isCount(v: PyValue): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function intTuple(v: PyValue, what: string, fail: (m: string) => never): number[] {
  if (!(v instanceof PyTuple) || !v.items.every(isCount)) {
    fail(`${what} must be a tuple of non-negative ints, got ${describePy(v)}`);
  }
  return (v as PyTuple).items as number[];
}

/**
 * Says what a file that is not a torch zip archive is, as the end of an error message, or
 * undefined when it looks like one.
 */
export function torchFileProblem(bytes: Uint8Array): string | undefined {
  if (looksLikeZip(bytes)) return undefined;
  if (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1] <= 5) {
    return 'is a legacy (non-zip) torch file, written by torch < 1.6 or with _use_new_zipfile_serialization=False; its format is not supported: load it in Python and save it again with torch.save(state_dict, path)';
  }
  if (bytes.length >= 262 && new TextDecoder().decode(bytes.subarray(257, 262)) === 'ustar') {
    return 'is a legacy tar-format torch file (torch < 0.4); its format is not supported: load it in Python and save it again with torch.save';
  }
  return 'is not a torch file (expected the zip archive torch.save writes)';
}

/**
 * Reads a state dict saved with `torch.save(module.state_dict(), path)`. `source` names the
 * file in errors. Refuses legacy files, TorchScript archives, compressed or hostile archives,
 * pickles naming any global outside {@link TORCH_GLOBALS}, tensors whose view does not fit their
 * storage, and storages whose size disagrees with their entry.
 */
export function readTorchStateDict(bytes: Uint8Array, source: string): TorchStateDict {
  const problem = torchFileProblem(bytes);
  if (problem) throw new DictlearnError(source, problem);
  const zip = readZip(bytes, source);
  const names = [...zip.entries.keys()];
  const pkls = names.filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (names.some((n) => /^[^/]+\/(constants\.pkl|code\/)/.test(n))) {
    throw new DictlearnError(
      source,
      'is a TorchScript archive (torch.jit.save), not a state dict: save the module with torch.save(module.state_dict(), path)',
    );
  }
  const compressed = [...zip.entries.values()].find((e) => e.method !== 0);
  if (compressed) throw compressedError(compressed, source);
  if (pkls.length !== 1) {
    throw new DictlearnError(
      source,
      pkls.length === 0
        ? 'zip archive has no <name>/data.pkl: not a file written by torch.save'
        : `zip archive has ${pkls.length} data.pkl entries (${pkls.join(', ')}): expected one`,
    );
  }
  const prefix = pkls[0].slice(0, -'/data.pkl'.length);
  const byteorder = zip.entries.has(`${prefix}/byteorder`)
    ? new TextDecoder().decode(zip.read(`${prefix}/byteorder`))
    : 'little';
  if (byteorder !== 'little') {
    throw new DictlearnError(
      source,
      `byteorder is '${byteorder}': only little-endian torch files are supported`,
    );
  }
  const where = `${source} (${prefix}/data.pkl)`;
  const storages = new Map<string, StorageRef>();
  const fail = (at: number, m: string): never => {
    throw new DictlearnError(where, `pickle byte ${at}: ${m}`);
  };
  const rebuildTensor = (args: PyValue[], at: number): PyValue => {
    const f = (m: string) => fail(at, `_rebuild_tensor_v2: ${m}`);
    if (args.length < 4) f(`expected (storage, offset, size, stride, ...), got ${args.length} arguments`);
    const [storage, offset, size, stride] = args;
    if (!(storage instanceof PyOpaque) || storage.kind !== 'storage') {
      f(`argument 1 must be a storage, got ${describePy(storage)}`);
    }
    if (!isCount(offset)) f(`storage offset must be a non-negative int, got ${describePy(offset)}`);
    const s = intTuple(size, 'size', f);
    const st = intTuple(stride, 'stride', f);
    if (s.length !== st.length) f(`size ${fmtShape(s)} and stride ${fmtShape(st)} differ in length`);
    const ref: TensorRef = {
      storage: (storage as PyOpaque<StorageRef>).value,
      offset: offset as number,
      size: s,
      stride: st,
    };
    return new PyOpaque('tensor', ref);
  };
  const value = unpickle(zip.read(pkls[0]), {
    source: where,
    globals: {
      'collections.OrderedDict': (args, at) => {
        if (args.length) fail(at, 'OrderedDict called with arguments');
        return new PyDict(true);
      },
      'torch._utils._rebuild_tensor_v2': rebuildTensor,
      // nn.Parameter(tensor): the state dict of a saved module's parameters, kept as the tensor.
      'torch._utils._rebuild_parameter': (args, at) => {
        const t = args[0];
        if (!(t instanceof PyOpaque) || t.kind !== 'tensor') {
          fail(at, `_rebuild_parameter: expected a tensor, got ${describePy(t)}`);
        }
        return t;
      },
      ...Object.fromEntries(Object.keys(STORAGE_TYPES).map((s) => [`torch.${s}`, null])),
    },
    persistentLoad: (pid, at) => {
      const items = pid instanceof PyTuple ? pid.items : [];
      const [tag, type, key, , numel] = items;
      if (items.length !== 5 || tag !== 'storage') {
        fail(at, `persistent id must be ('storage', type, key, location, numel), got ${describePy(pid)}`);
      }
      if (!(type instanceof PyGlobal) || !(type.name in STORAGE_TYPES) || type.module !== 'torch') {
        fail(at, `persistent id names storage type ${describePy(type)}, expected a torch.*Storage`);
      }
      if (typeof key !== 'string' || !/^[A-Za-z0-9_]+$/.test(key)) {
        fail(at, `storage key ${describePy(key)} must be a plain name`);
      }
      if (!isCount(numel)) fail(at, `storage size ${describePy(numel)} must be a non-negative int`);
      const { dtype, bytes: itemBytes } = STORAGE_TYPES[(type as PyGlobal).name];
      const k = key as string;
      const entry = zip.entries.get(`${prefix}/data/${k}`);
      if (!entry) fail(at, `storage '${k}' has no entry ${prefix}/data/${k} in the archive`);
      // The declared element count is trusted only once it matches the real entry size.
      if ((numel as number) * itemBytes !== entry!.size) {
        fail(
          at,
          `storage '${k}' declares ${numel} ${dtype} elements (${(numel as number) * itemBytes} bytes) but its entry holds ${entry!.size} bytes`,
        );
      }
      const prev = storages.get(k);
      if (prev && prev.dtype !== dtype) fail(at, `storage '${k}' is used as both ${prev.dtype} and ${dtype}`);
      const ref: StorageRef = prev ?? { key: k, dtype, itemBytes, numel: numel as number };
      storages.set(k, ref);
      return new PyOpaque('storage', ref);
    },
    build: (target, state) => target instanceof PyDict && target.ordered && state instanceof PyDict,
  });
  if (!(value instanceof PyDict)) {
    throw new DictlearnError(
      where,
      `the pickle holds ${describePy(value)}, expected a state dict (a dict of tensors)`,
    );
  }
  // Values copied out stay within twice the file's size (float16 storages double when widened
  // to float32), so tensors sharing one storage cannot multiply an allocation.
  let budget = 2 * bytes.length + (1 << 20);
  const tensors: Record<string, HostTensor> = {};
  const ignored: string[] = [];
  for (const [k, v] of value.map) {
    const name = String(k);
    if (!(v instanceof PyOpaque) || v.kind !== 'tensor') {
      ignored.push(name);
      continue;
    }
    const ref = v.value as TensorRef;
    const count = ref.size.reduce((a, b) => a * b, 1);
    const elementBytes = ref.storage.dtype === 'F64' ? 8 : 4;
    budget -= count * elementBytes;
    if (budget < 0) {
      throw new DictlearnError(
        where,
        `tensor '${name}' ${fmtShape(ref.size)} takes the values read past the file's size: hostile or corrupt file`,
      );
    }
    tensors[name] = materialize(name, ref, zip.read(`${prefix}/data/${ref.storage.key}`), where);
  }
  return { tensors, ignored };
}

function materialize(name: string, ref: TensorRef, data: Uint8Array, where: string): HostTensor {
  const { storage, offset, size, stride } = ref;
  const count = size.reduce((a, b) => a * b, 1);
  if (count > 0) {
    let last = offset;
    for (let i = 0; i < size.length; i++) last += (size[i] - 1) * stride[i];
    if (last >= storage.numel) {
      throw new DictlearnError(
        where,
        `tensor '${name}': size ${fmtShape(size)}, stride ${fmtShape(stride)} at offset ${offset} reach element ${last} of a storage of ${storage.numel}`,
      );
    }
    if (count > storage.numel) {
      throw new DictlearnError(
        where,
        `tensor '${name}' has ${count} elements but its storage only ${storage.numel}: overlapping (broadcast) views are not supported`,
      );
    }
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const dtype = storage.dtype;
  const out =
    dtype === 'F64'
      ? new Float64Array(count)
      : dtype === 'F32' || dtype === 'F16' || dtype === 'BF16'
        ? new Float32Array(count)
        : new Int32Array(count);
  const half = new Uint16Array(1);
  const halfF = new Float32Array(1);
  const read = (e: number): number => {
    const b = e * storage.itemBytes;
    switch (dtype) {
      case 'F32':
        return view.getFloat32(b, true);
      case 'F64':
        return view.getFloat64(b, true);
      case 'F16': {
        half[0] = view.getUint16(b, true);
        return halfToFloat(half[0]);
      }
      case 'BF16':
        new Uint32Array(halfF.buffer)[0] = view.getUint16(b, true) << 16;
        return halfF[0];
      case 'I64': {
        const lo = view.getUint32(b, true);
        const hi = view.getInt32(b + 4, true);
        if (hi !== (lo >= 0x80000000 ? -1 : 0)) {
          throw new DictlearnError(
            where,
            `tensor '${name}': int64 value ${view.getBigInt64(b, true)} does not fit in int32`,
          );
        }
        return lo | 0;
      }
      case 'I32':
        return view.getInt32(b, true);
      case 'I16':
        return view.getInt16(b, true);
      case 'I8':
        return view.getInt8(b);
      case 'U8':
      case 'BOOL':
        return view.getUint8(b);
    }
  };
  // Row-major walk over the view's index space (strides in elements).
  const idx = new Array(size.length).fill(0);
  for (let i = 0; i < count; i++) {
    let e = offset;
    for (let d = 0; d < size.length; d++) e += idx[d] * stride[d];
    out[i] = read(e);
    for (let d = size.length - 1; d >= 0; d--) {
      if (++idx[d] < size[d]) break;
      idx[d] = 0;
    }
  }
  return { dtype, shape: [...size], values: out };
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** A tensor to write: float32 values, or int32 / int64 integers (DL's `k` and `group_sizes`). */
export interface TorchTensorInput {
  /** `F32` (FloatStorage), `I32` (IntStorage) or `I64` (LongStorage). */
  dtype: 'F32' | 'I32' | 'I64';
  /** Shape (`[]` for a scalar). */
  shape: readonly number[];
  /** Values, row-major. */
  values: ArrayLike<number>;
}

/**
 * Writes a state dict the way `torch.save(state_dict, path)` does: a zip archive whose folder is
 * `archiveName` (torch uses the file's base name, `ae` for `ae.pt`), holding `data.pkl` (an
 * OrderedDict of `_rebuild_tensor_v2` calls on persistent storages), one `data/<i>` entry per
 * tensor, aligned to 64 bytes, and the `byteorder`, `version`, `.format_version`,
 * `.storage_alignment` and `.data/serialization_id` records. `torch.load(path, weights_only=True)`
 * reads it.
 */
export function writeTorchStateDict(
  tensors: Record<string, TorchTensorInput>,
  archiveName = 'archive',
): Uint8Array {
  const w = new PickleWriter();
  w.op(0x80, 2);
  w.global('collections', 'OrderedDict');
  const orderedDict = 0;
  w.op(0x29, 0x52); // () REDUCE: OrderedDict()
  w.put();
  w.op(0x28); // MARK for SETITEMS
  const files: ZipInput[] = [];
  const storageName = { F32: 'FloatStorage', I32: 'IntStorage', I64: 'LongStorage' } as const;
  let key = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.values.length !== n) {
      throw new DictlearnError(
        'writeTorchStateDict',
        `tensor '${name}': shape ${fmtShape(t.shape)} needs ${n} values, got ${t.values.length}`,
      );
    }
    const bytes = new Uint8Array(n * (t.dtype === 'I64' ? 8 : 4));
    const v = new DataView(bytes.buffer);
    for (let i = 0; i < n; i++) {
      if (t.dtype === 'F32') v.setFloat32(4 * i, t.values[i], true);
      else if (t.dtype === 'I32') v.setInt32(4 * i, t.values[i], true);
      else v.setBigInt64(8 * i, BigInt(t.values[i]), true);
    }
    const k = String(key++);
    files.push({ name: `${archiveName}/data/${k}`, data: bytes });
    w.str(name);
    w.global('torch._utils', '_rebuild_tensor_v2');
    w.op(0x28, 0x28); // MARK (args) MARK (persistent id)
    w.str('storage');
    w.global('torch', storageName[t.dtype]);
    w.str(k);
    w.str('cpu');
    w.int(n);
    w.op(0x74); // TUPLE
    w.put();
    w.op(0x51); // BINPERSID
    w.int(0);
    w.intTuple(t.shape);
    const strides = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    w.intTuple(strides);
    w.op(0x89); // requires_grad False
    w.get(orderedDict);
    w.op(0x29, 0x52); // backward_hooks = OrderedDict()
    w.put();
    w.op(0x74); // TUPLE (args)
    w.put();
    w.op(0x52); // REDUCE
    w.put();
  }
  w.op(0x75, 0x2e); // SETITEMS STOP
  const text = (s: string) => new TextEncoder().encode(s);
  const id = Array.from({ length: 40 }, (_, i) => String((i * 7 + files.length) % 10)).join('');
  return writeZip([
    { name: `${archiveName}/data.pkl`, data: w.bytes() },
    { name: `${archiveName}/.format_version`, data: text('1') },
    { name: `${archiveName}/.storage_alignment`, data: text('64') },
    { name: `${archiveName}/byteorder`, data: text('little') },
    ...files,
    { name: `${archiveName}/version`, data: text('3\n') },
    { name: `${archiveName}/.data/serialization_id`, data: text(id) },
  ]);
}
