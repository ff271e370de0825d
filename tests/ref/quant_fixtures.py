#!/usr/bin/env python3
"""Generate the quantization fixtures in tests/ref/quant/ (deterministic: fixed seeds).

    python tests/ref/quant_fixtures.py [--ggml-lib path/to/libggml-base.so]

Needs the gguf (0.19.0) and numpy packages: use the python that `pkg-scripts/python-env` prints.

Writes, for every ggml type T the engine decodes:
  T.blocks   random blocks (random quant bits, finite random f16/f32 scales), raw GGUF bytes
  T.f32      their dequantization by gguf-py (`gguf.quants.dequantize`), little-endian f32.
             gguf-py has no Q8_1 / Q8_K dequantizer (they are activation formats): for those the
             reference is ggml's formula `d * qs` (ggml's dequantize_row_q8_K when --ggml-lib is
             given).

With --ggml-lib (llama.cpp's libggml-base shared library, e.g. the one the npm package
@node-llama-cpp/linux-x64 ships, installed under tests/reference/node_modules), also writes the
activation-quantization oracle, from llama.cpp's own C functions:
  acts.f32           4 rows of 512 activations (random, ties, zero blocks, tiny/huge scales)
  acts.T.bytes       quantize_row_T_ref(row) for T in q8_0, q8_1, q8_K, rows back to back
The Q8_0 output is cross-checked against gguf-py's Q8_0 quantizer (documented bit-exact).
"""
import argparse
import ctypes
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

OUT = pathlib.Path(__file__).resolve().parent / "quant"

# byte offsets of the f16 fields (scales, mins) in one block, per ggml-common.h
F16_FIELDS = {
    "Q4_0": [0], "Q5_0": [0], "Q8_0": [0],
    "Q4_1": [0, 2], "Q5_1": [0, 2], "Q8_1": [0, 2], "Q4_K": [0, 2], "Q5_K": [0, 2],
    "Q2_K": [80, 82], "Q3_K": [108], "Q6_K": [208],
}
# gguf-py 0.19.0 lists Q8_1 as 40 bytes (f32 d and s, an old layout); ggml's block_q8_1 has been
# 36 bytes (f16 d and s) for a long time, and that is what the engine reads.
SIZE_FIX = {"Q8_1": (32, 36)}
TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"]


def random_scale(rng, n):
    """Finite scales of magnitude 2^-10 .. 2^-3 with random sign, plus one subnormal-ish f16."""
    mag = 2.0 ** rng.uniform(-10, -3, size=n)
    v = np.where(rng.integers(0, 2, size=n) == 0, mag, -mag)
    if n > 2:
        v[1] = 3.0e-6  # an f16 subnormal
    return v


def random_blocks(name, rng):
    qt = T[name]
    bs, ts = SIZE_FIX.get(name, GGML_QUANT_SIZES[qt])
    if name == "F32":
        return rng.uniform(-2, 2, size=64).astype("<f4").view(np.uint8)
    if name == "F16":
        return rng.uniform(-2, 2, size=64).astype("<f2").view(np.uint8)
    if name == "BF16":
        return quantize(rng.uniform(-2, 2, size=64).astype(np.float32), T.BF16).view(np.uint8).reshape(-1)
    n = 8 if bs == 32 else 3
    b = rng.integers(0, 256, size=(n, ts), dtype=np.uint8)
    for off in F16_FIELDS.get(name, []):
        b[:, off:off + 2] = random_scale(rng, n).astype("<f2").view(np.uint8).reshape(n, 2)
    if name == "Q8_K":
        b[:, 0:4] = random_scale(rng, n).astype("<f4").view(np.uint8).reshape(n, 4)
    return b.reshape(-1)


def reference_dequant(name, data, ggml):
    qt = T[name]
    bs, ts = SIZE_FIX.get(name, GGML_QUANT_SIZES[qt])
    if name in ("Q8_1", "Q8_K"):
        blocks = data.reshape(-1, ts)
        if name == "Q8_1":
            d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)
            qs = blocks[:, 4:36].copy().view(np.int8).astype(np.float32)
            return (qs * d).reshape(-1)
        if ggml is not None:
            out = np.zeros(len(blocks) * bs, dtype=np.float32)
            ggml.dequantize_row_q8_K(data.ctypes.data, out.ctypes.data, ctypes.c_int64(out.size))
            return out
        d = blocks[:, 0:4].copy().view("<f4")
        qs = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
        return (d * qs).reshape(-1)
    return np.asarray(dequantize(data, qt), dtype=np.float32).reshape(-1)


def activation_rows(rng):
    rows = [rng.standard_normal(512).astype(np.float32)]
    r = (rng.uniform(-1, 1, 512) * 1e-3).astype(np.float32)
    r[:32] = 0.0  # an all-zero Q8_0 block
    rows.append(r)
    r = rng.uniform(-300, 300, 512).astype(np.float32)
    r[256:] = 0.0  # an all-zero Q8_K block
    rows.append(r)
    # ties: amax = 127 (Q8_0 scale 1) / max = -127 (Q8_K iscale 1), then exact halves
    r = np.zeros(512, dtype=np.float32)
    r[0] = 127.0
    r[1:32] = np.arange(-15, 16) + 0.5
    r[256] = -127.0
    r[257:300] = np.arange(-21, 22) + 0.5
    r[32:256] = rng.uniform(-5, 5, 224)
    r[300:] = rng.uniform(-5, 5, 212)
    rows.append(r)
    return np.stack(rows).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ggml-lib", help="path of llama.cpp's libggml-base shared library")
    args = ap.parse_args()
    ggml = ctypes.CDLL(args.ggml_lib) if args.ggml_lib else None
    if ggml is not None:
        for fn in ["dequantize_row_q8_K", "quantize_row_q8_0_ref", "quantize_row_q8_1_ref", "quantize_row_q8_K_ref"]:
            getattr(ggml, fn).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            getattr(ggml, fn).restype = None
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(20260)
    for name in TYPES:
        data = random_blocks(name, rng)
        ref = reference_dequant(name, data, ggml)
        assert np.all(np.isfinite(ref)), name
        (OUT / f"{name}.blocks").write_bytes(data.tobytes())
        (OUT / f"{name}.f32").write_bytes(ref.astype("<f4").tobytes())
    if ggml is None:
        print("no --ggml-lib: activation fixtures left as they are")
        return
    acts = activation_rows(np.random.default_rng(20261))
    (OUT / "acts.f32").write_bytes(acts.astype("<f4").tobytes())
    for fn, bs, ts in [("q8_0", 32, 34), ("q8_1", 32, 36), ("q8_K", 256, 292)]:
        f = getattr(ggml, f"quantize_row_{fn}_ref")
        out = bytearray()
        for row in acts:
            row = np.ascontiguousarray(row)
            buf = np.zeros(len(row) // bs * ts, dtype=np.uint8)
            f(row.ctypes.data, buf.ctypes.data, ctypes.c_int64(len(row)))
            out += buf.tobytes()
        if fn == "q8_0":
            assert bytes(quantize(acts, T.Q8_0).tobytes()) == bytes(out), "gguf-py and ggml disagree on Q8_0"
        (OUT / f"acts.{fn}.bytes").write_bytes(bytes(out))
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
