#!/usr/bin/env python3
"""Writes src/testing/fixtures/philox.json: Philox-4x32-10 words and their uniform / normal /
unit-row mappings, computed by an implementation independent of dictlearn's (numpy, from the
Salmon et al. 2011 definition), so the host functions and every backend's random ops are checked
against something other than themselves.

The fixture is keyed by the raw Philox key [k0, k1] and counter word 2 (the stream), not by a
seed: how seeds and purposes map to keys is dictlearn's business (random.ts) and is tested
there; these mappings (key, counter) → words → values are fixed by the module comment of
random.ts:
  - block b of a draw has counter [b mod 2³², ⌊b / 2³²⌋, stream, 0]; element 4b + j is word j;
  - uniform: u = (w >> 8) · 2⁻²⁴, value = float32(low + float32(float32(high − low) · u));
  - normal: per word pair, u1 = ((w0 >> 8) + 1) · 2⁻²⁴, u2 = (w1 >> 8) · 2⁻²⁴,
    r = √(−2 ln u1), θ = 2π u2, z = float32(r cos θ), float32(r sin θ) (float64 before rounding),
    value = float32(mean + float32(std · z));
  - unit rows: the float32 normals of a row scaled by norm / √(Σ z²) in float64, rounded once.
Every key here has k1 < 2²¹, so the plain seed k0 + k1 · 2³² reaches it (the tests check that
through `philoxKey`, and say so if that ever changes).

Run: python3 packages/core/scripts/make-philox-fixture.py   (numpy only)
"""
import json
import os

import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox4x32_10(counter, key):
    """One block, in Python integers (exact 64-bit products)."""
    c0, c1, c2, c3 = (int(c) & MASK for c in counter)
    k0, k1 = (int(k) & MASK for k in key)
    for _ in range(10):
        p0 = M0 * c0
        p1 = M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & MASK, p1 & MASK, ((p0 >> 32) ^ c3 ^ k1) & MASK, p0 & MASK
        k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
    return [c0, c1, c2, c3]


# Random123 kat_vectors, philox4x32_10: the implementation must reproduce them before anything else.
KAT = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([MASK] * 4, [MASK, MASK], [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
]
for c, k, want in KAT:
    assert philox4x32_10(c, k) == want, (c, k)


def words(n, key, stream):
    out = []
    b = 0
    while len(out) < n:
        out += philox4x32_10([b & MASK, b >> 32, stream, 0], key)
        b += 1
    return np.array(out[:n], dtype=np.uint64)


def uniform(w, low, high):
    u = ((w >> np.uint64(8)).astype(np.float64) * 2.0 ** -24).astype(np.float32)
    scale = np.float32(np.float64(high) - np.float64(low))
    return (np.float32(low) + (scale * u).astype(np.float32)).astype(np.float32)


def standard_normal(n, key, stream):
    w = words(n + (n % 2), key, stream)
    u1 = ((w[0::2] >> np.uint64(8)).astype(np.float64) + 1.0) * 2.0 ** -24
    u2 = (w[1::2] >> np.uint64(8)).astype(np.float64) * 2.0 ** -24
    r = np.sqrt(-2.0 * np.log(u1))
    theta = 2.0 * np.pi * u2
    z = np.empty(n + (n % 2), dtype=np.float32)
    z[0::2] = (r * np.cos(theta)).astype(np.float32)
    z[1::2] = (r * np.sin(theta)).astype(np.float32)
    return z[:n]


def normal(n, key, stream, mean, std):
    z = standard_normal(n, key, stream)
    return (np.float32(mean) + (np.float32(std) * z).astype(np.float32)).astype(np.float32)


def unit_rows(rows, cols, key, stream, norm):
    z = standard_normal(rows * cols, key, stream).reshape(rows, cols).astype(np.float64)
    ss = np.sum(z * z, axis=1, keepdims=True)
    scale = np.where(ss > 0, norm / np.sqrt(ss), 0.0)
    return (z * scale).astype(np.float32).ravel()


def f32list(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32)]


blocks = [{"counter": c, "key": k, "words": w} for c, k, w in KAT]
# Counters with every word in play (block index ≥ 2³² in the high word, a stream, word 3).
for c, k in [([7, 1, 3, 0], [42, 0]), ([0, 0, 0xFFFFFFFF, 0], [5, 256]), ([123456, 0, 9, 1], [0xFFFFFFFF, 0x1FFFFF])]:
    blocks.append({"counter": c, "key": k, "words": philox4x32_10(c, k)})

# Draws: n values of stream `stream` under `key`. Sizes not a multiple of 4 (and odd, for
# normals) exercise the partial last block and the unpaired last normal.
draws = []
for key, stream, n, low, high, mean, std in [
    ([0, 0], 0, 16, 0.0, 1.0, 0.0, 1.0),
    ([42, 0], 3, 15, -1.0, 2.0, 1.0, 0.5),
    ([5, 256], 0, 7, -0.25, 0.75, 1.0, 0.5),
    ([0xFFFFFFFF, 0x1FFFFF], 7, 10, 0.0, 1.0, -3.0, 2.0),
    ([8, 0], 1, 257, 0.0, 1.0, 0.0, 1.0),
]:
    w = words(n, key, stream)
    draws.append({
        "key": key,
        "stream": stream,
        "n": n,
        "words": [int(v) for v in w],
        "uniform": {"low": low, "high": high, "values": f32list(uniform(w, low, high))},
        "normal": {"mean": mean, "std": std, "values": f32list(normal(n, key, stream, mean, std))},
    })

unit = []
for key, stream, rows, cols, norm in [([8, 0], 0, 3, 4, 0.1), ([3, 1], 2, 5, 7, 1.0)]:
    unit.append({"key": key, "stream": stream, "rows": rows, "cols": cols, "norm": norm,
                 "values": f32list(unit_rows(rows, cols, key, stream, norm))})

out = os.path.join(os.path.dirname(__file__), "..", "src", "testing", "fixtures", "philox.json")
with open(out, "w") as fh:
    json.dump({"generator": "packages/core/scripts/make-philox-fixture.py", "numpy": np.__version__,
               "blocks": blocks, "draws": draws, "unitRows": unit}, fh)
print(f"wrote {len(blocks)} blocks, {len(draws)} draws, {len(unit)} unit-row draws to {os.path.normpath(out)}")
