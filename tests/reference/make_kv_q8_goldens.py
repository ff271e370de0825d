#!/usr/bin/env python3
"""Goldens for the q8_0 KV cache (`kvCache: "q8_0"`): llama.cpp's greedy runs with
`--cache-type-k q8_0 --cache-type-v q8_0` on both real models.

usage: python3 tests/reference/make_kv_q8_goldens.py [--gemma M.gguf] [--smollm2 M.gguf]
           [--out tests/golden/kv-q8_0.json]

Each prompt runs through llama_ref.py with a q8_0 cache, which llama.cpp computes only with flash
attention (`--flash-attn on`), at n_ctx 1024, 1 thread, the prompt as one batch, then 48 greedy
steps; per step the top-5 and the top1-top2 margin (`steps`, llama_ref.py's format). The prompts:
two short texts, and a long one (tests/reference/prompts/bridges.txt, ~580 tokens) whose
attention spans more than one GPU chunk of 256 positions (and Gemma 3's 512-position window).
For comparison each prompt's greedy tokens with llama.cpp's default f16 cache (flash attention
on) are recorded too (`f16_gen_ids`): where they part is how much q8_0 changes the generation.
--gemma / --smollm2 default to the last line printed by `pkg-scripts/fetch-model NAME`.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REF = os.path.join(HERE, "llama_ref.py")
sys.path.insert(0, HERE)
from refutil import run_json, sha256  # noqa: E402

N_CTX = 1024
N_PREDICT = 48
PROMPTS = [
    ("plain-france", {"text": "The capital of France is"}),
    ("plain-code", {"text": "def fibonacci(n):"}),
    ("long-bridges", {"file": os.path.join(HERE, "prompts", "bridges.txt")}),
]


def fetch(name):
    out = subprocess.run([os.path.join(REPO, "pkg-scripts", "fetch-model"), name], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def run(model, src, extra):
    cmd = [sys.executable, REF, "--model", model, "--n-ctx", str(N_CTX), "--n-predict", str(N_PREDICT), "--no-pieces",
           "--flash-attn", "on"] + extra
    cmd += ["--prompt-text", src["text"]] if "text" in src else ["--prompt-file", src["file"]]
    return run_json(cmd, "make_kv_q8_goldens")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gemma")
    ap.add_argument("--smollm2")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "golden", "kv-q8_0.json"))
    a = ap.parse_args(argv)
    models = {"gemma3-270m": a.gemma or fetch("gemma3-270m"), "smollm2-135m-instruct": a.smollm2 or fetch("smollm2-135m-instruct")}
    out = {"generator": "python3 tests/reference/make_kv_q8_goldens.py", "models": {}}
    for name, path in models.items():
        prompts = []
        for pname, src in PROMPTS:
            r = run(path, src, ["--cache-type", "q8_0"])
            f16 = run(path, src, [])
            assert f16["prompt_ids"] == r["prompt_ids"]
            out.setdefault("engine", r["engine"])
            out.setdefault("llama_cpp", r["llama_cpp"])
            out.setdefault("settings", r["settings"])
            same = next((i for i, (x, y) in enumerate(zip(r["gen_ids"], f16["gen_ids"])) if x != y), N_PREDICT)
            prompts.append({
                "name": pname,
                "prompt_ids": r["prompt_ids"],
                "gen_ids": r["gen_ids"],
                "f16_gen_ids": f16["gen_ids"],
                "same_as_f16_for": same,
                "min_margin": min(s["margin"] for s in r["steps"]),
                "steps": r["steps"],
            })
            print(f"{name} {pname}: {len(r['prompt_ids'])} prompt ids, q8_0 equals f16 for {same} of {N_PREDICT} tokens",
                  file=sys.stderr)
        out["models"][name] = {"file": os.path.basename(path), "sha256": sha256(path), "prompts": prompts}
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
