#!/usr/bin/env python3
"""Deterministic tiny random GGUF models, one per architecture, for decoder tests.

usage: PY=$(pkg-scripts/python-env | tail -n1)
       $PY tests/reference/make_tiny_models.py OUT_DIR [--only NAME ...] [--list] [--json]

Writes OUT_DIR/tiny-<name>.gguf for every model below (or only the named ones) and prints
"<name> <sha256> <path>" per model (with --json: the configs and hashes as JSON). Needs the PyPI
packages gguf (0.19.0) and numpy, i.e. the python from pkg-scripts/python-env. The bytes depend
only on this script, the seed of each model and those two packages: running it twice gives
identical files (the goldens in tests/golden/tiny-*.json record the sha256).

Models (all 32-multiple dims, byte-level SPM-style vocab "llama", weights random, scaled so the
residual stream stays O(1) and the logits are spread over a few units):
  llama       llama, GQA 4/2, separate output.weight, rope NORM (adjacent pairs), SwiGLU
  llama-tied  llama, GQA 4/2, tied embeddings (no output.weight)
  qwen2       qwen2, GQA 4/2, q/k/v biases, rope NEOX, separate output.weight
  qwen3       qwen3, GQA 4/1, QK-norm, head_dim 32 with n_embd 64 (q width 128 != n_embd), tied
  phi3        phi3, MHA 4/4, fused attn_qkv, fused gate+up in ffn_up ([gate; up], 2*n_ff rows),
              rope NEOX, no sliding window (llama.cpp disables Phi-3 SWA anyway)
  gemma3      gemma3, 6 layers, MQA 4/1, head_dim 32 with n_embd 64, QK-norm, post-norms, GEGLU,
              embeddings scaled by sqrt(n_embd), sliding window 8 on layers 0-4 (default
              pattern 6; layer 5 global), rope base 1e6 global / 10000 local (llama.cpp default
              for a missing gemma3.rope.freq_base_swa, as in the real Gemma 3 270M), tied output
"""
import argparse
import glob
import json
import os
import sys
from refutil import sha256  # noqa: E402

try:
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf import quants
except ImportError:
    sys.exit("make_tiny_models: needs numpy and gguf; run it with the python from pkg-scripts/python-env")

# Name -> config. "types" maps tensor roles to GGML types; norms and biases are always F32.
MODELS = {
    "llama": dict(
        arch="llama", seed=1001, n_vocab=384, n_embd=128, n_layer=3, n_head=4, n_head_kv=2,
        head_dim=32, n_ff=256, rope_base=10000.0, eps=1e-5, tied=False,
        types=dict(tok_embd=Q.Q8_0, q=Q.Q4_0, k=Q.Q4_1, v=Q.Q5_0, o=Q.Q8_0,
                   gate=Q.Q4_0, up=Q.Q5_0, down=Q.F16, output=Q.Q8_0)),
    "llama-tied": dict(
        arch="llama", seed=1002, n_vocab=320, n_embd=128, n_layer=2, n_head=4, n_head_kv=2,
        head_dim=32, n_ff=192, rope_base=10000.0, eps=1e-5, tied=True,
        types=dict(tok_embd=Q.Q8_0, q=Q.F16, k=Q.Q5_0, v=Q.Q4_1, o=Q.Q4_0,
                   gate=Q.Q5_0, up=Q.Q4_0, down=Q.Q8_0)),
    "qwen2": dict(
        arch="qwen2", seed=1003, n_vocab=448, n_embd=128, n_layer=2, n_head=4, n_head_kv=2,
        head_dim=32, n_ff=320, rope_base=1000000.0, eps=1e-6, tied=False, qkv_bias=True,
        types=dict(tok_embd=Q.Q4_0, q=Q.Q5_0, k=Q.Q8_0, v=Q.Q4_0, o=Q.Q4_1,
                   gate=Q.Q8_0, up=Q.Q4_0, down=Q.Q5_0, output=Q.F16)),
    "qwen3": dict(
        arch="qwen3", seed=1004, n_vocab=512, n_embd=64, n_layer=3, n_head=4, n_head_kv=1,
        head_dim=32, n_ff=192, rope_base=1000000.0, eps=1e-6, tied=True, qk_norm=True,
        types=dict(tok_embd=Q.Q8_0, q=Q.Q4_0, k=Q.Q5_0, v=Q.Q8_0, o=Q.Q4_0,
                   gate=Q.Q4_1, up=Q.Q5_0, down=Q.Q4_0)),
    "phi3": dict(
        arch="phi3", seed=1005, n_vocab=384, n_embd=128, n_layer=2, n_head=4, n_head_kv=4,
        head_dim=32, n_ff=256, rope_base=10000.0, eps=1e-5, tied=False, fused=True,
        # llama.cpp's vocab loader looks these up for any model whose general.name contains
        # "phi3" (real Phi-3 vocabularies have them)
        extra_control=("<|endoftext|>", "<|end|>"),
        types=dict(tok_embd=Q.Q4_1, qkv=Q.Q5_0, o=Q.Q8_0, up=Q.Q4_0, down=Q.Q8_0, output=Q.Q8_0)),
    "gemma3": dict(
        arch="gemma3", seed=1006, n_vocab=320, n_embd=64, n_layer=6, n_head=4, n_head_kv=1,
        head_dim=32, n_ff=192, rope_base=1000000.0, eps=1e-6, tied=True, qk_norm=True,
        post_norms=True, sliding_window=8,
        types=dict(tok_embd=Q.Q8_0, q=Q.Q5_0, k=Q.Q5_0, v=Q.Q8_0, o=Q.Q4_0,
                   gate=Q.Q5_0, up=Q.Q4_1, down=Q.Q8_0)),
}
BOS, EOS, UNK = 1, 2, 0
LOGIT_SCALE = 6.0
QK_GAIN = 1.0  # q and k projection gain (attention scores std ~1 before QK-norm effects)


def vocab(n_vocab, extra_control=()):
    """SPM-style vocab: <unk>, <s>, </s>, 256 byte tokens <0xXX>, short pieces, then extra_control
    (CONTROL tokens at the end of the vocab)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    pieces = []
    for a in letters:
        pieces.append("\u2581" + a)
    for a in letters:
        for b in letters:
            pieces.append(a + b)
            pieces.append("\u2581" + a + b)
    pieces = [p for p in pieces if p not in tokens]
    need = n_vocab - len(tokens) - len(extra_control)
    assert need <= len(pieces)
    tokens += pieces[:need] + list(extra_control)
    types += [gguf.TokenType.NORMAL] * need + [gguf.TokenType.CONTROL] * len(extra_control)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(need)] + [0.0] * len(extra_control)
    assert len(tokens) == n_vocab == len(set(tokens))
    return tokens, scores, types


def model_tensors(cfg):
    """Ordered list of (name, float32 array (rows=out, cols=in), ggml type)."""
    rng = np.random.default_rng(cfg["seed"])
    E, H, HK, D, F, V = cfg["n_embd"], cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"], cfg["n_ff"], cfg["n_vocab"]
    t = cfg["types"]

    def lin(out_f, in_f, gain):
        return (rng.standard_normal((out_f, in_f)) * (gain / np.sqrt(in_f))).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    def bias(n, s=0.2):
        return (s * rng.standard_normal(n)).astype(np.float32)

    out = []
    # Logits std ~ LOGIT_SCALE. Tied models use token_embd as the output head too; there the
    # embeddings are small (rms ~1/sqrt(n_embd) per element, ~1 per vector after gemma3's
    # sqrt(n_embd) scale) so that the current token's own embedding does not dominate the final
    # hidden state, and output_norm carries the logit scale instead.
    emb_std = 1.0 / np.sqrt(E) if cfg["tied"] else 1.0
    out.append(("token_embd.weight", (rng.standard_normal((V, E)) * emb_std).astype(np.float32), t["tok_embd"]))
    out.append(("output_norm.weight", norm(E) * (LOGIT_SCALE if cfg["tied"] else 1.0), Q.F32))
    if not cfg["tied"]:
        out.append(("output.weight", lin(V, E, LOGIT_SCALE), t["output"]))
    for i in range(cfg["n_layer"]):
        p = f"blk.{i}."
        out.append((p + "attn_norm.weight", norm(E), Q.F32))
        if cfg.get("fused"):
            wq, wk, wv = lin(H * D, E, QK_GAIN), lin(HK * D, E, QK_GAIN), lin(HK * D, E, 1.0)
            out.append((p + "attn_qkv.weight", np.concatenate([wq, wk, wv], axis=0), t["qkv"]))
        else:
            out.append((p + "attn_q.weight", lin(H * D, E, QK_GAIN), t["q"]))
            out.append((p + "attn_k.weight", lin(HK * D, E, QK_GAIN), t["k"]))
            out.append((p + "attn_v.weight", lin(HK * D, E, 1.0), t["v"]))
            if cfg.get("qkv_bias"):
                out.append((p + "attn_q.bias", bias(H * D), Q.F32))
                out.append((p + "attn_k.bias", bias(HK * D), Q.F32))
                out.append((p + "attn_v.bias", bias(HK * D), Q.F32))
        if cfg.get("qk_norm"):
            out.append((p + "attn_q_norm.weight", norm(D), Q.F32))
            out.append((p + "attn_k_norm.weight", norm(D), Q.F32))
        out.append((p + "attn_output.weight", lin(E, H * D, 1.0), t["o"]))
        if cfg.get("post_norms"):
            out.append((p + "post_attention_norm.weight", norm(E), Q.F32))
        out.append((p + "ffn_norm.weight", norm(E), Q.F32))
        if cfg.get("fused"):
            gate, up = lin(F, E, 1.0), lin(F, E, 1.0)
            out.append((p + "ffn_up.weight", np.concatenate([gate, up], axis=0), t["up"]))
        else:
            out.append((p + "ffn_gate.weight", lin(F, E, 1.0), t["gate"]))
            out.append((p + "ffn_up.weight", lin(F, E, 1.0), t["up"]))
        out.append((p + "ffn_down.weight", lin(E, F, 1.0), t["down"]))
        if cfg.get("post_norms"):
            out.append((p + "post_ffw_norm.weight", norm(E), Q.F32))
    return out


def metadata(name, cfg):
    m = {k: v for k, v in cfg.items() if k != "types"}
    m["types"] = {k: v.name for k, v in cfg["types"].items()}
    m["rope_type"] = "norm" if cfg["arch"] == "llama" else "neox"
    m["bos_id"], m["eos_id"], m["unk_id"] = BOS, EOS, UNK
    m["context_length"] = 256
    if cfg["arch"] == "gemma3":
        m["rope_base_swa"] = 10000.0
        m["swa_layers"] = [i for i in range(cfg["n_layer"]) if i % 6 < 5]
        m["attention_scale"] = "1/sqrt(head_dim)"
        m["embedding_scale"] = "sqrt(n_embd)"
    return m


def write(name, cfg, path, split_max_tensors=0):
    arch = cfg["arch"]
    w = gguf.GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
    w.add_name(f"tiny-{name}")
    w.add_context_length(256)
    w.add_embedding_length(cfg["n_embd"])
    w.add_block_count(cfg["n_layer"])
    w.add_feed_forward_length(cfg["n_ff"])
    w.add_head_count(cfg["n_head"])
    w.add_head_count_kv(cfg["n_head_kv"])
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_rope_dimension_count(cfg["head_dim"])
    w.add_rope_freq_base(cfg["rope_base"])
    w.add_layer_norm_rms_eps(cfg["eps"])
    if cfg.get("sliding_window"):
        w.add_sliding_window(cfg["sliding_window"])
    tokens, scores, types = vocab(cfg["n_vocab"], cfg.get("extra_control", ()))
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(EOS)
    w.add_unk_token_id(UNK)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    for tname, arr, qt in model_tensors(cfg):
        if qt == Q.F32:
            w.add_tensor(tname, arr)
        elif qt == Q.F16:
            w.add_tensor(tname, arr.astype(np.float16))
        else:
            w.add_tensor(tname, quants.quantize(arr, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", nargs="?")
    ap.add_argument("--only", nargs="+", choices=sorted(MODELS))
    ap.add_argument("--list", action="store_true", help="print the model names and exit")
    ap.add_argument("--json", action="store_true", help="print configs + sha256 as JSON")
    ap.add_argument("--split-max-tensors", type=int, default=0,
                    help="write each model as a split GGUF (NAME-0000K-of-0000N.gguf) of at most this many tensors a part")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(MODELS))
        return
    if not a.out_dir:
        ap.error("OUT_DIR is required")
    os.makedirs(a.out_dir, exist_ok=True)
    res = {}
    for name in a.only or list(MODELS):
        path = os.path.join(a.out_dir, f"tiny-{name}.gguf")
        write(name, MODELS[name], path, a.split_max_tensors)
        if a.split_max_tensors:
            parts = sorted(glob.glob(os.path.join(a.out_dir, f"tiny-{name}-*-of-*.gguf")))
            res[name] = {"parts": parts}
            if not a.json:
                print(name, *parts)
            continue
        res[name] = {"path": path, "sha256": sha256(path), "metadata": metadata(name, MODELS[name]),
                     "gguf": {"gguf": _pkg_version("gguf"), "numpy": np.__version__}}
        if not a.json:
            print(name, res[name]["sha256"], path)
    if a.json:
        print(json.dumps(res, indent=1))


def _pkg_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    main()
