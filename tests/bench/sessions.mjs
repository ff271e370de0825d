// Saved sessions, measured as a returning user meets them: in headless Chromium, a page chats a
// conversation of about 1,000 tokens with `session` (so it is saved in browser storage), the page
// is reloaded, the model loads from storage, and the next turn runs (a) cold, nothing cached, and
// (b) after `restoreSession`. Prints the time to the first token of each (the restore included in
// (b)), the cached tokens, and the session file's size. A benchmark, not a test: it asserts
// nothing about speed; it exits non-zero when something failed to run, or when (b) reused fewer
// tokens than the session holds or answered differently from (a).
//
//   node tests/bench/sessions.mjs --chat-model FILE.gguf [--backend cpu|webgpu] [--tokens N] [--rounds N]

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
const model = opt("--chat-model", process.env.BROWSER_LLM_CHAT_MODEL);
const backend = opt("--backend", "cpu");
const target = Number(opt("--tokens", "1000"));
const rounds = Number(opt("--rounds", "2"));
if (!model || !["cpu", "webgpu"].includes(backend) || !(target > 0 && rounds > 0)) {
  console.error("usage: node tests/bench/sessions.mjs --chat-model FILE.gguf [--backend cpu|webgpu] [--tokens N] [--rounds N]");
  process.exit(2);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1];

const { server, origin } = await startServer(path.join(here, "sessions"), ["--chat-model", model]);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-quic", "--no-first-run", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader"],
});
let failed = false;
try {
  const page = await (await browser.newContext()).newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  const open = async () => {
    await page.goto(`${origin}/index.html`);
    await page.waitForFunction(() => window.benchReady === true);
    return page.evaluate((b) => window.bench.load(b), backend);
  };
  const loaded = await open();
  console.error(`[sessions] ${loaded.reason}`);
  const first = await page.evaluate((t) => window.bench.first(t), target);
  console.error(`[sessions] first visit: ${first.promptTokens} prompt tokens, saved ${first.saved.tokens} tokens in ${first.saved.bytes} bytes`);
  const reloaded = await open();
  const messages = [...first.messages, { role: "assistant", content: first.reply }, { role: "user", content: "Why?" }];
  const cold = [];
  const warm = [];
  for (let r = 0; r < rounds; r++) {
    cold.push(await page.evaluate((m) => window.bench.next(m, false), messages));
    warm.push(await page.evaluate((m) => window.bench.next(m, true), messages));
  }
  const c = median(cold.map((x) => x.ttftMs));
  const w = median(warm.map((x) => x.ttftMs));
  const rs = median(warm.map((x) => x.restoreMs));
  const v = await browser.version();
  console.log(`Chromium ${v} headless; ${path.basename(model)} on ${loaded.backend} (${loaded.reason}); median of ${rounds} rounds after a reload (model from browser storage in ${(reloaded.loadMs / 1000).toFixed(1)} s)`);
  console.log(`conversation: ${first.promptTokens} tokens on the first visit, session ${first.saved.tokens} tokens = ${(first.saved.bytes / 2 ** 20).toFixed(1)} MiB; next turn ${cold[0].promptTokens} tokens`);
  console.log(`time to first token, cold (prefill of ${cold[0].promptTokens - cold[0].cachedTokens} tokens): ${c.toFixed(0)} ms`);
  console.log(`time to first token, restored (restore ${rs.toFixed(0)} ms + prefill of ${warm[0].promptTokens - warm[0].cachedTokens} tokens; cached_tokens ${warm[0].cachedTokens}): ${w.toFixed(0)} ms = ${((100 * w) / c).toFixed(0)}% of cold`);
  if (warm.some((x) => x.cachedTokens < first.saved.tokens - 1 || x.restoredTokens !== first.saved.tokens)) {
    console.error("sessions.mjs: the restored run did not reuse the saved tokens");
    failed = true;
  }
  if (warm.some((x, i) => x.text !== cold[i].text)) {
    console.error(`sessions.mjs: the restored run answered differently: ${JSON.stringify(warm[0].text)} vs ${JSON.stringify(cold[0].text)}`);
    failed = backend === "cpu"; // the GPU may differ at a near-tie between prefill and cached rows
  }
} catch (e) {
  console.error(`sessions.mjs: ${e?.stack ?? e}`);
  failed = true;
} finally {
  await browser.close().catch(() => {});
  server.kill();
}
process.exit(failed ? 1 : 0);
