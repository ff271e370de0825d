// End to end: the real demo page (www/), the built package, the real models, headless Chromium.
//   BROWSER_LLM_MODEL=/path/to/gemma.gguf BROWSER_LLM_CHAT_MODEL=/path/to/smollm2.gguf node --test e2e.test.mjs
// (pkg-scripts/fetch-model and pkg-scripts/fetch-model smollm2-135m-instruct print the paths.)
// Screenshots go to artifacts/ at the repository root.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { startServer, launchBrowser } from "./browser.mjs";
import { golden, checkGreedy, checkSteps } from "./golden.mjs";

const MODEL = process.env.BROWSER_LLM_MODEL;
if (!MODEL) throw new Error("set BROWSER_LLM_MODEL to Gemma 3 270M's path (pkg-scripts/fetch-model prints it)");
const CHAT_MODEL = process.env.BROWSER_LLM_CHAT_MODEL;
if (!CHAT_MODEL) throw new Error("set BROWSER_LLM_CHAT_MODEL to SmolLM2's path (pkg-scripts/fetch-model smollm2-135m-instruct prints it)");
const GEMMA = "gemma-3-270m-q4_k_m.gguf";
const SMOLLM2 = "smollm2-135m-instruct.gguf";
const ARTIFACTS = fileURLToPath(new URL("../../artifacts/", import.meta.url));
mkdirSync(ARTIFACTS, { recursive: true });

let srv;
let ctx;
let page;
const pageErrors = [];

before(async () => {
  srv = await startServer({ chat: CHAT_MODEL, completion: MODEL });
  ctx = await launchBrowser();
  await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(srv.url).origin });
  page = await ctx.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error" && !/favicon/.test(m.location().url)) console.log("page console:", m.text()); });
  await page.goto(srv.url);
});

after(async () => {
  await ctx?.close();
  srv?.close();
});

async function waitState(state, timeout = 300_000) {
  await page.waitForFunction((s) => document.body.dataset.state === s, state, { timeout });
}

/** Load one of the offered models ("gemma" or "smollm2") on `backend`. */
async function loadModel(backend, model = "gemma") {
  await page.check(`input[name=source][value=${model}]`);
  await page.selectOption("#backend", backend);
  await page.click("#load-btn");
  await page.waitForFunction(() => document.body.dataset.state !== "loading", null, { timeout: 300_000 });
  const error = await page.locator("#error").textContent();
  assert.equal(await page.getAttribute("body", "data-state"), "ready", `load failed: ${error}`);
}

async function setSettings(values) {
  await page.locator("#settings summary").click();
  for (const [id, v] of Object.entries(values)) await page.fill(`#${id}`, String(v));
  await page.locator("#settings summary").click();
}

/** The demo's preflight line once it is done for a model of `arch` (it runs when the choice changes). */
async function preflightVerdict(arch) {
  await page.waitForFunction((a) => {
    const p = document.querySelector("#preflight");
    return p.dataset.state === "done" && p.textContent.includes(`· ${a}, `);
  }, arch, { timeout: 120_000 });
  return page.locator("#preflight").textContent();
}

/** Type a prompt, press Enter (the keyboard path), wait for the reply; returns its element's data. */
async function generate(prompt) {
  const before = await page.locator(".msg[data-finish-reason]").count();
  await page.fill("#prompt", prompt);
  await page.press("#prompt", "Enter");
  await page.waitForFunction((n) => document.querySelectorAll(".msg[data-finish-reason]").length > n && document.body.dataset.state === "ready", before, { timeout: 300_000 });
  const last = page.locator(".msg[data-finish-reason]").last();
  return {
    tokenIds: JSON.parse((await last.getAttribute("data-token-ids")) ?? "null"),
    finishReason: await last.getAttribute("data-finish-reason"),
    text: await last.locator(".text").textContent(),
  };
}

test("the page opens in chat mode with SmolLM2 selected, sizes and memory shown", async () => {
  assert.ok(await page.isChecked("input[name=source][value=smollm2]"));
  assert.ok(await page.isChecked("input[name=mode][value=chat]"));
  assert.equal(await page.getAttribute("body", "data-mode"), "chat");
  assert.ok(await page.isVisible("#system-prompt"));
  assert.match(await page.locator("[data-model-meta=smollm2]").textContent(), /^98\.4 MB download, needs about \d+ MB of memory at 2048 tokens/);
  assert.match(await page.locator("[data-model-meta=gemma]").textContent(), /^253 MB download, needs about \d+ MB of memory at 2048 tokens/);
  // Before any download: the preflight's verdict and estimate for the chosen model.
  const verdict = await preflightVerdict("llama");
  assert.match(verdict, /^Fits · 98\.4 MB to download · runs on the CPU: about \d+ tokens\/s replying, \d+ tokens\/s reading · llama, Q4_1/, verdict);
  console.log(`preflight on the page: ${verdict} (${await page.locator("#preflight").getAttribute("title")})`);
  const sent = (await srv.stats()).byModel[SMOLLM2]?.bytes ?? 0;
  assert.ok(sent < statSync(CHAT_MODEL).size / 100, `the preflight fetched ${sent} bytes of SmolLM2`);
});

test("chat with SmolLM2: a system prompt, a greedy reply streamed into the page, copied with its button", async () => {
  await srv.resetStats();
  await loadModel("cpu", "smollm2");
  assert.equal((await srv.stats()).byModel[SMOLLM2].bytes, statSync(CHAT_MODEL).size, "every byte of SmolLM2 was downloaded exactly once");
  assert.equal(await page.locator("[data-field=\"chat template\"]").textContent(), "gguf");
  assert.equal(await page.getAttribute("body", "data-mode"), "chat");
  await setSettings({ temperature: 0, "max-tokens": 48, repeat: 1 });
  // A long system prompt: the prompt's token count proves it was sent as the first message.
  const system = "You are a friendly assistant for a sailing club. Answer in one or two short sentences. " +
    "Keep answers practical, kind and accurate; when unsure, say so. ".repeat(6);
  await page.fill("#system-prompt", system);
  // Count the reply's updates as it streams (one per chunk).
  await page.evaluate(() => {
    window.__updates = 0;
    new MutationObserver(() => { window.__updates += 1; }).observe(document.querySelector("#transcript"), { childList: true, subtree: true, characterData: true });
  });
  const r = await generate("What should I bring on my first day of sailing?");
  assert.ok(["stop", "length"].includes(r.finishReason), r.finishReason);
  const reply = r.text;
  console.log("SmolLM2 reply:", JSON.stringify(reply));
  assert.ok(reply.trim().length > 0, "a non-empty reply");
  assert.ok(await page.evaluate(() => window.__updates) > 5, "the reply streamed in several updates");
  assert.equal(await page.locator(".msg.user .text").last().textContent(), "What should I bring on my first day of sailing?");
  const stats = await page.locator("#stats").textContent();
  const prefill = Number(/prefill [\d.]+ tok\/s \((\d+) tokens\)/.exec(stats)?.[1]);
  assert.ok(prefill > 100, `the prompt had ${prefill} tokens: the system prompt was not sent? (${stats})`);
  assert.match(stats, /decode [\d.]+ tok\/s/);
  // The preflight's estimate (made before the download) beside the speeds this reply measured.
  const est = await page.evaluate(() => ({ ...document.querySelector("#preflight").dataset }));
  const [pf, dc] = [Number(/prefill ([\d.]+) tok/.exec(stats)[1]), Number(/decode ([\d.]+) tok/.exec(stats)[1])];
  console.log(`SmolLM2 on the CPU: preflight estimated decode ${Number(est.decode).toFixed(1)}, prefill ${Number(est.prefill).toFixed(1)} tok/s; ` +
    `measured decode ${dc}, prefill ${pf} tok/s (${prefill} tokens): ${(est.decode / dc).toFixed(2)}x / ${(est.prefill / pf).toFixed(2)}x`);

  const copy = page.locator(".msg.model").last().getByRole("button", { name: "Copy this reply" });
  await copy.click();
  await page.waitForFunction(() => document.querySelector(".msg.model:last-child button.copy")?.dataset.copied === "true");
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), reply);
  await page.screenshot({ path: `${ARTIFACTS}demo-chat-desktop.png`, fullPage: true });

  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the chat page is ${overflow}px wider than a phone's viewport`);
  // A loaded model's panel is one line on a phone (the load button folded away with it).
  for (const id of ["#model-summary", "#send-btn", "#stop-btn", "#system-prompt", "#prompt"]) {
    const box = await page.locator(id).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `${id} is within the phone's width: ${JSON.stringify(box)}`);
  }
  await page.screenshot({ path: `${ARTIFACTS}demo-chat-phone.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
});

test("reload continues the chat: the transcript and its saved session come back, and the next reply reuses every restored token", async () => {
  const before = await page.locator("#transcript .msg .text").allTextContents();
  const firstPrompt = Number(await page.locator(".msg.model").last().getAttribute("data-prompt-tokens"));
  await page.reload();
  await loadModel("cpu", "smollm2");
  await page.waitForFunction(() => !document.querySelector("#session-note").hidden);
  const note = await page.locator("#session-note").textContent();
  const restored = Number(/(\d+) tokens restored/.exec(note)?.[1]);
  assert.ok(restored > firstPrompt, `restored ${restored} tokens, the first prompt had ${firstPrompt}: ${note}`);
  assert.deepEqual(await page.locator("#transcript .msg .text").allTextContents(), before, "the transcript came back");
  const r = await generate("And what should I wear?");
  assert.ok(r.text.trim().length > 0);
  const last = page.locator(".msg.model").last();
  const cached = Number(await last.getAttribute("data-cached-tokens"));
  const prompt = Number(await last.getAttribute("data-prompt-tokens"));
  assert.equal(cached, restored, "the reply after the reload reused every restored token");
  const stats = await page.locator("#stats").textContent();
  assert.equal(Number(/prefill [\d.]+ tok\/s \((\d+) tokens\)/.exec(stats)?.[1]), prompt - cached, stats);
  console.log(`after a reload: ${note} The next reply: ${prompt} prompt tokens, ${cached} cached, ${prompt - cached} run.`);
  await page.screenshot({ path: `${ARTIFACTS}demo-chat-continued.png`, fullPage: true });
  // Clear forgets the conversation and its session.
  await page.click("#clear-btn");
  assert.equal(await page.locator("#transcript .msg").count(), 0);
  assert.ok(await page.locator("#session-note").isHidden());
  assert.equal(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("browser-llm-demo:conversation:")).length), 0);
});

test("two demo tabs share one engine: the second tab's model is the first tab's (no bytes sent), and it chats", async () => {
  const second = await ctx.newPage();
  second.on("pageerror", (e) => pageErrors.push(e.message));
  await second.goto(srv.url);
  await srv.resetStats();
  await second.check("input[name=source][value=smollm2]");
  await second.selectOption("#backend", "cpu");
  await second.click("#load-btn");
  await second.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 120_000 });
  assert.equal(await second.locator("[data-field=shared]").textContent(), "2 tabs; another tab holds the model");
  assert.equal((await srv.stats()).modelRequests, 0, "the second tab loaded nothing");
  await second.fill("#prompt", "Say hi.");
  await second.press("#prompt", "Enter");
  await second.waitForFunction(() => document.querySelector(".msg[data-finish-reason]") && document.body.dataset.state === "ready", null, { timeout: 120_000 });
  assert.ok((await second.locator(".msg.model .text").last().textContent()).trim().length > 0);
  await second.click("#clear-btn");
  await second.close();
});

test("picking Gemma switches to completion mode", async () => {
  await page.check("input[name=source][value=gemma]");
  assert.equal(await page.getAttribute("body", "data-mode"), "completion");
  assert.ok(await page.isChecked("input[name=mode][value=completion]"));
  assert.ok(await page.isHidden("#system-prompt"));
  assert.equal(await page.locator("#send-btn").textContent(), "Generate");
  await page.check("input[name=source][value=smollm2]");
  assert.equal(await page.getAttribute("body", "data-mode"), "chat");
  await page.check("input[name=source][value=gemma]");
});

test("Gemma: cold load through the Worker: progress with phases, every byte downloaded once", async () => {
  assert.match(await preflightVerdict("gemma3"), /^Fits · 253 MB to download · runs on the CPU/);
  await srv.resetStats();
  const phases = new Set();
  const poll = setInterval(async () => {
    const t = await page.locator("#progress-text").textContent().catch(() => "");
    const m = /^(\w+)/.exec(t ?? "");
    if (m) phases.add(m[1]);
  }, 50);
  await loadModel("cpu");
  clearInterval(poll);
  const stats = await srv.stats();
  assert.equal(stats.modelBytes, statSync(MODEL).size, "every byte of the model was downloaded exactly once");
  assert.equal(stats.byModel[GEMMA].bytes, statSync(MODEL).size);
  assert.equal(await page.getAttribute("body", "data-mode"), "completion");
  assert.ok(phases.has("Downloading"), `progress phases seen: ${[...phases]}`);
  assert.match(await page.locator("[data-field=backend]").textContent(), /cpu/);
  assert.match(await page.locator("[data-field=why]").textContent(), /CPU/);
  // The demo page is cross-origin isolated: the threaded build runs in the Worker, on the cores
  // (up to 4), its threads nested Workers (the golden tests below use it); Chromium has relaxed
  // SIMD, so it is the threaded relaxed-SIMD build.
  const cores = Math.min(4, await page.evaluate(() => navigator.hardwareConcurrency));
  assert.match(await page.locator("[data-field=kernels]").textContent(),
    cores > 1 ? new RegExp(`WebAssembly relaxed-simd, ${cores} threads$`) : /WebAssembly relaxed-simd, 1 thread/);
});

/**
 * Teacher forcing through the package on this page, as the native tests do: a WorkerEngine of the
 * package the demo imports (the import map's "browser-llm") loads the stored model on `backend`,
 * and for each golden prompt and step generates one greedy token after the prompt and llama.cpp's
 * tokens so far (the KV cache holds the prefix). Returns each prompt's tokens.
 */
async function teacherForced(backend, steps) {
  return page.evaluate(async ({ url, backend, prompts, steps }) => {
    const llm = await import("browser-llm");
    const e = await llm.WorkerEngine.load(url, { backend, contextLength: 256 });
    try {
      const out = [];
      for (const p of prompts) {
        const got = [];
        for (let i = 0; i < steps; i++) {
          const r = await e.generate([...p.prompt_ids, ...p.gen_ids_64.slice(0, i)], { temperature: 0, maxTokens: 1, ignoreEos: true });
          got.push(r.tokenIds[0]);
        }
        out.push(got);
      }
      return out;
    } finally {
      await e.dispose();
    }
  }, { url: new URL(`/models/${GEMMA}`, srv.url).href, backend, prompts: golden.prompts, steps });
}

test("greedy generation through the Worker engine (cpu): the page's reply, and every teacher-forced step of the golden prompts, equal llama.cpp's", async () => {
  await setSettings({ temperature: 0, "max-tokens": 64, repeat: 1 });
  const r = await generate(golden.prompts[0].prompt);
  console.log("cpu, the page's reply:", checkGreedy(golden.prompts[0].prompt, r.tokenIds));
  const forced = await teacherForced("cpu", 64);
  golden.prompts.forEach((p, i) => console.log("cpu:", checkSteps(p.prompt, forced[i])));
  const stats = await page.locator("#stats").textContent();
  assert.match(stats, /prefill [\d.]+ tok\/s .* decode [\d.]+ tok\/s/);
});

test("stop mid-stream leaves the engine usable", async () => {
  await setSettings({ temperature: 0.8, "max-tokens": 400, seed: 7 });
  await page.fill("#prompt", "Once upon a time");
  await page.click("#send-btn");
  await waitState("generating");
  await page.waitForFunction(() => (document.querySelector(".msg:last-child .gen")?.textContent.length ?? 0) > 20, null, { timeout: 120_000 });
  await page.click("#stop-btn");
  await waitState("ready", 30_000);
  const last = page.locator(".msg[data-finish-reason]").last();
  assert.equal(await last.getAttribute("data-finish-reason"), "abort");
  assert.ok(JSON.parse(await last.getAttribute("data-token-ids")).length < 400);
  await setSettings({ temperature: 0, "max-tokens": 8, seed: "" });
  const r = await generate(golden.prompts[0].prompt);
  assert.deepEqual(r.tokenIds, golden.prompts[0].gen_ids_64.slice(0, 8));
});

test("reload: the model loads from browser storage with no weight request", async () => {
  await page.reload();
  assert.equal(await page.getAttribute("body", "data-mode"), "chat", "a reloaded page opens in chat mode");
  await srv.resetStats();
  await loadModel("cpu");
  const stats = await srv.stats();
  assert.equal(stats.modelRequests, 0, `weight requests on a warm load: ${JSON.stringify(stats.requests)}`);
  await page.locator("#cache-panel summary").click();
  await page.waitForFunction(() => document.querySelectorAll("#cache-list li button").length > 0, null, { timeout: 30_000 });
  assert.match(await page.locator("#cache-list").textContent(), /gemma-3-270m-q4_k_m\.gguf · 253 MB/);
  assert.match(await page.locator("#cache-list").textContent(), /smollm2-135m-instruct\.gguf · 98\.4 MB/);
  await page.screenshot({ path: `${ARTIFACTS}demo-warm-load.png`, fullPage: true });
});

test("webgpu backend (SwiftShader): the page's greedy reply and every teacher-forced step equal the golden's", async () => {
  // SwiftShader runs WebGPU on the CPU at about 0.5-1 token/s for this model on CI's 2 cores, so
  // this is the slowest test (8 tokens through the page, then 4 x 8 teacher-forced steps).
  await loadModel("webgpu");
  assert.equal(await page.locator("[data-field=backend]").textContent(), "webgpu");
  assert.match(await page.locator("[data-field=why]").textContent(), /GPU.*, as requested; adapter: .*BrowserWebGpu/);
  await setSettings({ temperature: 0, "max-tokens": 8, repeat: 1 });
  const r = await generate(golden.prompts[0].prompt);
  console.log("webgpu, the page's reply:", checkGreedy(golden.prompts[0].prompt, r.tokenIds, 8));
  // Every step teacher-forced (a near-tie no longer ends the comparison), 8 steps a prompt:
  // SwiftShader decodes about a token a second here (32 took over 2 of CI's minutes). This is
  // the package's WebGPU path through the page and its Worker; the kernels' numbers over more
  // steps are tests/web_gpu.rs's (WebGPU in Chromium) and tests/gpu_model.rs's (lavapipe).
  const forced = await teacherForced("webgpu", 8);
  golden.prompts.forEach((p, i) => console.log("webgpu:", checkSteps(p.prompt, forced[i])));
});

test("auto on a software-only WebGPU adapter picks the CPU backend and says why", async () => {
  await loadModel("auto");
  assert.equal(await page.locator("[data-field=backend]").textContent(), "cpu");
  assert.match(await page.locator("[data-field=why]").textContent(), /software renderer/);
});

test("bad URLs show a clear, coded message", async () => {
  await page.fill("#model-url", new URL("/models/missing.gguf", srv.url).href);
  await page.check("input[name=source][value=url]");
  await page.click("#load-btn");
  await page.waitForFunction(() => !document.querySelector("#error").hidden, null, { timeout: 60_000 });
  assert.match(await page.locator("#error").textContent(), /^\[NETWORK\] .*404/);
  await page.fill("#model-url", new URL("/index.html", srv.url).href);
  await page.click("#load-btn");
  await page.waitForFunction(() => /BAD_GGUF/.test(document.querySelector("#error").textContent), null, { timeout: 60_000 });
  assert.match(await page.locator("#error").textContent(), /not a GGUF/i);
  assert.equal(await page.getAttribute("body", "data-state"), "idle");
});

test("phone-sized viewport: no horizontal scrolling; once a model is loaded the chat comes first and the model panel is one line", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the viewport`);
  await page.screenshot({ path: `${ARTIFACTS}demo-phone.png`, fullPage: true });
  await loadModel("cpu", "smollm2");
  const box = async (sel) => page.locator(sel).boundingBox();
  const summary = page.locator("#model-summary");
  assert.ok(await summary.isVisible(), "the model panel folds into one line");
  assert.match(await summary.textContent(), /SmolLM2.*cpu/i);
  assert.ok(!(await page.locator("#load-form").isVisible()), "the model details are folded away");
  const [prompt, chat, panel] = [await box("#prompt"), await box("#chat-panel"), await box("#model-panel")];
  assert.ok(chat.y < panel.y, "the chat comes before the model panel");
  assert.ok(prompt.y + prompt.height <= 844, `the prompt ends at ${Math.round(prompt.y + prompt.height)} px, below the screen`);
  await page.screenshot({ path: `${ARTIFACTS}demo-phone-loaded.png` });
  await summary.click();
  assert.ok(await page.locator("#load-form").isVisible(), "a tap unfolds the model panel");
  assert.equal(await summary.getAttribute("aria-expanded"), "true");
  assert.deepEqual(pageErrors, []);
});

test("cached models can be deleted from the page", async () => {
  await page.setViewportSize({ width: 1280, height: 900 });
  for (const name of [GEMMA, SMOLLM2]) {
    const item = page.locator("#cache-list li", { hasText: name });
    await item.getByRole("button", { name: /Delete/ }).click();
    await page.waitForFunction((n) => !document.querySelector("#cache-list").textContent.includes(n), name, { timeout: 30_000 });
  }
  await page.waitForFunction(() => /No models cached yet/.test(document.querySelector("#cache-list").textContent), null, { timeout: 30_000 });
  assert.match(await page.locator("#storage-usage").textContent(), /^Using [\d.]+ MB of/);
});

test("SharedEngine: three pages share one model (its bytes sent once, one host with 3 tabs), all three stream, an abort stays in its tab; when the host closes the next call succeeds elsewhere with no model bytes sent", async () => {
  const url = new URL(`/models/${SMOLLM2}`, srv.url).href;
  const pages = [page, await ctx.newPage(), await ctx.newPage()];
  for (const p of pages.slice(1)) {
    p.on("pageerror", (e) => pageErrors.push(e.message));
    await p.goto(srv.url);
    // The demo's own preflight of its default model: done before the byte count starts.
    await p.waitForFunction(() => ["done", "error"].includes(document.querySelector("#preflight").dataset.state), null, { timeout: 60_000 });
  }
  await page.evaluate((u) => import("browser-llm").then((m) => m.deleteCachedModel(u)), url);
  await srv.resetStats();
  // All three join at once; one of them wins the lock and loads the model.
  await Promise.all(pages.map((p) => p.evaluate(async (u) => {
    const { SharedEngine } = await import("browser-llm");
    // A name of its own: the demo on this page may hold SmolLM2 in a SharedEngine already.
    window.shared = await SharedEngine.load(u, { backend: "cpu", contextLength: 512, sharedName: "e2e three tabs" });
  }, url)));
  const stats = await srv.stats();
  assert.equal(stats.byModel[SMOLLM2].bytes, statSync(CHAT_MODEL).size, "the model's bytes were sent once");
  const infos = await Promise.all(pages.map((p) => p.evaluate(() => window.shared.info().then((i) => i.shared))));
  assert.equal(infos.filter((i) => i.host).length, 1, JSON.stringify(infos));
  assert.equal(infos.find((i) => i.host).tabs, 3, JSON.stringify(infos));
  const host = pages[infos.findIndex((i) => i.host)];
  const others = pages.filter((p) => p !== host);

  // Every tab streams; one tab aborts its long generation after its first token, the others finish.
  const run = (p, abort) => p.evaluate(async (abort) => {
    const ctl = new AbortController();
    let tokens = 0;
    const r = await window.shared.generate("Once upon a time", {
      maxTokens: abort ? 200 : 12, temperature: 0, ignoreEos: true, signal: ctl.signal,
      onToken: () => { tokens += 1; if (abort) ctl.abort(); },
    });
    return { tokens, finishReason: r.finishReason, n: r.tokenIds.length };
  }, abort);
  const [a, b, c] = await Promise.all([run(host, false), run(others[0], true), run(others[1], false)]);
  assert.deepEqual([a.finishReason, a.n], ["length", 12], JSON.stringify(a));
  assert.equal(b.finishReason, "abort", JSON.stringify(b));
  assert.ok(b.n < 200, JSON.stringify(b));
  assert.deepEqual([c.finishReason, c.n, c.tokens], ["length", 12, 12], JSON.stringify(c));

  // The host tab closes: the next call from another tab succeeds there, from browser storage.
  await srv.resetStats();
  await host.close();
  const after = await others[0].evaluate(async () => {
    for (let i = 0; ; i++) {
      try {
        const r = await window.shared.generate("Once upon a time", { maxTokens: 4, temperature: 0, ignoreEos: true });
        return { n: r.tokenIds.length, shared: (await window.shared.info()).shared, retries: i };
      } catch (e) {
        if (e.code !== "HOST_CHANGED" || i > 3) throw e;
      }
    }
  });
  assert.equal(after.n, 4);
  assert.equal(after.shared.tabs, 2, JSON.stringify(after));
  assert.equal((await srv.stats()).modelRequests, 0, "the new host loaded the model from browser storage");
  console.log(`SharedEngine: 3 tabs, ${stats.byModel[SMOLLM2].bytes} model bytes sent once; streams ${a.tokens}/${b.tokens} (aborted)/${c.tokens} tokens; after the host left: ${JSON.stringify(after)}`);
  for (const p of others) await p.evaluate(() => window.shared.dispose());
  for (const p of others) if (p !== page) await p.close();
});
