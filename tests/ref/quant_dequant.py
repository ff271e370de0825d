#!/usr/bin/env python3
"""Dequantize raw GGUF rows with gguf-py, for tests/quant_ref.rs (run at test time).

    python tests/ref/quant_dequant.py TYPE IN OUT [TYPE IN OUT ...]

IN holds raw blocks of ggml type TYPE (e.g. Q4_K); OUT receives `gguf.quants.dequantize` of them
as little-endian f32.
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

args = sys.argv[1:]
assert len(args) % 3 == 0, __doc__
for ty, src, dst in zip(args[0::3], args[1::3], args[2::3]):
    data = np.fromfile(src, dtype=np.uint8)
    out = np.asarray(dequantize(data, GGMLQuantizationType[ty]), dtype=np.float32).reshape(-1)
    out.astype("<f4").tofile(dst)
