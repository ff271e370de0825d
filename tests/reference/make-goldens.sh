#!/usr/bin/env bash
# Regenerate the tokenizer goldens from llama.cpp (node-llama-cpp's prebuilt libllama).
#   tests/reference/make-goldens.sh [PATH_TO_GEMMA_GGUF]
# Needs `npm install` in tests/reference and the test Python (pkg-scripts/python-env).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="$("$root/pkg-scripts/python-env" | tail -n1)"
model="${1:-${BROWSER_LLM_MODEL:-$("$root/pkg-scripts/fetch-model" | tail -n1)}}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

node "$here/tokenize-golden.mjs" --model "$model" --name gemma3-270m --pieces
# The same SentencePiece vocabulary with add_space_prefix = true (LLaMA 2-style); slow (~40 s).
"$py" "$here/make_bpe_gguf.py" --spm-from "$model" --out "$tmp/spm-space-prefix.gguf"
node "$here/tokenize-golden.mjs" --model "$tmp/spm-space-prefix.gguf" --name spm-space-prefix
for pre in llama-bpe qwen2 smollm default gpt-2; do
  "$py" "$here/make_bpe_gguf.py" --pre "$pre" --out "$tmp/bpe-$pre.gguf"
  node "$here/tokenize-golden.mjs" --model "$tmp/bpe-$pre.gguf" --name "bpe-$pre"
done
