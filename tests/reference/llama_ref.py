#!/usr/bin/env python3
"""Golden greedy generations from llama.cpp itself, with raw logits at every step.

usage: python3 tests/reference/llama_ref.py --model M.gguf
           (--prompt-ids 2,818,5279 | --prompt-text TEXT | --prompt-file FILE)
           [--n-predict 32 | --force-ids 506,5279,...] [--no-repack] [--n-ctx 512] [--flash-attn off|on|auto] [--cache-type f16|q8_0] [--threads 1]
           [--full-logits-first] [--no-pieces] [--lib-dir DIR] [--out OUT.json] [-v]

The engine is the prebuilt llama.cpp that npm `node-llama-cpp` ships (package
@node-llama-cpp/linux-x64, installed by `npm install` in tests/reference/). Its shared libraries
(libllama, libggml, libggml-base and the per-ISA CPU backends libggml-cpu-*.so) are called directly
through ctypes, i.e. llama.cpp's own C API: llama_model_load_from_file, llama_init_from_model,
llama_decode, llama_get_logits_ith. Nothing is compiled or downloaded.

Generation: the prompt is decoded as one batch (n_batch = n_ubatch = n_ctx), then one token per
llama_decode call. The next token is argmax over the raw logits (ties -> lower id). EOG tokens do
not stop the run. CPU only, n_threads = n_threads_batch = --threads (1 by default), KV cache F16
(llama.cpp default; --cache-type q8_0 sets type_k = type_v = Q8_0, which llama.cpp runs only
with flash attention: pass --flash-attn on), swa_full = true (llama.cpp default), model params at llama.cpp defaults
(mmap, extra buffer types, i.e. CPU weight repacking, enabled).

Output JSON (stdout or --out): engine, settings, prompt_ids, gen_ids, and per generated step
`steps[i] = {"top5": [[id, logit, logprob] x5], "margin": top1_logit - top2_logit}`, where
steps[i] describes the distribution that produced gen_ids[i] (step 0 = after the prompt).
With --force-ids, gen_ids are the given ids (teacher forcing) and steps[i].top5[0] is llama.cpp's
own argmax at that step. With
--full-logits-first, `first_logits` holds all n_vocab raw logits of step 0 (float32 values as
decimal floats, repr-exact).

Only the C structs this build uses are declared below; their sizes are checked against the values
of llama.cpp's include/llama.h at the bundled commit (node-llama-cpp 3.22.1 -> llama.cpp de3ff81).
"""
import argparse
import array
import ctypes as C
import glob
import heapq
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_LIB_DIR = os.path.join(HERE, "node_modules", "@node-llama-cpp", "linux-x64", "bins", "linux-x64")

FA = {"auto": -1, "off": 0, "on": 1}
GGML_TYPE_F16 = 1
GGML_TYPE_Q8_0 = 8
CACHE_TYPES = {"f16": GGML_TYPE_F16, "q8_0": GGML_TYPE_Q8_0}


class ModelParams(C.Structure):
    _fields_ = [
        ("devices", C.c_void_p),
        ("tensor_buft_overrides", C.c_void_p),
        ("n_gpu_layers", C.c_int32),
        ("split_mode", C.c_int),
        ("load_mode", C.c_int),
        ("lazy_mode", C.c_int),
        ("main_gpu", C.c_int32),
        ("tensor_split", C.c_void_p),
        ("progress_callback", C.c_void_p),
        ("progress_callback_user_data", C.c_void_p),
        ("kv_overrides", C.c_void_p),
        ("vocab_only", C.c_bool),
        ("check_tensors", C.c_bool),
        ("use_extra_bufts", C.c_bool),
        ("no_host", C.c_bool),
        ("no_alloc", C.c_bool),
        ("load_mtp", C.c_bool),
    ]


class ContextParams(C.Structure):
    _fields_ = [
        ("n_ctx", C.c_uint32),
        ("n_batch", C.c_uint32),
        ("n_ubatch", C.c_uint32),
        ("n_seq_max", C.c_uint32),
        ("n_rs_seq", C.c_uint32),
        ("n_outputs_max", C.c_uint32),
        ("n_outputs_max_per_seq", C.c_uint32),
        ("n_threads", C.c_int32),
        ("n_threads_batch", C.c_int32),
        ("ctx_type", C.c_int),
        ("rope_scaling_type", C.c_int),
        ("pooling_type", C.c_int),
        ("attention_type", C.c_int),
        ("flash_attn_type", C.c_int),
        ("rope_freq_base", C.c_float),
        ("rope_freq_scale", C.c_float),
        ("yarn_ext_factor", C.c_float),
        ("yarn_attn_factor", C.c_float),
        ("yarn_beta_fast", C.c_float),
        ("yarn_beta_slow", C.c_float),
        ("yarn_orig_ctx", C.c_uint32),
        ("defrag_thold", C.c_float),
        ("cb_eval", C.c_void_p),
        ("cb_eval_user_data", C.c_void_p),
        ("type_k", C.c_int),
        ("type_v", C.c_int),
        ("abort_callback", C.c_void_p),
        ("abort_callback_data", C.c_void_p),
        ("embeddings", C.c_bool),
        ("offload_kqv", C.c_bool),
        ("no_perf", C.c_bool),
        ("op_offload", C.c_bool),
        ("swa_full", C.c_bool),
        ("kv_unified", C.c_bool),
        ("samplers", C.c_void_p),
        ("n_samplers", C.c_size_t),
        ("ctx_other", C.c_void_p),
    ]


class Batch(C.Structure):
    _fields_ = [
        ("n_tokens", C.c_int32),
        ("token", C.POINTER(C.c_int32)),
        ("embd", C.POINTER(C.c_float)),
        ("pos", C.POINTER(C.c_int32)),
        ("n_seq_id", C.POINTER(C.c_int32)),
        ("seq_id", C.POINTER(C.POINTER(C.c_int32))),
        ("logits", C.POINTER(C.c_int8)),
    ]


# sizeof() of the structs in include/llama.h at the bundled commit (x86-64 SysV).
assert C.sizeof(ModelParams) == 80, C.sizeof(ModelParams)
assert C.sizeof(ContextParams) == 160, C.sizeof(ContextParams)
assert C.sizeof(Batch) == 56, C.sizeof(Batch)

LOG_CB = C.CFUNCTYPE(None, C.c_int, C.c_char_p, C.c_void_p)


class Llama:
    def __init__(self, lib_dir, verbose=False):
        self.log = []
        self.verbose = verbose
        lib_dir = os.path.abspath(lib_dir)
        if not os.path.isdir(lib_dir):
            sys.exit(f"llama_ref: no prebuilt llama.cpp at {lib_dir}; run `npm install` in tests/reference/")

        def find(pattern):
            hits = sorted(glob.glob(os.path.join(lib_dir, pattern)))
            if not hits:
                sys.exit(f"llama_ref: {pattern} not found in {lib_dir}")
            return hits[0]

        mode = C.RTLD_GLOBAL
        self.base = C.CDLL(find("libggml-base.so"), mode=mode)
        self.ggml = C.CDLL(find("libggml.v*.so"), mode=mode)
        self.lib = L = C.CDLL(find("libllama.v*.so"), mode=mode)

        self._cb = LOG_CB(self._on_log)  # keep alive
        L.llama_log_set.argtypes = [LOG_CB, C.c_void_p]
        L.llama_log_set(self._cb, None)

        self.ggml.ggml_backend_load_all_from_path.argtypes = [C.c_char_p]
        self.ggml.ggml_backend_load_all_from_path(lib_dir.encode())
        L.llama_backend_init()

        L.llama_model_default_params.restype = ModelParams
        L.llama_context_default_params.restype = ContextParams
        L.llama_model_load_from_file.argtypes = [C.c_char_p, ModelParams]
        L.llama_model_load_from_file.restype = C.c_void_p
        L.llama_init_from_model.argtypes = [C.c_void_p, ContextParams]
        L.llama_init_from_model.restype = C.c_void_p
        L.llama_model_get_vocab.argtypes = [C.c_void_p]
        L.llama_model_get_vocab.restype = C.c_void_p
        L.llama_vocab_n_tokens.argtypes = [C.c_void_p]
        L.llama_vocab_n_tokens.restype = C.c_int32
        L.llama_tokenize.argtypes = [C.c_void_p, C.c_char_p, C.c_int32, C.POINTER(C.c_int32), C.c_int32, C.c_bool, C.c_bool]
        L.llama_tokenize.restype = C.c_int32
        L.llama_token_to_piece.argtypes = [C.c_void_p, C.c_int32, C.c_char_p, C.c_int32, C.c_int32, C.c_bool]
        L.llama_token_to_piece.restype = C.c_int32
        L.llama_batch_get_one.argtypes = [C.POINTER(C.c_int32), C.c_int32]
        L.llama_batch_get_one.restype = Batch
        L.llama_decode.argtypes = [C.c_void_p, Batch]
        L.llama_decode.restype = C.c_int32
        L.llama_get_logits_ith.argtypes = [C.c_void_p, C.c_int32]
        L.llama_get_logits_ith.restype = C.POINTER(C.c_float)
        L.llama_model_desc.argtypes = [C.c_void_p, C.c_char_p, C.c_size_t]
        L.llama_model_desc.restype = C.c_int32
        L.llama_print_system_info.restype = C.c_char_p
        L.llama_n_ctx.argtypes = [C.c_void_p]
        L.llama_n_ctx.restype = C.c_uint32
        L.llama_get_embeddings_seq.argtypes = [C.c_void_p, C.c_int32]
        L.llama_get_embeddings_seq.restype = C.POINTER(C.c_float)
        L.llama_model_n_embd.argtypes = [C.c_void_p]
        L.llama_model_n_embd.restype = C.c_int32
        L.llama_free.argtypes = [C.c_void_p]
        L.llama_model_free.argtypes = [C.c_void_p]

    def _on_log(self, level, text, _ud):
        s = text.decode("utf-8", "replace") if text else ""
        self.log.append(s)
        if self.verbose:
            sys.stderr.write(s)

    def load(self, path, n_ctx, threads, flash_attn, repack=True, embed_pooling=None, cache_type="f16"):
        L = self.lib
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        mp.use_extra_bufts = repack
        self.model = L.llama_model_load_from_file(os.fsencode(path), mp)
        if not self.model:
            sys.stderr.write("".join(self.log[-30:]))
            sys.exit(f"llama_ref: failed to load {path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_ctx
        cp.n_ubatch = n_ctx
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.flash_attn_type = FA[flash_attn]
        cp.type_k = CACHE_TYPES[cache_type]
        cp.type_v = CACHE_TYPES[cache_type]
        cp.offload_kqv = False
        cp.op_offload = False
        if embed_pooling is not None:
            cp.embeddings = True
            cp.pooling_type = embed_pooling
        self.cparams = cp
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            sys.stderr.write("".join(self.log[-30:]))
            sys.exit("llama_ref: llama_init_from_model failed")
        buf = C.create_string_buffer(256)
        L.llama_model_desc(self.model, buf, 256)
        self.desc = buf.value.decode()

    def tokenize(self, text):
        b = text.encode("utf-8")
        n_max = len(b) + 16
        out = (C.c_int32 * n_max)()
        n = self.lib.llama_tokenize(self.vocab, b, len(b), out, n_max, True, True)
        if n < 0:
            sys.exit("llama_ref: tokenization overflow")
        return list(out[:n])

    def piece(self, tok):
        buf = C.create_string_buffer(256)
        n = self.lib.llama_token_to_piece(self.vocab, tok, buf, 256, 0, True)
        return buf.raw[:max(n, 0)].decode("utf-8", "replace")

    def decode(self, ids):
        arr = (C.c_int32 * len(ids))(*ids)
        batch = self.lib.llama_batch_get_one(arr, len(ids))
        rc = self.lib.llama_decode(self.ctx, batch)
        if rc != 0:
            sys.exit(f"llama_ref: llama_decode returned {rc}")
        p = self.lib.llama_get_logits_ith(self.ctx, -1)
        return array.array("f", C.string_at(p, 4 * self.n_vocab))


def summarize(logits):
    """top-5 (ties -> lower id), margin top1-top2, log-softmax of the top-5."""
    n = len(logits)
    # sorted(..., reverse=True) is stable, so equal logits keep ascending id order.
    top = heapq.nlargest(5, range(n), key=logits.__getitem__)
    m = logits[top[0]]
    lse = m + math.log(math.fsum(math.exp(x - m) for x in logits))
    return {
        "top5": [[i, float(logits[i]), round(float(logits[i]) - lse, 6)] for i in top],
        "margin": float(logits[top[0]]) - float(logits[top[1]]),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt-ids", help="comma-separated token ids (used as given, nothing added)")
    g.add_argument("--prompt-text", help="text, tokenized by llama.cpp with add_special=parse_special=true")
    g.add_argument("--prompt-file", help="UTF-8 file with the prompt text (tokenized like --prompt-text)")
    ap.add_argument("--n-predict", type=int, default=32)
    ap.add_argument("--force-ids", help="teacher forcing: comma-separated continuation ids fed instead of the "
                    "argmax (n_predict = their count); steps still record llama.cpp's distribution")
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--flash-attn", choices=sorted(FA), default="off")
    ap.add_argument("--cache-type", choices=sorted(CACHE_TYPES), default="f16")
    ap.add_argument("--no-repack", action="store_true",
                    help="use_extra_bufts = false (no CPU weight repacking; default: llama.cpp's default, on)")
    ap.add_argument("--full-logits-first", action="store_true", help="store all logits of step 0")
    ap.add_argument("--no-pieces", action="store_true", help="omit token text pieces")
    ap.add_argument("--embed", choices=["mean", "cls", "last"],
                    help="print the prompt's pooled embedding (L2-normalized) instead of generating")
    ap.add_argument("--lib-dir", default=DEFAULT_LIB_DIR, help="directory of the prebuilt llama.cpp libraries")
    ap.add_argument("--out", help="output JSON path (default stdout)")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo llama.cpp's log to stderr")
    a = ap.parse_args(argv)

    ll = Llama(a.lib_dir, a.verbose)
    pooling = {"mean": 1, "cls": 2, "last": 3}.get(a.embed)
    if a.cache_type != "f16" and a.flash_attn != "on":
        sys.exit("llama_ref: a quantized KV cache needs --flash-attn on (llama.cpp refuses it without)")
    ll.load(a.model, a.n_ctx, a.threads, a.flash_attn, not a.no_repack, pooling, a.cache_type)
    if a.embed:
        text = a.prompt_text if a.prompt_text is not None else open(a.prompt_file, encoding="utf-8").read()
        ids = ll.tokenize(text)
        arr = (C.c_int32 * len(ids))(*ids)
        if ll.lib.llama_decode(ll.ctx, ll.lib.llama_batch_get_one(arr, len(ids))) != 0:
            sys.exit("llama_ref: llama_decode failed")
        n = ll.lib.llama_model_n_embd(ll.model)
        v = ll.lib.llama_get_embeddings_seq(ll.ctx, 0)
        vals = [float(v[i]) for i in range(n)]
        norm = sum(x * x for x in vals) ** 0.5
        out = json.dumps({"prompt_ids": ids, "pooling": a.embed, "embedding": [x / norm for x in vals]})
        if a.out:
            open(a.out, "w").write(out)
        else:
            print(out)
        return

    prompt_text = None
    if a.prompt_ids is not None:
        prompt = [int(x) for x in a.prompt_ids.replace(" ", "").split(",") if x]
    else:
        prompt_text = a.prompt_text if a.prompt_text is not None else open(a.prompt_file, encoding="utf-8").read()
        prompt = ll.tokenize(prompt_text)
    if len(prompt) + a.n_predict > a.n_ctx:
        sys.exit(f"llama_ref: prompt ({len(prompt)}) + n_predict ({a.n_predict}) exceeds n_ctx ({a.n_ctx})")

    forced = None
    if a.force_ids:
        forced = [int(x) for x in a.force_ids.replace(" ", "").split(",") if x]
        a.n_predict = len(forced)
    gen, steps, first_logits = [], [], None
    logits = ll.decode(prompt)
    for i in range(a.n_predict):
        if i == 0 and a.full_logits_first:
            first_logits = [float(x) for x in logits]
        s = summarize(logits)
        steps.append(s)
        tok = s["top5"][0][0] if forced is None else forced[i]
        gen.append(tok)
        if i + 1 < a.n_predict:
            logits = ll.decode([tok])

    log = "".join(ll.log)
    fa_line = [l.strip() for l in log.splitlines() if "flash_attn" in l and "=" in l]
    cpu_line = [l.strip() for l in log.splitlines() if "loaded CPU backend" in l]
    res = {
        "engine": ("llama.cpp via ctypes on the prebuilt libllama of npm node-llama-cpp "
                   f"(@node-llama-cpp/linux-x64 {pkg_version()}), CPU only, {a.threads} thread(s), "
                   f"greedy argmax over raw logits (ties -> lower id), KV cache {a.cache_type}, "
                   f"flash_attn {a.flash_attn}, n_ctx {a.n_ctx}, n_batch = n_ubatch = n_ctx, "
                   "swa_full true, default model params (mmap, CPU weight repacking)"),
        "llama_cpp": llama_cpp_info(),
        "settings": {"n_ctx": a.n_ctx, "n_ctx_effective": ll.lib.llama_n_ctx(ll.ctx), "n_predict": a.n_predict, "threads": a.threads,
                     "flash_attn": a.flash_attn, "type_k": a.cache_type, "type_v": a.cache_type,
                     "n_batch": a.n_ctx, "n_ubatch": a.n_ctx},
        "runtime": {"cpu_backend": os.path.basename(cpu_line[-1]) if cpu_line else None,
                    "flash_attn_log": fa_line,
                    "system_info": ll.lib.llama_print_system_info().decode()},
        "model_desc": ll.desc,
        "n_vocab": ll.n_vocab,
        "prompt_text": prompt_text,
        "prompt_ids": prompt,
        "gen_ids": gen,
        "teacher_forced": forced is not None,
        "steps": steps,
    }
    if not a.no_pieces:
        res["prompt_pieces"] = [ll.piece(t) for t in prompt]
        res["gen_pieces"] = [ll.piece(t) for t in gen]
    if first_logits is not None:
        res["first_logits"] = first_logits
    text = json.dumps(res, indent=1, ensure_ascii=False)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    else:
        print(text)
    return res


def pkg_version():
    try:
        with open(os.path.join(HERE, "node_modules", "@node-llama-cpp", "linux-x64", "package.json")) as f:
            return json.load(f)["version"]
    except OSError:
        return "unknown"


def llama_cpp_info():
    try:
        with open(os.path.join(HERE, "node_modules", "node-llama-cpp", "llama", "llama.cpp.info.json")) as f:
            info = json.load(f)
        return f"{info.get('llamaCppGithubRepo')} {info.get('tag')} (commit de3ff81 per its gitRelease.bundle)"
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
