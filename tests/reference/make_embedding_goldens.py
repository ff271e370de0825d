"""Embedding goldens from llama.cpp: tests/golden/embeddings.json.

usage: python3 tests/reference/make_embedding_goldens.py GEMMA3.gguf SMOLLM2.gguf

For each model and text: llama_ref.py --embed mean (llama.cpp's own pooling over its final hidden
states, L2-normalized here), with the prompt ids llama.cpp tokenized. tests/embeddings.rs compares.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TEXTS = [
    "The cat sat on the mat.",
    "Stock markets fell sharply on Tuesday, dragging the index to its lowest close in a year.",
    "naïve café — 東京 🙂",
]


def main():
    gemma, smol = sys.argv[1:3]
    out = {}
    for name, path in [("gemma-3-270m-q4_k_m", gemma), ("smollm2-135m-instruct-q4_1", smol)]:
        rows = []
        for t in TEXTS:
            r = subprocess.run([sys.executable, os.path.join(HERE, "llama_ref.py"), "--model", path, "--prompt-text", t,
                                "--embed", "mean"], check=True, capture_output=True, text=True)
            rows.append({"text": t, **json.loads(r.stdout)})
        out[name] = rows
    with open(os.path.join(HERE, "..", "golden", "embeddings.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
