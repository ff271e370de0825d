#!/usr/bin/env python3
"""Regenerate tests/golden/gemma3-270m-long.json: Gemma 3 270M runs that cross the 512 window.

usage: python3 tests/reference/make_gemma3_long.py [--model M.gguf] [--out tests/golden/gemma3-270m-long.json]
           [--skip-cross-check]

Cases (greedy, llama_ref.py settings: CPU, 1 thread, f16 KV, flash attention off, n_ctx 1024):
  long-prompt : tests/reference/prompts/bridges.txt (plain English prose, ~580 tokens with BOS)
                + 64 generated tokens, so the prompt itself crosses the 512-token sliding window
  long-gen    : a ~10-token prompt + 600 generated tokens, so generation crosses position 512
Per step: top-5 raw logits (+ log-softmax) and the top1-top2 margin, for teacher-forced comparison
with a near-tie threshold. Cross-check: each continuation teacher-forced again with flash
attention on (llama.cpp's own setting sensitivity: steps where its argmax differs, max logit diff).
--model defaults to the last line printed by pkg-scripts/fetch-model.
"""
import argparse
import json
import os
import subprocess
import sys
from refutil import run_json, sha256  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REF = os.path.join(HERE, "llama_ref.py")
N_CTX = 1024
NEAR_TIE = 0.25
CASES = [
    {"name": "long-prompt", "prompt_file": "tests/reference/prompts/bridges.txt", "n_predict": 64},
    {"name": "long-gen", "prompt_text": "Here is a detailed guide to growing tomatoes at home. First,", "n_predict": 600},
]




def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "golden", "gemma3-270m-long.json"))
    ap.add_argument("--skip-cross-check", action="store_true")
    a = ap.parse_args(argv)
    model = a.model or subprocess.run([os.path.join(REPO, "pkg-scripts", "fetch-model")], capture_output=True,
                                      text=True, check=True).stdout.strip().splitlines()[-1]
    out_cases = []
    base = None
    for c in CASES:
        if "prompt_file" in c:
            src = ["--prompt-file", os.path.join(REPO, c["prompt_file"])]
        else:
            src = ["--prompt-text", c["prompt_text"]]
        common = [sys.executable, REF, "--model", model, "--n-ctx", str(N_CTX)] + src
        r = run_json(common + ["--n-predict", str(c["n_predict"])], "make_gemma3_long")
        base = r
        margins = [s["margin"] for s in r["steps"]]
        case = {
            "name": c["name"],
            "prompt_source": c.get("prompt_file", "prompt_text"),
            "prompt_text": r["prompt_text"],
            "n_ctx": N_CTX,
            "n_prompt": len(r["prompt_ids"]),
            "n_predict": c["n_predict"],
            "last_position": len(r["prompt_ids"]) + c["n_predict"] - 1,
            "prompt_ids": r["prompt_ids"],
            "gen_ids": r["gen_ids"],
            "gen_text": "".join(r["gen_pieces"]),
            "gen_pieces": r["gen_pieces"],
            "min_margin": round(min(margins), 6),
            f"near_tie_steps_margin_lt_{NEAR_TIE}": [i for i, m in enumerate(margins) if m < NEAR_TIE],
            "steps": r["steps"],
        }
        if not a.skip_cross_check:
            fa = run_json(common + ["--flash-attn", "on", "--no-pieces",
                                    "--force-ids", ",".join(map(str, r["gen_ids"]))], "make_gemma3_long")
            diffs = [i for i, (x, y) in enumerate(zip(r["steps"], fa["steps"])) if x["top5"][0][0] != y["top5"][0][0]]
            case["cross_check_flash_attn_on_teacher_forced"] = {
                "argmax_differs_at": [[i, round(margins[i], 4)] for i in diffs],
                "max_abs_top1_logit_diff": round(max(abs(x["top5"][0][1] - y["top5"][0][1])
                                                     for x, y in zip(r["steps"], fa["steps"])), 6),
                "note": "[step, margin here]; llama.cpp with flash attention on, same prompt, fed these gen_ids",
            }
        out_cases.append(case)
        print(f"{c['name']}: {case['n_prompt']} prompt + {c['n_predict']} gen, min margin {case['min_margin']:.3f}, "
              f"near ties {len(case[f'near_tie_steps_margin_lt_{NEAR_TIE}'])}", file=sys.stderr)
    golden = {
        "model": {"sha256": sha256(model), "source": "pkg-scripts/fetch-model (Gemma 3 270M Q4_K_M GGUF)",
                  "arch": "gemma3", "n_vocab": base["n_vocab"], "desc": base["model_desc"]},
        "engine": base["engine"],
        "llama_cpp": base["llama_cpp"],
        "settings": {k: v for k, v in base["settings"].items() if k != "n_predict"},
        "runtime": {"cpu_backend": base["runtime"]["cpu_backend"], "flash_attn_log": base["runtime"]["flash_attn_log"]},
        "tokenization": "llama_tokenize(add_special=true, parse_special=true): BOS prepended",
        "sampling": "greedy argmax over raw logits (ties -> lower id), EOG not a stop",
        "fields": ("steps[i] = distribution that produced gen_ids[i] (step 0 = after the prompt): top5 = "
                   "[[id, raw logit, log-softmax] x5], margin = top1 - top2 raw logit"),
        "generator": "python3 tests/reference/make_gemma3_long.py",
        "cases": out_cases,
    }
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(os.path.relpath(a.out, REPO), file=sys.stderr)


if __name__ == "__main__":
    main()
