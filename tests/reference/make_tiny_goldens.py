#!/usr/bin/env python3
"""Regenerate tests/golden/tiny-<name>.json: tiny random models run through llama.cpp.

usage: python3 tests/reference/make_tiny_goldens.py [--only NAME ...] [--golden-dir DIR]
           [--work DIR] [--python PY] [--candidates 48] [--n-predict 32]

For every model of make_tiny_models.py: builds the GGUF twice (in two directories) and checks the
sha256 is the same (determinism), then tries --candidates deterministic prompts (BOS + 15 ids,
from random.Random(seed)) with llama_ref.py and keeps the first one with the largest smallest
top1-top2 margin over the 32 greedy steps among those whose generation contains no EOG/control
token and at least 6 distinct ids. The golden holds the generator args, sha256 and metadata, the
prompt, 32 greedy ids, per-step top-5 raw logits (+ log-softmax) and margins, the full step-0
logits, and cross-checks: the same continuation teacher-forced with flash attention on and with
CPU weight repacking off (how much llama.cpp's own settings move the logits).

PY (for make_tiny_models.py: numpy + gguf) defaults to the last line printed by
pkg-scripts/python-env. llama_ref.py runs under this script's interpreter (stdlib only).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
GEN = os.path.join(HERE, "make_tiny_models.py")
REF = os.path.join(HERE, "llama_ref.py")
PROMPT_LEN = 16


def run_json(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-3000:])
        sys.exit(f"make_tiny_goldens: failed: {' '.join(cmd)}")
    return json.loads(p.stdout)


def ref(model, prompt, extra, n_predict):
    return run_json([sys.executable, REF, "--model", model, "--prompt-ids", ",".join(map(str, prompt)),
                     "--n-predict", str(n_predict), "--n-ctx", "64", "--no-pieces"] + extra)


def candidates(meta, n):
    rng = random.Random(meta["seed"])
    lo, hi = 3, meta["n_vocab"] - len(meta.get("extra_control", ()))  # skip <unk> <s> </s>, control
    return [[meta["bos_id"]] + [rng.randrange(lo, hi) for _ in range(PROMPT_LEN - 1)] for _ in range(n)]


def compare(base, other):
    diffs = [i for i, (a, b) in enumerate(zip(base["steps"], other["steps"])) if a["top5"][0][0] != b["top5"][0][0]]
    dmax = max(abs(a["top5"][0][1] - b["top5"][0][1]) for a, b in zip(base["steps"], other["steps"]))
    return {"argmax_differs_at": diffs, "max_abs_top1_logit_diff": round(dmax, 6), "engine": other["engine"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+")
    ap.add_argument("--golden-dir", default=os.path.join(REPO, "tests", "golden"))
    ap.add_argument("--work", help="directory for the GGUFs (default: a temporary one)")
    ap.add_argument("--python", help="python with numpy + gguf (default: pkg-scripts/python-env)")
    ap.add_argument("--candidates", type=int, default=48)
    ap.add_argument("--n-predict", type=int, default=32)
    a = ap.parse_args(argv)

    py = a.python or subprocess.run([os.path.join(REPO, "pkg-scripts", "python-env")], capture_output=True,
                                    text=True, check=True).stdout.strip().splitlines()[-1]
    work = a.work or tempfile.mkdtemp(prefix="tiny-goldens-")
    names = a.only or subprocess.run([py, GEN, "--list"], capture_output=True, text=True,
                                     check=True).stdout.split()
    d1, d2 = os.path.join(work, "a"), os.path.join(work, "b")
    built = {}
    for d in (d1, d2):
        built[d] = run_json([py, GEN, d, "--json", "--only"] + names)
    for name in names:
        info, info2 = built[d1][name], built[d2][name]
        if info["sha256"] != info2["sha256"]:
            sys.exit(f"make_tiny_goldens: {name}: two builds differ ({info['sha256']} vs {info2['sha256']})")
        meta, model = info["metadata"], info["path"]
        eog = {meta["eos_id"], meta["unk_id"], meta["bos_id"]} | {
            meta["n_vocab"] - 1 - i for i in range(len(meta.get("extra_control", ())))}
        best = None
        for k, prompt in enumerate(candidates(meta, a.candidates)):
            r = ref(model, prompt, [], a.n_predict)
            if eog & set(r["gen_ids"]) or len(set(r["gen_ids"])) < 6:
                continue
            mm = min(s["margin"] for s in r["steps"])
            if best is None or mm > best[0]:
                best = (mm, k, prompt)
        if best is None:
            sys.exit(f"make_tiny_goldens: {name}: no candidate prompt qualifies")
        mm, k, prompt = best
        r = ref(model, prompt, ["--full-logits-first"], a.n_predict)
        forced = ["--force-ids", ",".join(map(str, r["gen_ids"]))]
        fa = ref(model, prompt, forced + ["--flash-attn", "on"], a.n_predict)
        nr = ref(model, prompt, forced + ["--no-repack"], a.n_predict)
        golden = {
            "model": {
                "file": f"tiny-{name}.gguf",
                "generator": "tests/reference/make_tiny_models.py",
                "generator_args": ["OUT_DIR", "--only", name],
                "sha256": info["sha256"],
                "packages": info["gguf"],
                "metadata": meta,
                "determinism": "built twice in separate directories: identical sha256",
            },
            "engine": r["engine"],
            "llama_cpp": r["llama_cpp"],
            "settings": r["settings"],
            "runtime": {"cpu_backend": r["runtime"]["cpu_backend"], "flash_attn_log": r["runtime"]["flash_attn_log"]},
            "sampling": f"greedy argmax over raw logits (ties -> lower id), {a.n_predict} tokens, EOG not a stop",
            "prompt_selection": (f"candidate {k} of {a.candidates} (random.Random({meta['seed']}), BOS + "
                                 f"{PROMPT_LEN - 1} ids): largest smallest margin, no EOG/control in gen_ids, "
                                 ">= 6 distinct gen ids"),
            "fields": ("steps[i] = distribution that produced gen_ids[i] (step 0 = after the prompt): top5 = "
                       "[[id, raw logit, log-softmax] x5], margin = top1 - top2 raw logit; first_logits = all "
                       "raw logits of step 0"),
            "n_vocab": r["n_vocab"],
            "prompt_ids": r["prompt_ids"],
            "gen_ids": r["gen_ids"],
            "min_margin": round(mm, 6),
            "steps": r["steps"],
            "cross_checks": {"flash_attn_on_teacher_forced": compare(r, fa),
                             "no_repack_teacher_forced": compare(r, nr)},
            "first_logits": r["first_logits"],
        }
        out = os.path.join(a.golden_dir, f"tiny-{name}.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump(golden, f, indent=1)
            f.write("\n")
        print(f"{name}: sha256 {info['sha256'][:16]} prompt #{k} min margin {mm:.3f} "
              f"gen {r['gen_ids'][:8]}... fa-on diffs {golden['cross_checks']['flash_attn_on_teacher_forced']['argmax_differs_at']} "
              f"-> {os.path.relpath(out, REPO)}")


if __name__ == "__main__":
    main()
