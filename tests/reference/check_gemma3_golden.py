#!/usr/bin/env python3
"""Check llama_ref.py against the founders' golden tests/golden/gemma3-270m.json.

usage: python3 tests/reference/check_gemma3_golden.py [--model M.gguf] [--flash-attn off|on]
           [--out tests/golden/gemma3-270m-harness-check.json]

For every prompt of the golden: tokenizes the prompt text with llama.cpp and compares the ids,
runs 64 greedy steps and compares them with gen_ids_64, then teacher-forces gen_ids_64 and lists
the steps where this harness's argmax differs, with both margins, plus the largest difference
of the top-1 log-prob. --model defaults to the last line printed by pkg-scripts/fetch-model.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REF = os.path.join(HERE, "llama_ref.py")


def run_json(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-3000:])
        sys.exit(f"check_gemma3_golden: failed: {' '.join(cmd)}")
    return json.loads(p.stdout)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--flash-attn", default="off", choices=["off", "on"])
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    model = a.model or subprocess.run([os.path.join(REPO, "pkg-scripts", "fetch-model")], capture_output=True,
                                      text=True, check=True).stdout.strip().splitlines()[-1]
    g = json.load(open(os.path.join(REPO, "tests", "golden", "gemma3-270m.json"), encoding="utf-8"))
    rows = []
    engine = None
    for p in g["prompts"]:
        ref64 = p["gen_ids_64"]
        base = [sys.executable, REF, "--model", model, "--n-ctx", "512", "--flash-attn", a.flash_attn, "--no-pieces"]
        tok = run_json(base + ["--prompt-text", p["prompt"], "--n-predict", "1"])
        ids = ",".join(map(str, p["prompt_ids"]))
        free = run_json(base + ["--prompt-ids", ids, "--n-predict", "64"])
        tf = run_json(base + ["--prompt-ids", ids, "--force-ids", ",".join(map(str, ref64))])
        engine = free["engine"]
        first_diff = next((i for i, (x, y) in enumerate(zip(free["gen_ids"], ref64)) if x != y), None)
        diffs = [{"step": i, "harness_argmax": s["top5"][0][0], "golden": ref64[i],
                  "harness_margin": round(s["margin"], 4), "golden_margin": p["top1_top2_margin_per_step_64"][i]}
                 for i, s in enumerate(tf["steps"]) if s["top5"][0][0] != ref64[i]]
        dlp = max(abs(s["top5"][0][2] - p["top5_logprobs_per_step_64"][i][0][1]) for i, s in enumerate(tf["steps"])
                  if s["top5"][0][0] == p["top5_logprobs_per_step_64"][i][0][0])
        rows.append({
            "prompt": p["prompt"],
            "prompt_ids_match": tok["prompt_ids"] == p["prompt_ids"],
            "gen_ids_32_match": free["gen_ids"][:32] == p["gen_ids"],
            "gen_ids_64_first_diff": first_diff,
            "teacher_forced_argmax_differences": diffs,
            "max_abs_top1_logprob_diff": round(dlp, 5),
            "step0_top1": {"harness_logit": round(tf["steps"][0]["top5"][0][1], 5),
                           "golden_logit": p["first_top5"][0]["logit"]},
        })
    res = {"golden": "tests/golden/gemma3-270m.json", "harness_engine": engine,
           "golden_engine": g["engine"], "results": rows}
    text = json.dumps(res, indent=1, ensure_ascii=False)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
