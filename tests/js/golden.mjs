// The Gemma 3 270M goldens (llama.cpp greedy tokens) and the near-tie rule of the Rust tests:
// our greedy tokens must equal llama.cpp's up to the first step where they differ, and there
// llama.cpp's own top-1/top-2 margin must be below NEAR_TIE (sound implementations with a
// different accumulation order flip such steps; see tests/decoder_gemma3.rs).

import { readFileSync } from "node:fs";

// Keep equal to NEAR_TIE in tests/common/tolerance.rs (the Rust tests' single definition).
export const NEAR_TIE = 0.25;

export const golden = JSON.parse(readFileSync(new URL("../golden/gemma3-270m.json", import.meta.url), "utf8"));

/** Check `ids` (greedy, from `prompt`) against the golden; returns a description of the match. */
export function checkGreedy(prompt, ids, n = 64) {
  const g = golden.prompts.find((p) => p.prompt === prompt);
  if (!g) throw new Error(`no golden for prompt ${JSON.stringify(prompt)}`);
  const want = g.gen_ids_64.slice(0, n);
  const margins = g.top1_top2_margin_per_step_64;
  if (ids.length !== want.length) throw new Error(`${prompt}: got ${ids.length} tokens, want ${want.length}`);
  const i = ids.findIndex((id, k) => id !== want[k]);
  if (i < 0) return `${prompt}: all ${n} tokens equal llama.cpp's`;
  if (!(margins[i] < NEAR_TIE)) {
    throw new Error(`${prompt}: step ${i}: got ${ids[i]}, llama.cpp ${want[i]} (its margin ${margins[i]} >= ${NEAR_TIE})`);
  }
  return `${prompt}: equal to llama.cpp's for ${i} tokens, then a near-tie (margin ${margins[i]})`;
}

/**
 * Teacher forcing through the public API, as the native tests do: at every golden step, a greedy
 * one-token generation from the prompt's ids plus llama.cpp's tokens so far (the engine runs only
 * the new token: its KV cache holds the prefix). Every step's token must equal llama.cpp's, or
 * llama.cpp's own margin there must be below NEAR_TIE; unlike a free run, a near-tie at one step
 * does not end the comparison. Returns a description; throws on a real difference.
 */
export async function checkTeacherForced(engine, prompt, n = 64) {
  const g = goldenOf(prompt);
  const got = [];
  for (let i = 0; i < n; i++) {
    const r = await engine.generate([...g.prompt_ids, ...g.gen_ids_64.slice(0, i)], { temperature: 0, maxTokens: 1, ignoreEos: true });
    if (i > 0 && r.usage.cachedTokens < g.prompt_ids.length + i - 1) {
      throw new Error(`${prompt}: step ${i} ran ${r.usage.promptTokens - r.usage.cachedTokens} prompt tokens again (the cached prefix was not reused)`);
    }
    got.push(r.tokenIds[0]);
  }
  return checkSteps(prompt, got);
}

/**
 * The tokens of teacher-forced steps 0..got.length (step i: the greedy token after the prompt and
 * llama.cpp's first i tokens) against llama.cpp's, with the near-tie rule at every step.
 */
export function checkSteps(prompt, got) {
  const g = goldenOf(prompt);
  const margins = g.top1_top2_margin_per_step_64;
  const flips = [];
  got.forEach((id, i) => {
    if (id === g.gen_ids_64[i]) return;
    if (!(margins[i] < NEAR_TIE)) {
      throw new Error(`${prompt}: teacher-forced step ${i}: got ${id}, llama.cpp ${g.gen_ids_64[i]} (its margin ${margins[i]} >= ${NEAR_TIE})`);
    }
    flips.push(`${i} (margin ${margins[i]})`);
  });
  return `${prompt}: ${got.length} teacher-forced steps, ${got.length - flips.length} equal llama.cpp's` +
    (flips.length ? `; near-ties at ${flips.join(", ")}` : "");
}

function goldenOf(prompt) {
  const g = golden.prompts.find((p) => p.prompt === prompt);
  if (!g) throw new Error(`no golden for prompt ${JSON.stringify(prompt)}`);
  return g;
}
