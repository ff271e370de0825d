// End to end: the real demo page (www/), the built package, the real model, headless Chromium.
//   BROWSER_LLM_MODEL=/path/to/model.gguf node --test e2e.test.mjs
// Screenshots go to artifacts/ at the repository root.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { startServer, launchBrowser } from "./browser.mjs";
import { golden, checkGreedy } from "./golden.mjs";

const MODEL = process.env.BROWSER_LLM_MODEL;
if (!MODEL) throw new Error("set BROWSER_LLM_MODEL to the default model's path (pkg-scripts/fetch-model prints it)");
const ARTIFACTS = fileURLToPath(new URL("../../artifacts/", import.meta.url));
mkdirSync(ARTIFACTS, { recursive: true });

let srv;
let ctx;
let page;
const pageErrors = [];

before(async () => {
  srv = await startServer(MODEL);
  ctx = await launchBrowser();
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

async function loadModel(backend) {
  await page.check("input[name=source][value=default]");
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
    text: await last.textContent(),
  };
}

test("cold load through the Worker: progress with phases, every byte downloaded once", async () => {
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
  assert.ok(phases.has("Downloading"), `progress phases seen: ${[...phases]}`);
  assert.match(await page.locator("[data-field=backend]").textContent(), /cpu/);
  assert.match(await page.locator("[data-field=why]").textContent(), /CPU/);
});

test("greedy generation through the Worker engine (cpu) equals llama.cpp's golden tokens", async () => {
  await setSettings({ temperature: 0, "max-tokens": 64, repeat: 1 });
  for (const p of golden.prompts) {
    const r = await generate(p.prompt);
    console.log("cpu:", checkGreedy(p.prompt, r.tokenIds));
  }
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

test("a streamed chat completion", async () => {
  await page.check("input[name=mode][value=chat]");
  await setSettings({ temperature: 0, "max-tokens": 24 });
  const r = await generate("Write one sentence about the sea.");
  assert.ok(["stop", "length"].includes(r.finishReason));
  const reply = (await page.locator(".msg.model").last().textContent()).replace(/^Model/, "");
  assert.ok(reply.trim().length > 0, "the reply streamed into the page");
  assert.equal(await page.locator(".msg.user").last().textContent(), "YouWrite one sentence about the sea.");
  await page.screenshot({ path: `${ARTIFACTS}demo-desktop.png`, fullPage: true });
  await page.check("input[name=mode][value=completion]");
});

test("reload: the model loads from browser storage with no weight request", async () => {
  await page.reload();
  await srv.resetStats();
  await loadModel("cpu");
  const stats = await srv.stats();
  assert.equal(stats.modelRequests, 0, `weight requests on a warm load: ${JSON.stringify(stats.requests)}`);
  await page.locator("#cache-panel summary").click();
  await page.waitForFunction(() => document.querySelectorAll("#cache-list li button").length > 0, null, { timeout: 30_000 });
  assert.match(await page.locator("#cache-list").textContent(), /gemma-3-270m-q4_k_m\.gguf · 253 MB/);
  await page.screenshot({ path: `${ARTIFACTS}demo-warm-load.png`, fullPage: true });
});

test("webgpu backend (SwiftShader): greedy tokens through the Worker equal the golden's", async () => {
  // SwiftShader runs WebGPU on the CPU at about 0.5-1 token/s for this model on CI's 2 cores, so
  // this is the slowest test (4 x 64 tokens, a few minutes); it is the same comparison as the CPU's.
  await loadModel("webgpu");
  assert.equal(await page.locator("[data-field=backend]").textContent(), "gpu");
  assert.match(await page.locator("[data-field=why]").textContent(), /WebGPU, as requested; adapter: .*BrowserWebGpu/);
  await setSettings({ temperature: 0, "max-tokens": 64, repeat: 1 });
  for (const p of golden.prompts) {
    const r = await generate(p.prompt);
    console.log("webgpu:", checkGreedy(p.prompt, r.tokenIds, 64));
  }
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

test("phone-sized viewport: no horizontal scrolling, controls reachable", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the viewport`);
  await page.screenshot({ path: `${ARTIFACTS}demo-phone.png`, fullPage: true });
  assert.deepEqual(pageErrors, []);
});

test("a cached model can be deleted from the page", async () => {
  await page.setViewportSize({ width: 1280, height: 900 });
  const item = page.locator("#cache-list li", { hasText: "gemma-3-270m-q4_k_m.gguf" });
  await item.getByRole("button", { name: /Delete/ }).click();
  await page.waitForFunction(() => /No models cached yet/.test(document.querySelector("#cache-list").textContent), null, { timeout: 30_000 });
  assert.match(await page.locator("#storage-usage").textContent(), /^Using [\d.]+ MB of/);
});
