#!/usr/bin/env python3
"""Tiny llama-architecture GGUF with a real byte-level BPE vocabulary, for tokenizer tests.

    make_bpe_gguf.py --pre PRE --out PATH [--vocab bpe-vocab.json]
        Write a GGUF (tokenizer.ggml.model = gpt2, tokenizer.ggml.pre = PRE) with the vocabulary from
        bpe-vocab.json and tiny random llama weights (seeded), so llama.cpp loads it. Deterministic.

    make_bpe_gguf.py --spm-from GEMMA.gguf --out PATH
        Copy a SentencePiece vocabulary (tokens, scores, types, special ids) into a vocabulary-only GGUF
        with tokenizer.ggml.add_space_prefix = true (LLaMA 2-style), to cover the space-prefix paths.

    make_bpe_gguf.py --train bpe-vocab.json
        Train the vocabulary once with the `tokenizers` package (byte-level BPE, 3000 tokens) on the
        Python standard library's sources plus a multilingual sample, and write tokens + merges as JSON.
        The result is committed, so tests never depend on the local Python version's sources.

Special tokens are appended after the trained vocabulary: control tokens in the chat styles of
LLaMA 3 and ChatML, and two user-defined tokens (<think>, </think>) that llama.cpp matches even without
parse_special. Per-pre-tokenizer BOS/EOS flags vary so that every add_special path is covered.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CONTROL = [
    "<|endoftext|>",
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|im_start|>",
    "<|im_end|>",
]
USER_DEFINED = ["<think>", "</think>"]

# Extra training text so that merges also form inside non-Latin scripts, emoji and digits.
MULTILINGUAL = """
日本語のテキストと中文字符，한국어 문장도 있습니다。東京の天気は晴れです。北京今天下雨了。서울은 흐립니다.
Привет, мир! Как дела? Съешь же ещё этих мягких французских булок, да выпей чаю.
مرحبا بالعالم، كيف حالك؟ نمستے. नमस्ते दुनिया, आप कैसे हैं? यह एक परीक्षण है।
Καλημέρα κόσμε. שלום עולם. สวัสดีครับ ยินดีที่ได้รู้จัก
Emoji: 😀😃😄 👍👍🏽👍🏿 👨‍👩‍👧‍👦 🏳️‍🌈 👩🏾‍💻 ❤️ 🦀 🍕
Numbers: 3.14159265358979 1234567890 12,345,678 ١٢٣٤ ½ 2024-05-01 6.022e23
naïve café résumé façade Zürich São Paulo Ångström
"""


def train(out_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    files = []
    for root, dirs, names in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "test", "idlelib", "__pycache__"))
        for n in sorted(names):
            if n.endswith(".py"):
                files.append(os.path.join(root, n))
    files = files[:400]

    def corpus():
        for _ in range(20):
            yield MULTILINGUAL
        for f in files:
            with open(f, encoding="utf-8", errors="replace") as fh:
                yield fh.read()

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=3000,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = model["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump({"tokens": tokens, "merges": merges}, fh, ensure_ascii=False, indent=0)
        fh.write("\n")
    print(f"{out_path}: {len(tokens)} tokens, {len(merges)} merges from {len(files)} files", file=sys.stderr)


# tokenizer.ggml.add_bos_token / add_eos_token per pre-tokenizer (None: leave llama.cpp's default).
FLAGS = {
    "llama-bpe": (None, None),  # llama.cpp default for llama3: add BOS
    "qwen2": (False, None),
    "smollm": (None, None),  # default: no BOS
    "default": (True, None),
    "gpt-2": (None, True),  # append EOS
}


def make(pre, out_path, vocab_path):
    import numpy as np
    import gguf

    with open(vocab_path, encoding="utf-8") as fh:
        v = json.load(fh)
    tokens = list(v["tokens"]) + CONTROL + USER_DEFINED
    types = (
        [gguf.TokenType.NORMAL] * len(v["tokens"])
        + [gguf.TokenType.CONTROL] * len(CONTROL)
        + [gguf.TokenType.USER_DEFINED] * len(USER_DEFINED)
    )
    n_vocab = len(tokens)
    add_bos, add_eos = FLAGS.get(pre, (None, None))

    w = gguf.GGUFWriter(out_path, "llama")
    w.add_name(f"bpe-test-{pre}")
    w.add_context_length(256)
    w.add_embedding_length(16)
    w.add_block_count(1)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(8)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(v["merges"])
    w.add_bos_token_id(tokens.index("<|begin_of_text|>"))
    w.add_eos_token_id(tokens.index("<|end_of_text|>"))
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    if add_eos is not None:
        w.add_add_eos_token(add_eos)

    rng = np.random.default_rng(0)

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    n_embd, n_ff, head_dim = 16, 32, 8
    w.add_tensor("token_embd.weight", rand(n_vocab, n_embd))
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("output.weight", rand(n_vocab, n_embd))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", rand(2 * head_dim, n_embd))
    w.add_tensor("blk.0.attn_k.weight", rand(head_dim, n_embd))
    w.add_tensor("blk.0.attn_v.weight", rand(head_dim, n_embd))
    w.add_tensor("blk.0.attn_output.weight", rand(n_embd, 2 * head_dim))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("blk.0.ffn_gate.weight", rand(n_ff, n_embd))
    w.add_tensor("blk.0.ffn_up.weight", rand(n_ff, n_embd))
    w.add_tensor("blk.0.ffn_down.weight", rand(n_embd, n_ff))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_spm_prefix(src, out_path):
    import numpy as np
    import gguf

    r = gguf.GGUFReader(src)

    def arr(key):
        f = r.fields[key]
        return [f.parts[i] for i in f.data]

    tokens = [bytes(p).decode("utf-8") for p in arr("tokenizer.ggml.tokens")]
    scores = [float(p[0]) for p in arr("tokenizer.ggml.scores")]
    types = [int(p[0]) for p in arr("tokenizer.ggml.token_type")]

    def scalar(key):
        return int(r.fields[key].parts[r.fields[key].data[0]][0])

    w = gguf.GGUFWriter(out_path, "llama")
    w.add_name("spm-space-prefix-test")
    w.add_context_length(256)
    w.add_embedding_length(16)
    w.add_block_count(1)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(scalar("tokenizer.ggml.bos_token_id"))
    w.add_eos_token_id(scalar("tokenizer.ggml.eos_token_id"))
    w.add_unk_token_id(scalar("tokenizer.ggml.unknown_token_id"))
    w.add_add_space_prefix(True)
    w.add_tensor("dummy", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", metavar="VOCAB_JSON")
    ap.add_argument("--spm-from", metavar="GGUF")
    ap.add_argument("--pre")
    ap.add_argument("--out")
    ap.add_argument("--vocab", default=os.path.join(HERE, "bpe-vocab.json"))
    a = ap.parse_args()
    if a.train:
        train(a.train)
    elif a.spm_from and a.out:
        make_spm_prefix(a.spm_from, a.out)
    elif a.pre and a.out:
        make(a.pre, a.out, a.vocab)
    else:
        ap.error("give --train VOCAB_JSON, --pre PRE --out PATH, or --spm-from GGUF --out PATH")


if __name__ == "__main__":
    main()
