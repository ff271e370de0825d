// Prompt-lookup speculation, measured as an app meets it: in headless Chromium, the package in a
// WorkerEngine on 1 CPU thread, greedy decoding of the same prompts with speculation off and on
// (on is the default), SmolLM2-135M-Instruct (chat template) and Gemma 3 270M (base model). Half
// the prompts ask for a reply that repeats the prompt (fix the spelling of a text, rename a
// function), half are free-form. Prints decode tok/s off and on, the ratio, tokens accepted per
// forward pass, and whether the tokens are the same. A benchmark, not a test: it asserts nothing
// about speed; it exits non-zero when a run failed or speculation changed the tokens.
//
//   node tests/bench/speculation.mjs --chat-model FILE.gguf --completion-model FILE.gguf [--tokens N] [--rounds N]

import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer } from "./serve.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const chat = opt("--chat-model", process.env.BROWSER_LLM_CHAT_MODEL);
const completion = opt("--completion-model", process.env.BROWSER_LLM_MODEL);
const tokens = Number(opt("--tokens", "96"));
const rounds = Number(opt("--rounds", "3"));
if (!chat || !completion || !(tokens > 1 && rounds > 0)) {
  console.error("usage: node tests/bench/speculation.mjs --chat-model FILE.gguf --completion-model FILE.gguf [--tokens N] [--rounds N]");
  process.exit(2);
}

const { server, origin } = await startServer(path.join(here, "speculation"), ["--chat-model", chat, "--completion-model", completion]);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-quic", "--no-first-run"] });
let failed = false;
try {
  const rows = [];
  let kernels = "";
  for (const model of ["smollm2-135m-instruct.gguf", "gemma-3-270m-q4_k_m.gguf"]) {
    // A fresh page per model.
    const page = await (await browser.newContext()).newPage();
    page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
    page.on("console", (m) => m.text().startsWith("[speculation] ") && console.error(m.text()));
    await page.goto(`${origin}/index.html`);
    await page.waitForFunction(() => window.benchReady === true);
    const r = await page.evaluate(([m, t, n]) => window.bench.run(m, t, n), [model, tokens, rounds]);
    rows.push(...r.rows);
    kernels = r.kernels;
    await page.close();
  }
  console.log(`Chromium ${browser.version()} headless; 1 thread (${kernels} kernels); greedy, up to ${tokens} tokens; median of ${rounds} rounds, speculation off and on alternating`);
  const line = (c) => console.log(`${c[0].padEnd(24)} ${c.slice(1).map((x, i) => String(x).padStart([8, 7, 11, 10, 7, 9, 6][i])).join(" ")}`);
  line(["model", "prompt", "kind", "tokens", "off_tok/s", "on_tok/s", "ratio", "per_pass", "same"]);
  for (const r of rows) line([r.model.replace(".gguf", ""), r.name, r.kind, r.tokens, r.off.toFixed(1), r.on.toFixed(1), r.ratio.toFixed(2) + "x", r.perPass.toFixed(2), r.same ? "yes" : "NO"]);
  if (rows.some((r) => !r.same)) {
    console.error("speculation.mjs: speculation changed the greedy tokens");
    failed = true;
  }
} catch (e) {
  console.error(`speculation.mjs: ${e?.stack ?? e}`);
  failed = true;
} finally {
  await browser.close().catch(() => {});
  server.kill();
}
process.exit(failed ? 1 : 0);
