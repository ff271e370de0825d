// A Vite app that imports the package as a user's app would (from node_modules, installed from
// the packed tarball) builds, and its pages run in headless Chromium: index.html generates text;
// adapters.html runs the official `openai` and `ai` packages and the Prompt API (on the page and
// in a Worker) on the package's one-line adapters, with SmolLM2; gpu.html loses its WebGPU device
// (SwiftShader) under a running engine.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startServer, launchBrowser } from "./browser.mjs";
import { golden } from "./golden.mjs";
import { skipUnless } from "./need.mjs";

const MODEL = process.env.BROWSER_LLM_MODEL;
if (!MODEL) throw new Error("set BROWSER_LLM_MODEL to the default model's path");
const CHAT_MODEL = process.env.BROWSER_LLM_CHAT_MODEL;
const here = fileURLToPath(new URL(".", import.meta.url));

/**
 * Serve the built app with `model`, open its page `name` in headless Chromium and wait for the
 * page's result: { done ("ok" | "error"), out (the page's #out text), errors (uncaught ones) }.
 */
async function openPage(model, name) {
  const srv = await startServer(model, `${here}vite-app/dist`);
  const ctx = await launchBrowser();
  try {
    const page = await ctx.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${srv.url}${name}?model=${encodeURIComponent(srv.modelUrl)}`);
    await page.waitForFunction(() => document.body.dataset.done, null, { timeout: 600_000 });
    return { done: await page.getAttribute("body", "data-done"), out: await page.locator("#out").textContent(), errors };
  } finally {
    await ctx.close();
    srv.close();
  }
}

test("the Vite app builds and generates in Chromium", async () => {
  execFileSync(process.execPath, [`${here}node_modules/vite/bin/vite.js`, "build", "-c", `${here}vite-app/vite.config.js`], { stdio: "inherit" });
  const { done, out } = await openPage(MODEL, "");
  assert.equal(done, "ok", out);
  const r = JSON.parse(out);
  assert.deepEqual(r.tokenIds, golden.prompts[0].gen_ids_64.slice(0, 8));
  assert.equal(r.text, " the capital of the country of France.");
  // The bundled app runs the threaded build on every thread it asked for (the cores up to 4):
  // a thread worker Vite failed to bundle would leave it on one, silently slower.
  assert.equal(r.cpuThreadsReason, r.cores > 1 ? null : "this machine has one core", JSON.stringify(r));
  assert.equal(r.cpuThreads, Math.min(4, r.cores));
});

test("the OpenAI SDK, the AI SDK and the Prompt API run on the adapters in Chromium", { skip: skipUnless(CHAT_MODEL, "BROWSER_LLM_CHAT_MODEL not set") }, async () => {
  // (The app was built by the test above.)
  const { done, out, errors } = await openPage(CHAT_MODEL, "adapters.html");
  assert.deepEqual(errors, []);
  assert.equal(done, "ok", out);
  const r = JSON.parse(out);
  console.log(JSON.stringify(r, null, 1));
  for (const [name, v] of Object.entries(r)) assert.equal(v?.error, undefined, `${name}: ${v?.error}`);
  // openai
  assert.ok(r.openaiChat.text.length > 0);
  assert.equal(r.openaiChat.streamed, r.openaiChat.text, "streamed and JSON replies agree");
  assert.equal(r.openaiTool.finish, "tool_calls");
  assert.equal(r.openaiTool.call.name, "get_weather");
  assert.equal(typeof JSON.parse(r.openaiTool.call.arguments).city, "string");
  assert.ok(r.openaiAbort.chunks >= 3 && r.openaiAbort.chunks < 10, `${r.openaiAbort.chunks} chunks, aborted at 3`);
  assert.equal(r.openaiAbort.after, r.openaiChat.text, "the engine replies the same after the abort");
  // ai
  assert.ok(r.aiText.text.length > 0 && r.aiText.inputTokens > 0);
  assert.equal(r.aiText.streamed, r.aiText.text);
  for (const p of ["tool-input-start", "tool-input-delta", "tool-input-end", "tool-call", "tool-result", "finish"]) {
    assert.ok(r.aiToolStream.parts.includes(p), `${p} in ${r.aiToolStream.parts}`);
  }
  assert.ok(r.aiToolStream.inputs.length >= 1);
  for (const input of r.aiToolStream.inputs) assert.equal(typeof JSON.parse(input).city, "string");
  assert.equal(r.aiToolStream.toolResults.length, r.aiToolStream.inputs.length);
  assert.equal(r.aiToolStream.toolResults[0].celsius, 18);
  assert.ok(["yes", "no"].includes(r.aiObject.object.answer), JSON.stringify(r.aiObject));
  assert.deepEqual(r.aiObject.streamed, r.aiObject.object);
  assert.ok(r.aiObject.partials >= 1);
  assert.ok(r.aiAbort.pieces >= 3 && r.aiAbort.pieces < 20, `${r.aiAbort.pieces} pieces after the abort`);
  // Prompt API, on the page and in a Worker
  assert.equal(r.promptApi.availability, "available");
  assert.ok(r.promptApi.reply.length > 0 && r.promptApi.streamed.length > 0);
  assert.ok(["yes", "no"].includes(JSON.parse(r.promptApi.json).answer));
  assert.equal(r.promptApi.contextWindow, 1024);
  assert.ok(r.promptApi.contextUsage > 0);
  assert.equal(r.promptApiWorker.before, "downloadable");
  assert.equal(r.promptApiWorker.after, "available");
  assert.ok(r.promptApiWorker.progress >= 1 && r.promptApiWorker.lastProgress === 1, JSON.stringify(r.promptApiWorker));
  assert.ok(r.promptApiWorker.reply.length > 0);
});

test("a lost WebGPU device: DEVICE_LOST for the call in flight, then a new device, then the CPU", { skip: skipUnless(CHAT_MODEL, "BROWSER_LLM_CHAT_MODEL not set") }, async () => {
  // (The app was built by the first test.) SmolLM2 on SwiftShader: about 1 token/s on 2 cores.
  const { done, out, errors } = await openPage(CHAT_MODEL, "gpu.html");
  assert.equal(done, "ok", out);
  assert.deepEqual(errors, []);
  const r = JSON.parse(out);
  console.log(JSON.stringify(r, (k, v) => (k === "info" ? { backend: v.backend, backendReason: v.backendReason } : v), 1));
  assert.equal(r.first.info.backend, "webgpu");
  assert.match(r.first.info.backendReason, /self-check passed/);
  assert.equal(r.first.tokenIds.length, 6);
  // The call in flight fails with a typed error after the tokens it had streamed.
  assert.equal(r.lostMidGeneration.code, "DEVICE_LOST", JSON.stringify(r.lostMidGeneration));
  assert.match(r.lostMidGeneration.message, /the GPU device was lost/);
  assert.equal(r.lostMidGeneration.tokensBefore, 2);
  // The engine loaded the model again on a new device, from browser storage (no model request),
  // and computes the same tokens.
  assert.equal(r.recovered.info.backend, "webgpu");
  assert.match(r.recovered.info.backendReason, /loaded again after the GPU failed/);
  assert.equal(r.recovered.devices, r.first.devices + 1);
  assert.equal(r.recovered.modelRequests, 0);
  assert.deepEqual(r.recovered.tokenIds, r.first.tokenIds);
  // Lost again with no device to be had: DEVICE_LOST once, then the CPU, with the tokens of an
  // engine loaded on the CPU.
  assert.equal(r.lostBetweenCalls?.code, "DEVICE_LOST", JSON.stringify(r.lostBetweenCalls));
  assert.equal(r.onCpu.info.backend, "cpu");
  assert.match(r.onCpu.info.backendReason, /the GPU could not be used again \(.*refused by the test page\); loaded again after the GPU failed/);
  assert.deepEqual(r.onCpu.tokenIds, r.cpuEngine.tokenIds);
  assert.ok(r.onCpu.chat.length > 0);
});
