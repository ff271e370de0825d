// Where the engine's time goes, as an app runs it: the built package in headless Chromium, a
// WorkerEngine on the CPU, V8's sampling profiler attached to the engine's Worker through the
// DevTools protocol, and the self time of each function (wasm functions by their Rust names)
// over a few greedy generations. A diagnostic, not a test: it asserts nothing.
//
//   node tests/bench/profile.mjs --model FILE.gguf (--prompt TEXT | --messages TEXT)
//        [--tokens N (64)] [--threads N (1)] [--runs N (3)] [--no-speculation] [--top N (25)]
//
// --messages wraps TEXT as one user message (the model's chat template); --tokens 1 profiles the
// prompt's prefill alone. Prints each generation's timings, then the top functions by self time
// (ms per generation and share). Only the Worker that runs the engine is sampled: on 2 threads
// the pool's other Workers are not.

import fs from "node:fs";
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
const model = opt("--model");
const prompt = opt("--prompt");
const messages = opt("--messages");
const tokens = Number(opt("--tokens", "64"));
const threads = Number(opt("--threads", "1"));
const runs = Number(opt("--runs", "3"));
const top = Number(opt("--top", "25"));
if (!model || !fs.existsSync(model) || (prompt == null) === (messages == null) || !(tokens >= 1 && threads >= 1 && runs >= 1)) {
  console.error("usage: node tests/bench/profile.mjs --model FILE.gguf (--prompt TEXT | --messages TEXT) [--tokens N] [--threads N] [--runs N] [--no-speculation] [--top N]");
  process.exit(2);
}

const { server, origin } = await startServer(path.join(here, "speculation"), ["--model", `profiled.gguf=${path.resolve(model)}`]);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--no-first-run"] });
let failed = false;
try {
  const page = await (await browser.newContext()).newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${origin}/index.html`);
  // The engine's Worker, reached through the page's session (not flattened: the messages to it
  // go through Target.sendMessageToTarget).
  const cdp = await page.context().newCDPSession(page);
  const pending = new Map();
  let nextId = 1;
  let worker = null;
  const attached = new Promise((resolve) =>
    cdp.on("Target.attachedToTarget", (e) => {
      if (e.targetInfo.type === "worker" && !worker) {
        worker = e.sessionId;
        resolve();
      }
    }),
  );
  cdp.on("Target.receivedMessageFromTarget", (e) => {
    const m = JSON.parse(e.message);
    if (m.id && pending.has(m.id)) {
      pending.get(m.id)(m);
      pending.delete(m.id);
    }
  });
  await cdp.send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result)));
      cdp.send("Target.sendMessageToTarget", { sessionId: worker, message: JSON.stringify({ id, method, params }) }).catch(reject);
    });
  await page.evaluate(async (threads) => {
    const { WorkerEngine } = await import("/pkg/index.js");
    window.profiled = await WorkerEngine.load("/models/profiled.gguf", { backend: "cpu", threads, cache: false, contextLength: 2048 });
  }, threads);
  await attached;
  const generate = () =>
    page.evaluate(
      async ([prompt, messages, tokens, speculation]) => {
        await window.profiled.reset();
        const input = messages != null ? { messages: [{ role: "user", content: messages }] } : prompt;
        const r = await window.profiled.generate(input, { maxTokens: tokens, temperature: 0, ...(speculation ? {} : { speculation: false }) });
        return r.timings;
      },
      [prompt, messages, tokens, !args.includes("--no-speculation")],
    );
  await generate(); // warm-up: the optimizing tier compiles what the generation runs
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: 200 });
  await send("Profiler.start");
  for (let i = 0; i < runs; i++) {
    const t = await generate();
    console.log(`run ${i + 1}: prefill ${t.prefillTokens} tokens in ${t.prefillMs} ms, decode ${t.decodeTokens} in ${t.decodeMs} ms (${t.decodeTokensPerSecond.toFixed(1)} tok/s, ${t.acceptedPerPass.toFixed(2)} a pass)`);
  }
  const { profile } = await send("Profiler.stop");
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const f = nodes.get(id).callFrame;
    const name = (f.functionName || `(anonymous ${f.url.split("/").pop()})`).replace(/::h[0-9a-f]{16}$/, "");
    const us = profile.timeDeltas[i] ?? 0;
    self.set(name, (self.get(name) ?? 0) + us);
    total += us;
  });
  console.log(`self time, ms per generation (of ${(total / 1000 / runs).toFixed(0)}), ${threads} thread(s):`);
  for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${(us / 1000 / runs).toFixed(1).padStart(8)}  ${((100 * us) / total).toFixed(1).padStart(5)}%  ${name}`);
  }
  await page.evaluate(() => window.profiled.dispose());
} catch (e) {
  console.error(`profile.mjs: ${e?.stack ?? e}`);
  failed = true;
} finally {
  await browser.close().catch(() => {});
  server.kill();
}
process.exit(failed ? 1 : 0);
