#!/usr/bin/env python3
"""Writes the file-source fixtures into src/fixtures/ with numpy, and expected.json.

.npy files come from numpy itself (np.save / np.lib.format.write_array, versions 1.0, 2.0 and
3.0); the safetensors files are laid out by hand from the format's definition (8-byte
little-endian header length, JSON header padded with spaces, data). expected.json holds, for
each good file, its shape and its values as the float32 numbers a reader must produce
(float16 and bfloat16 widened exactly, float64 rounded to float32).

Run: python3 packages/buffer/scripts/make-fixtures.py   (numpy only)
"""
import json
import os
import struct

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "..", "src", "fixtures")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(20260101)
expected = {}


def path(name):
    return os.path.join(out, name)


def record(name, arr):
    a = np.asarray(arr)
    expected[name] = {"shape": list(a.shape), "values": [float(v) for v in a.astype(np.float32).ravel()]}


def save_npy(name, arr, version=None):
    with open(path(name), "wb") as f:
        if version is None:
            np.save(f, arr)
        else:
            np.lib.format.write_array(f, arr, version=version)


# good files
f32 = rng.standard_normal((5, 4)).astype(np.float32)
save_npy("f32.npy", f32)
record("f32.npy", f32)

f16 = (rng.standard_normal((3, 4)) * 100).astype(np.float16)
save_npy("f16.npy", f16)
record("f16.npy", f16)

f64_3d = rng.standard_normal((2, 3, 4))  # float64, 3-D: rows = 2*3
save_npy("f64-3d.npy", f64_3d)
record("f64-3d.npy", f64_3d)

v2 = rng.standard_normal((2, 4)).astype(np.float32)
save_npy("v2.npy", v2, version=(2, 0))
record("v2.npy", v2)

v3 = rng.standard_normal((1, 4)).astype(np.float32)
save_npy("v3.npy", v3, version=(3, 0))
record("v3.npy", v3)

empty = np.zeros((0, 4), dtype=np.float32)
save_npy("empty.npy", empty)
record("empty.npy", empty)

# bad files
data = open(path("f32.npy"), "rb").read()
open(path("truncated.npy"), "wb").write(data[:-10])  # the last row loses 10 bytes
save_npy("fortran.npy", np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32)))
save_npy("int32.npy", np.arange(8, dtype=np.int32).reshape(2, 4))
save_npy("big-endian.npy", np.arange(8, dtype=">f4").reshape(2, 4))
save_npy("d8.npy", np.zeros((2, 8), dtype=np.float32))
save_npy("1d.npy", np.zeros(4, dtype=np.float32))
open(path("not-npy.npy"), "wb").write(b"PK\x03\x04 this is a zip file, not an array\n")
assert np.load(path("fortran.npy")).flags.f_contiguous


# safetensors, by hand
def write_safetensors(name, tensors):
    header, blob = {}, b""
    for key, dtype, arr in tensors:
        raw = np.ascontiguousarray(arr).tobytes()
        header[key] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path(name), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + blob)


acts = rng.standard_normal((6, 4)).astype("<f4")
write_safetensors("acts.safetensors", [("acts", "F32", acts)])
record("acts.safetensors", acts)

bf_src = rng.standard_normal((3, 4)).astype(np.float32)
bf_bits = ((bf_src.view(np.uint32).astype(np.uint64) + 0x7FFF + ((bf_src.view(np.uint32) >> 16) & 1)) >> 16).astype("<u2")
bf_vals = (bf_bits.astype(np.uint32) << 16).view(np.float32)
write_safetensors("acts-bf16.safetensors", [("hidden", "BF16", bf_bits)])
record("acts-bf16.safetensors", bf_vals)

multi_acts = rng.standard_normal((2, 2, 4)).astype("<f2")  # F16, 3-D
write_safetensors("multi.safetensors", [("ids", "I32", np.arange(3, dtype="<i4")), ("resid", "F16", multi_acts)])
record("multi.safetensors", multi_acts)

with open(path("expected.json"), "w") as f:
    json.dump(expected, f, indent=1)
    f.write("\n")
print("wrote", len(os.listdir(out)), "files into", os.path.normpath(out))
