#!/usr/bin/env python3
"""Writes src/io/fixtures/sample.safetensors and sample.expected.json.

An independent writer for the safetensors reader's test. The bytes are laid out by hand from the
format's definition with numpy + json (and, where the `safetensors` package is installed, read
back with it as a cross-check): an 8-byte little-endian header length, the
JSON header padded with spaces to a multiple of 8, then the little-endian data buffer.
The expected values are computed by numpy (float16 -> float64; bfloat16 = the top 16 bits of a
float32, rounded to nearest even, widened back by numpy's uint32 view).

Run: python3 packages/core/scripts/make-safetensors-fixture.py   (numpy only)
"""
import json
import os
import struct

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
out_dir = os.path.join(here, "..", "src", "io", "fixtures")
os.makedirs(out_dir, exist_ok=True)

f32 = np.array([[1.5, -2.25, 3.0e-8], [1e30, -0.0, 7.125]], dtype=np.float32)
i32 = np.array([0, -1, 2147483647, -2147483648], dtype=np.int32)
f16 = np.array([1.0, -65504.0, 5.9604645e-08], dtype=np.float16)  # 1, -max, smallest subnormal
bf16_source = np.array([3.140625, -1.0e-3], dtype=np.float32)


def to_bf16_bits(a):
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # round to nearest even
    return rounded.astype(np.uint16)


bf16_bits = to_bf16_bits(bf16_source)
bf16_values = (bf16_bits.astype(np.uint32) << 16).view(np.float32)

tensors = [
    ("weights", "F32", f32),
    ("ids", "I32", i32),
    ("half", "F16", f16),
    ("brain", "BF16", bf16_bits),
]
metadata = {"format": "pt", "written_by": "make-safetensors-fixture.py"}
path = os.path.join(out_dir, "sample.safetensors")

header = {"__metadata__": metadata}
data = b""
for name, dtype, arr in tensors:
    raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
    header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
h = json.dumps(header, separators=(",", ":")).encode("utf-8")
h += b" " * ((8 - len(h) % 8) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    f.write(data)

# Where the safetensors package is installed, it checks the hand-written file independently
# (numpy has no bfloat16, so that tensor is skipped).
try:
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as st:
        for name, _, arr in tensors[:3]:
            assert np.array_equal(st.get_tensor(name), arr), name
    checked = "checked by the safetensors package"
except ImportError:
    checked = "safetensors package not installed; hand-written only"

expected = {
    "metadata": metadata,
    "tensors": {
        "weights": {"dtype": "F32", "shape": list(f32.shape), "values": [float(v) for v in f32.ravel()]},
        "ids": {"dtype": "I32", "shape": list(i32.shape), "values": [int(v) for v in i32.ravel()]},
        "half": {"dtype": "F16", "shape": list(f16.shape), "values": [float(v) for v in f16.astype(np.float64)]},
        "brain": {"dtype": "BF16", "shape": list(bf16_bits.shape), "values": [float(v) for v in bf16_values.astype(np.float64)],
                  "bits": [int(b) for b in bf16_bits]},
    },
    "half_bits": [int(b) for b in f16.view(np.uint16)],
    "file_bytes": os.path.getsize(path),
}
with open(os.path.join(out_dir, "sample.expected.json"), "w") as f:
    json.dump(expected, f, indent=1)
    f.write("\n")
print("wrote", path, os.path.getsize(path), "bytes;", checked)
