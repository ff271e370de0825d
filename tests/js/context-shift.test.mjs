// contextOverflow: "shift" against llama.cpp's own context shift: the package (wasm, CPU) and
// llama-server started with --context-shift, both with a 128-token context, greedy from the same
// prompt token ids for 200 tokens (so the context fills and shifts more than once). The tokens
// agree up to the first near-tie of ours (two paths that round differently may flip there, and
// the continuations then legitimately differ). Then the same generation on the package's other
// paths: a chat request with context_overflow "shift", and "error" ending at the full context.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { Engine } from "browser-llm";
import { NEAR_TIE } from "./golden.mjs";
import { startLlamaServer } from "./llama-server.mjs";

const SERVER = process.env.LLAMA_SERVER;
const CHAT_MODEL = process.env.BROWSER_LLM_CHAT_MODEL;
if (!SERVER) throw new Error("set LLAMA_SERVER to llama.cpp's server binary (pkg-scripts/llama-server prints it)");
if (!CHAT_MODEL) throw new Error("set BROWSER_LLM_CHAT_MODEL to SmolLM2's path (pkg-scripts/fetch-model smollm2-135m-instruct)");

const CTX = 128;
const N = 200;
let server;
let engine;

before(async () => {
  server = await startLlamaServer(SERVER, CHAT_MODEL, { ctx: CTX, extra: ["--context-shift"] });
  engine = await Engine.load(fs.readFileSync(CHAT_MODEL), { backend: "cpu", contextLength: CTX, cache: false });
});
after(async () => {
  server?.close();
  await engine?.dispose?.();
});

test("a generation past the context shifts it as llama.cpp does: the same tokens up to a near-tie", async () => {
  // Counting: a continuation with wide margins (few near-ties), that a cache whose keys sit at
  // the wrong positions after a shift would derail.
  const ids = await engine.tokenize(`Counting: ${Array.from({ length: 20 }, (_, i) => i + 1).join(", ")},`);
  const ours = await engine.generate(ids, { maxTokens: N, temperature: 0, ignoreEos: true, contextOverflow: "shift", logprobs: true, topLogprobs: 2 });
  assert.equal(ours.tokenIds.length, N);
  assert.ok(ours.timings.contextShifts >= 2, `${ours.timings.contextShifts} shifts`);
  const res = await fetch(`${server.origin}/completion`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: ids, n_predict: N, temperature: 0, ignore_eos: true, cache_prompt: false, return_tokens: true }),
  });
  assert.ok(res.ok, `llama-server: ${res.status} ${await res.clone().text()}`);
  const theirs = (await res.json()).tokens;
  assert.equal(theirs.length, N, "llama-server generated past its context too");
  const first = ours.tokenIds.findIndex((t, i) => t !== theirs[i]);
  const margin = (i) => { const top = ours.logprobs[i].top_logprobs; return top[0].logprob - top[1].logprob; };
  if (first >= 0) assert.ok(margin(first) < NEAR_TIE, `token ${first} differs (ours ${ours.tokenIds[first]}, llama.cpp ${theirs[first]}) at margin ${margin(first)}`);
  const agreed = first < 0 ? N : first;
  console.log(`context shift: ${ours.timings.contextShifts} shifts in ${N} tokens at a ${CTX}-token context; ${agreed} of ${N} tokens equal to llama.cpp's${first < 0 ? "" : ` (then a near-tie, margin ${margin(first).toFixed(3)})`}`);
  assert.ok(agreed > CTX - ids.length, "the tokens agree past the first shift");
});

test("without shift the generation ends at the full context; a chat request shifts too; a bad mode is INVALID_ARGUMENT", async () => {
  const ids = await engine.tokenize("Once upon a time, in a small village by the sea,");
  const ended = await engine.generate(ids, { maxTokens: N, temperature: 0, ignoreEos: true });
  assert.equal(ended.finishReason, "length");
  // The last token comes from the logits of the last position: it is not stored.
  assert.equal(ids.length + ended.tokenIds.length, CTX + 1, "the context filled, then the generation ended");
  assert.equal(ended.timings.contextShifts, 0);
  const chat = await engine.chat.completions.create({
    messages: [{ role: "user", content: "Tell me a long story about a lighthouse keeper." }],
    max_tokens: N, temperature: 0, context_overflow: "shift",
  });
  assert.ok(chat.usage.completion_tokens > CTX / 2, `${chat.usage.completion_tokens} tokens`);
  await assert.rejects(engine.generate(ids, { contextOverflow: "roll" }), (e) => e.code === "INVALID_ARGUMENT");
});
