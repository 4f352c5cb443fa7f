// Hostile, foreign, corrupt and unsupported files: one clear DictlearnError naming the file and
// what is wrong, never an execution, never a stack trace, never an allocation the file cannot back.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DictlearnError } from '@dictlearn/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDictionary, readDictionary } from './api.js';
import { PickleWriter, unpickle } from './pickle.js';
import { FIXTURES, useCpu } from './test-support.js';
import { readTorchStateDict, writeTorchStateDict } from './torch.js';
import { readZip, writeZip } from './zip.js';

let root: string;
beforeAll(async () => {
  await useCpu();
  root = await mkdtemp(join(tmpdir(), 'dl-formats-bad-'));
});
afterAll(() => rm(root, { recursive: true, force: true }));

const read = (bytes: Uint8Array) => () => readTorchStateDict(bytes, 'x/ae.pt');
const enc = (s: string) => new TextEncoder().encode(s);

/** A torch archive around `pkl` with the given storages (as torch lays it out). */
function archive(pkl: Uint8Array, storages: Record<string, Uint8Array> = {}, prefix = 'ae') {
  return writeZip([
    { name: `${prefix}/data.pkl`, data: pkl },
    { name: `${prefix}/byteorder`, data: enc('little') },
    ...Object.entries(storages).map(([k, data]) => ({ name: `${prefix}/data/${k}`, data })),
    { name: `${prefix}/version`, data: enc('3\n') },
  ]);
}

/** A pickle of {'w': _rebuild_tensor_v2(storage(key '0', numel), 0, size, stride, False, OrderedDict())}. */
function tensorPickle(numel: number, size: number[], stride: number[], offset = 0) {
  const w = new PickleWriter();
  w.op(0x80, 2).global('collections', 'OrderedDict');
  w.op(0x29, 0x52).put();
  w.str('w').global('torch._utils', '_rebuild_tensor_v2');
  w.op(0x28, 0x28)
    .str('storage')
    .global('torch', 'FloatStorage')
    .str('0')
    .str('cpu')
    .int(numel)
    .op(0x74, 0x51);
  w.int(offset).intTuple(size).intTuple(stride).op(0x89).get(0).op(0x29, 0x52, 0x74, 0x52, 0x73, 0x2e);
  return w.bytes();
}

describe('torch files', () => {
  it("a pickle that names os.system is refused, naming the global (made by Python's pickle.dumps)", async () => {
    const bytes = new Uint8Array(await readFile(`${FIXTURES}bad/hostile.pt`));
    expect(read(bytes)).toThrow(DictlearnError);
    expect(read(bytes)).toThrow(
      /x\/ae\.pt \(hostile\/data\.pkl\): pickle byte \d+: refuses global 'posix\.system': only collections\.OrderedDict, torch\._utils\._rebuild_tensor_v2/,
    );
  });

  it('legacy (non-zip), TorchScript and deflate-compressed files get their own clear errors', async () => {
    const f = async (n: string) => new Uint8Array(await readFile(`${FIXTURES}bad/${n}`));
    expect(read(await f('legacy.pt'))).toThrow(
      /x\/ae\.pt: is a legacy \(non-zip\) torch file, written by torch < 1\.6/,
    );
    expect(read(await f('torchscript.pt'))).toThrow(
      /is a TorchScript archive \(torch\.jit\.save\), not a state dict/,
    );
    expect(read(await f('deflated.pt'))).toThrow(
      /zip: entry '.*data\.pkl' is compressed \(method 8, deflate\); torch\.save writes stored entries/,
    );
    expect(read(enc('{"not": "torch"}'))).toThrow(/x\/ae\.pt: is not a torch file/);
  });

  it('path traversal, absolute names and duplicate or overlapping entries are refused', () => {
    const pkl = tensorPickle(1, [], []);
    for (const [name, why] of [
      ['../evil/data.pkl', "has a '..' segment"],
      ['/etc/data.pkl', 'is an absolute path'],
      ['C:/x/data.pkl', 'starts with a drive letter'],
      ['a\\..\\data.pkl', 'contains a backslash'],
    ]) {
      expect(() => readZip(writeZip([{ name, data: pkl }]), 'f.pt')).toThrow(`(path traversal refused)`);
      expect(() => readZip(writeZip([{ name, data: pkl }]), 'f.pt')).toThrow(why);
    }
    const twice = writeZip([
      { name: 'a/x', data: enc('1') },
      { name: 'a/x', data: enc('2') },
    ]);
    expect(() => readZip(twice, 'f.pt')).toThrow(/zip: entry 'a\/x' appears twice/);
    // A second central record pointing at the first entry's bytes (a "zip bomb" shape).
    const one = writeZip([
      { name: 'a/x', data: enc('payload') },
      { name: 'a/y', data: enc('payload') },
    ]);
    const v = new DataView(one.buffer);
    const cd = v.getUint32(one.length - 22 + 16, true);
    const second = cd + 46 + 3;
    v.setUint32(second + 42, 0, true); // a/y's local header offset → a/x's
    one.set(enc('a/x'), second + 46);
    expect(() => readZip(one, 'f.pt')).toThrow(/appears twice|does not match|overlap/);
  });

  it('declared sizes are checked against the file before anything is read', () => {
    const good = archive(tensorPickle(3, [3], [1]), { '0': new Uint8Array(12) });
    expect(Array.from(readTorchStateDict(good, 'x').tensors.w.values)).toEqual([0, 0, 0]);
    // a central-directory size of 2 GB for a 12-byte entry
    const huge = Uint8Array.from(good);
    const hv = new DataView(huge.buffer);
    const cd = hv.getUint32(huge.length - 22 + 16, true);
    hv.setUint32(cd + 20, 0x7fffffff, true);
    hv.setUint32(cd + 24, 0x7fffffff, true);
    expect(read(huge)).toThrow(
      /zip: entry 'ae\/data\.pkl' declares 2147483647 bytes at byte \d+, past the end of the entries/,
    );
    // a storage that claims 10^12 elements
    expect(read(archive(tensorPickle(1e12, [3], [1]), { '0': new Uint8Array(12) }))).toThrow(
      /storage '0' declares 1000000000000 F32 elements \(4000000000000 bytes\) but its entry holds 12 bytes/,
    );
    // a view that reaches past its storage, and a broadcast view with more elements than it
    expect(read(archive(tensorPickle(3, [4], [1]), { '0': new Uint8Array(12) }))).toThrow(
      /tensor 'w': size \[4\], stride \[1\] at offset 0 reach element 3 of a storage of 3/,
    );
    expect(read(archive(tensorPickle(3, [1000000, 1000000], [0, 0]), { '0': new Uint8Array(12) }))).toThrow(
      /takes the values read past the file's size|overlapping \(broadcast\) views/,
    );
    // CRC-32: one flipped bit in a tensor's bytes
    const flipped = Uint8Array.from(good);
    const at = readZip(flipped, 'x').entries.get('ae/data/0')!.dataOffset;
    flipped[at] ^= 1;
    expect(read(flipped)).toThrow(/zip: entry 'ae\/data\/0' fails its CRC-32 check/);
    // truncated anywhere: a clear error, never a RangeError
    for (let n = 0; n < good.length; n += 7) {
      expect(read(good.subarray(0, n))).toThrow(DictlearnError);
    }
  });
});

describe('the restricted unpickler', () => {
  const opts = { source: 'p', globals: { 'collections.OrderedDict': () => null } };
  const run = (bytes: number[]) => () => unpickle(Uint8Array.from(bytes), opts);
  it('refuses object-constructing and unknown opcodes, naming them', () => {
    expect(run([0x80, 2, 0x81])).toThrow(
      /p: pickle byte 2: opcode NEWOBJ \(0x81\) is not supported by the restricted unpickler \(it constructs an arbitrary object\)/,
    );
    expect(run([0x80, 2, 0x69])).toThrow(/opcode INST/);
    expect(run([0x80, 2, 0xff])).toThrow(/unknown opcode 0xff/);
    expect(run([0x80, 2, ...enc('cbuiltins\neval\n'), 0x2e])).toThrow(/refuses global 'builtins\.eval'/);
    // STACK_GLOBAL (protocol 4) goes through the same check
    expect(run([0x80, 4, 0x8c, 2, ...enc('os'), 0x8c, 6, ...enc('system'), 0x93, 0x2e])).toThrow(
      /refuses global 'os\.system'/,
    );
  });
  it('refuses calling a global that may only appear as a value, BUILD on other objects, and malformed streams', () => {
    const g = { source: 'p', globals: { 'torch.FloatStorage': null } };
    expect(() =>
      unpickle(Uint8Array.from([0x80, 2, ...enc('ctorch\nFloatStorage\n'), 0x29, 0x52, 0x2e]), g),
    ).toThrow(/global 'torch\.FloatStorage' may appear here but not be called/);
    expect(run([0x80, 2, 0x7d, 0x7d, 0x62, 0x2e])).toThrow(
      /BUILD \(setting the state of dict of 0\) is not allowed here/,
    );
    expect(run([0x80, 2, 0x68, 5])).toThrow(/memo slot 5 was never stored/);
    expect(run([0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f])).toThrow(
      /BINUNICODE needs 2147483647 bytes but only 0 remain/,
    );
    expect(run([0x80, 2, 0x4b, 1])).toThrow(/the stream ends without STOP/);
    expect(run([0x80, 2, 0x74])).toThrow(/no MARK on the stack/);
  });
});

describe('readers', () => {
  async function dlFolder(name: string, state: Parameters<typeof writeTorchStateDict>[0], config?: unknown) {
    const dir = join(root, name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'ae.pt'), writeTorchStateDict(state, 'ae'));
    if (config !== undefined) await writeFile(join(dir, 'config.json'), JSON.stringify(config));
    return dir;
  }
  const ae = (W: number[]) => ({
    bias: { dtype: 'F32' as const, shape: [2], values: [0, 0] },
    'encoder.weight': { dtype: 'F32' as const, shape: [3, 2], values: W },
    'encoder.bias': { dtype: 'F32' as const, shape: [3], values: [0, 0, 0] },
    'decoder.weight': { dtype: 'F32' as const, shape: [2, 3], values: [1, 2, 3, 4, 5, 6] },
  });

  it('NaN weights: an error naming the file and the tensor', async () => {
    const dir = await dlFolder('nan', ae([1, 2, 3, Number.NaN, 5, 6]));
    await expect(loadDictionary(dir)).rejects.toThrow(
      new RegExp(
        `${dir}/ae\\.pt: tensor 'encoder\\.weight' holds a non-finite value \\(NaN\\) at flat index 3`,
      ),
    );
  });

  it('unsupported classes and architectures are named', async () => {
    const dir = await dlFolder('new', ae([1, 2, 3, 4, 5, 6]), { trainer: { dict_class: 'AutoEncoderNew' } });
    await expect(readDictionary(dir)).rejects.toThrow(
      /config\.json: dictionary_learning class 'AutoEncoderNew' is not supported yet \(supported: AutoEncoder, AutoEncoderTopK/,
    );
    const sl = join(root, 'sl');
    await mkdir(sl, { recursive: true });
    await writeFile(join(sl, 'cfg.json'), JSON.stringify({ architecture: 'temporal', d_in: 2, d_sae: 3 }));
    await writeFile(
      join(sl, 'sae_weights.safetensors'),
      await readFile(`${FIXTURES}saelens/standard/sae_weights.safetensors`),
    );
    await expect(readDictionary(sl)).rejects.toThrow(
      /cfg\.json: SAELens architecture 'temporal' is not supported yet/,
    );
    await writeFile(
      join(sl, 'cfg.json'),
      JSON.stringify({ architecture: 'standard', d_in: 8, d_sae: 16, normalize_activations: 'layer_norm' }),
    );
    await expect(readDictionary(sl)).rejects.toThrow(
      /normalize_activations 'layer_norm' \(normalisation at run time\) is not supported yet/,
    );
    const sp = join(root, 'sp');
    await mkdir(sp, { recursive: true });
    await writeFile(
      join(sp, 'cfg.json'),
      JSON.stringify({ d_in: 8, num_latents: 16, k: 4, skip_connection: true }),
    );
    await writeFile(join(sp, 'sae.safetensors'), await readFile(`${FIXTURES}sparsify/topk/sae.safetensors`));
    await expect(readDictionary(sp)).rejects.toThrow(
      /sparsify skip connections \(skip_connection: true, W_skip\) are not supported yet/,
    );
  });

  it('a config field that disagrees with the weights is named', async () => {
    const dir = await dlFolder('mismatch', ae([1, 2, 3, 4, 5, 6]), {
      trainer: { dict_class: 'AutoEncoder', dict_size: 5 },
    });
    await expect(readDictionary(dir)).rejects.toThrow(
      /config\.json: field 'trainer\.dict_size' is 5 but .*ae\.pt holds 3/,
    );
    const bad = await dlFolder('badk', ae([1, 2, 3, 4, 5, 6]), {
      trainer: { dict_class: 'AutoEncoder', trainer_class: 'StandardTrainer', l1_penalty: -1 },
    });
    await expect(loadDictionary(bad)).rejects.toThrow(
      /badk\/config\.json: architecture 'standard': standard: field 'l1Penalty' must be ≥ 0, got -1/,
    );
  });
});
