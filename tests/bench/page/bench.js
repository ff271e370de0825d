// The benchmark page: browser-llm (the built package, /pkg/) and wllama (/wllama/esm/) on the
// same GGUF model bytes, CPU only, in this one page. With gpu=1: browser-llm on WebGPU against
// browser-llm on the CPU (1 thread) instead (wllama runs on the CPU only). Each engine runs the same prompt with greedy
// decoding and end-of-generation ignored, in alternating rounds (ours 2 threads, ours 1 thread,
// wllama 1 thread, wllama 2 threads, ours 2 threads, ...), after one untimed warm-up run each. The results go to
// window.__benchDone(results) (exposed by run.mjs) and to window.__benchResults.
//
// What is measured (the same for every engine):
// - prefill: prompt tokens run / the engine's own prompt time (ours: timings.prefillMs;
//   wllama: llama-server's timings.prompt_ms, which also covers sampling the first token);
// - decode: forward passes after the first token / the time they took (ours:
//   timings.decodeTokens / decodeMs; wllama: (timings.predicted_n - 1) / predicted_ms, since
//   llama-server counts the first token, sampled from the prompt's logits, in predicted_n but not in
//   predicted_ms);
// - wall: the whole call as this page sees it (for wllama it includes the messages to its Worker).
// Neither KV cache is reused between rounds: ours is reset, wllama gets cache_prompt: false.

import { WorkerEngine } from "/pkg/index.js";
import { Wllama } from "/wllama/esm/index.js";

const q = new URLSearchParams(location.search);
const MODEL_URL = q.get("model");
const ROUNDS = Number(q.get("rounds") ?? 3);
const TOKENS = Number(q.get("tokens") ?? 64);
const TRY_MT = q.get("mt") !== "0";
// schema=1: one more row, browser-llm on 1 thread with its output under a JSON schema (constrained
// decoding: the mask over the vocabulary at every token), for the cost of a constraint.
const SCHEMA = q.get("schema") === "1";
const GPU = q.get("gpu") === "1";
const BENCH_SCHEMA = {
  type: "array", minItems: 100, maxItems: 1000, // longer than any benchmark run: no early end
  items: { type: "object", properties: { name: { type: "string", maxLength: 24 }, year: { type: "integer" } }, required: ["name", "year"], additionalProperties: false },
};
// 4096: the context the memory target is stated at (peak wasm memory <= file size + 150 MB).
const CTX = Number(q.get("ctx") ?? 4096);
const WARMUP_TOKENS = 8;
// 128 tokens (BOS included) with Gemma 3's tokenizer; both engines' counts are reported.
const PROMPT = q.get("prompt") ?? "The history of bridges begins with fallen trees and stepping stones, and continues through \
Roman stone arches, medieval timber spans, iron and steel trusses of the industrial age, and the long \
suspension and cable-stayed bridges of today. Each step was driven by new materials, by new ways of \
calculating loads, and by the needs of the people who had to cross rivers, valleys and straits. Engineers \
learned from every collapse, and each failure left behind rules that are still taught today. In this \
essay we look at how the builders of each era solved the same old problem, and at what each of them \
taught the next generation of engineers and";

const logEl = document.getElementById("log");
function log(msg) {
  console.log(`[bench] ${msg}`);
  logEl.textContent += msg + "\n";
}

// wllama runs llama.cpp in a module Worker whose wasm memory this page cannot see. Wrap each such
// Worker so that a small module runs first in it and records every WebAssembly.Memory created
// there (globalThis.__benchWasmMemories); run.mjs reads them through the Worker's URL.
const workerUrls = [];
const HOOK_URL = URL.createObjectURL(new Blob([`
const mems = [];
globalThis.__benchWasmMemories = mems;
WebAssembly.Memory = new Proxy(WebAssembly.Memory, {
  construct(target, args, newTarget) { const m = Reflect.construct(target, args, newTarget); mems.push(m); return m; },
});
`], { type: "text/javascript" }));
const NativeWorker = window.Worker;
window.Worker = class extends NativeWorker {
  constructor(url, options) {
    if (options?.type === "module" && String(url).startsWith("blob:")) {
      url = URL.createObjectURL(new Blob([`import ${JSON.stringify(HOOK_URL)};\nimport ${JSON.stringify(String(url))};\n`], { type: "text/javascript" }));
      workerUrls.push(url);
    }
    super(url, options);
  }
};

const quietLogger = { debug() {}, log() {}, warn: (...a) => console.warn(...a), error: (...a) => console.error(...a) };

// In a WorkerEngine, as the package recommends (and as wllama always runs): each engine its own
// Worker and module, so 2 threads run the threaded build and 1 thread the single-thread one
// (relaxed SIMD in Chromium), exactly what an app asking for that many gets. (On the page's main
// thread the 2-thread prefill gained only 1.25-1.35x over 1 thread here, against about 1.8x in a
// Worker.)
function ours(threads, schema = false, backend = "cpu") {
  let engine;
  return {
    name: backend === "webgpu" ? "browser-llm (WebGPU)" : schema ? "browser-llm (JSON schema)" : "browser-llm", threads,
    async load(blob) {
      engine = await WorkerEngine.load(blob, { backend, cache: false, contextLength: CTX, threads });
      const info = await engine.info();
      if (backend === "webgpu") {
        this.threads = 0;
        this.detail = info.backendReason;
      } else {
        if (info.cpuThreads !== threads) throw new Error(`browser-llm runs ${info.cpuThreads} thread(s), not ${threads} (${info.cpuThreadsReason})`);
        this.detail = `${info.backend}, ${info.cpuKernels} kernels; ${info.backendReason}`;
      }
      this.promptTokens = (await engine.tokenize(PROMPT)).length;
    },
    async run(maxTokens) {
      await engine.reset();
      const t0 = performance.now();
      const constraint = schema ? { responseFormat: { type: "json_schema", json_schema: { name: "bridges", schema: BENCH_SCHEMA } } } : {};
      const r = await engine.generate(PROMPT, { maxTokens, temperature: 0, ignoreEos: true, speculation: false, ...constraint });
      const wallMs = performance.now() - t0;
      const t = r.timings;
      if (r.usage.cachedTokens !== 0) throw new Error(`browser-llm reused ${r.usage.cachedTokens} cached prompt tokens`);
      return {
        promptTokens: t.prefillTokens, prefillMs: t.prefillMs, prefillTokPerS: t.prefillTokens / (t.prefillMs / 1000),
        generated: r.tokenIds.length, decodePasses: t.decodeTokens, decodeMs: t.decodeMs,
        decodeTokPerS: t.decodeTokens / (t.decodeMs / 1000), wallMs, text: r.text,
      };
    },
    async wasmBytes() {
      return (await engine.info()).wasmMemoryBytes;
    },
    // Fresh-page style: tokens timed as this page receives them (onToken runs here, on the
    // Worker's message).
    async stream(maxTokens) {
      const times = [];
      const t0 = performance.now();
      const r = await engine.generate(PROMPT, { maxTokens, temperature: 0, ignoreEos: true, speculation: false, onToken: () => times.push(performance.now()) });
      return { times, t0, promptTokens: r.timings.prefillTokens, prefillTokPerS: r.timings.prefillTokens / (r.timings.prefillMs / 1000), text: r.text };
    },
  };
}

function wllama(threads) {
  let w;
  return {
    name: "wllama", threads,
    async load(blob) {
      const before = workerUrls.length;
      w = new Wllama({ default: "/wllama/esm/wasm/wllama.wasm" }, { suppressNativeLog: true, logger: quietLogger });
      await w.loadModel([blob], { n_threads: threads, n_ctx: CTX, n_gpu_layers: 0, n_parallel: 1 });
      this.workerUrl = workerUrls[before] ?? null;
      const got = w.getNumThreads();
      if (got !== threads) throw new Error(`wllama runs ${got} thread(s), not ${threads} (multi-thread needs crossOriginIsolated)`);
      this.detail = `llama.cpp ${Wllama.getLibllamaVersion()}; ${w.isMultithread() ? "multi-thread" : "single-thread"} build`;
    },
    async run(maxTokens) {
      const t0 = performance.now();
      const r = await w.createCompletion({
        prompt: PROMPT, max_tokens: maxTokens, n_predict: maxTokens, temperature: 0, ignore_eos: true,
        cache_prompt: false, stream: false,
      });
      const wallMs = performance.now() - t0;
      const t = r.timings;
      if (!t) throw new Error("wllama returned no timings");
      if (t.cache_n) throw new Error(`wllama reused ${t.cache_n} cached prompt tokens`);
      return {
        promptTokens: t.prompt_n, prefillMs: t.prompt_ms, prefillTokPerS: t.prompt_n / (t.prompt_ms / 1000),
        generated: t.predicted_n, decodePasses: t.predicted_n - 1, decodeMs: t.predicted_ms,
        decodeTokPerS: (t.predicted_n - 1) / (t.predicted_ms / 1000), wallMs, text: r.choices?.[0]?.text ?? "",
      };
    },
    async stream(maxTokens) {
      const times = [];
      const t0 = performance.now();
      let text = "";
      let timings = null;
      const it = await w.createCompletion({
        prompt: PROMPT, max_tokens: maxTokens, n_predict: maxTokens, temperature: 0, ignore_eos: true, cache_prompt: false, stream: true,
      });
      for await (const chunk of it) {
        const piece = chunk.choices?.[0]?.text ?? "";
        if (piece || chunk.content) times.push(performance.now());
        text += piece;
        timings = chunk.timings ?? timings;
      }
      const promptTokens = timings?.prompt_n ?? null;
      return { times, t0, promptTokens, prefillTokPerS: timings ? timings.prompt_n / (timings.prompt_ms / 1000) : null, text };
    },
  };
}

// Fresh-page style (fresh=1&engine=ours-1|ours-2|wllama-1|wllama-2): this page loads one engine and
// runs one streamed generation at once, no warm-up, as an app's first request in a new tab; the
// decode rate is the tokens after the first per second, as this page receives them.
async function fresh(blob) {
  const [kind, threads] = (q.get("engine") ?? "ours-1").split("-");
  const e = kind === "wllama" ? wllama(Number(threads)) : ours(Number(threads));
  const t = performance.now();
  await e.load(blob);
  const loadMs = performance.now() - t;
  log(`${e.name}, ${e.threads} thread(s): loaded in ${(loadMs / 1000).toFixed(1)} s (${e.detail})`);
  const r = await e.stream(TOKENS);
  const n = r.times.length;
  const decode = n > 1 ? (n - 1) / ((r.times[n - 1] - r.times[0]) / 1000) : 0;
  // The rate over the first and the second half: a first generation that speeds up as it goes
  // is still warming up (the wasm tiering up, first touches of fresh memory).
  const h = n >> 1;
  const rate = (a, b) => (b - a) / ((r.times[b] - r.times[a]) / 1000);
  const halves = n > 4 ? [rate(0, h), rate(h, n - 1)] : [0, 0];
  log(`${e.name}, ${e.threads} thread(s): ${n} tokens received, first after ${(r.times[0] - r.t0).toFixed(0)} ms, then ${decode.toFixed(2)} tok/s (halves ${halves.map((x) => x.toFixed(1)).join(" / ")})`);
  return { name: e.name, threads: e.threads, detail: e.detail, loadMs, received: n, firstMs: r.times[0] - r.t0, decodeTokPerS: decode, halves, promptTokens: r.promptTokens, prefillTokPerS: r.prefillTokPerS, text: r.text };
}

async function main() {
  if (!MODEL_URL) throw new Error("no ?model= URL");
  const env = {
    userAgent: navigator.userAgent, crossOriginIsolated, hardwareConcurrency: navigator.hardwareConcurrency,
    wllamaLibllama: Wllama.getLibllamaVersion(),
  };
  log(`crossOriginIsolated=${crossOriginIsolated}, hardwareConcurrency=${navigator.hardwareConcurrency}`);
  const t0 = performance.now();
  const blob = await (await fetch(MODEL_URL)).blob();
  log(`model: ${MODEL_URL}, ${blob.size} bytes, fetched in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  if (q.get("fresh") === "1") return { env, fresh: await fresh(blob) };
  const engines = GPU ? [ours(1, false, "webgpu"), ours(1)] : TRY_MT ? [ours(2), ours(1), wllama(1), wllama(2)] : [ours(1), wllama(1)];
  if (SCHEMA) engines.splice(engines.indexOf(engines.find((e) => e.name === "browser-llm" && e.threads === 1)) + 1, 0, ours(1, true));
  const errors = [];
  const live = [];
  for (const e of engines) {
    const label = e.name.includes("WebGPU") ? e.name : `${e.name}, ${e.threads} thread${e.threads > 1 ? "s" : ""}`;
    e.label = label;
    e.rounds = [];
    try {
      const t = performance.now();
      await e.load(blob);
      e.loadMs = performance.now() - t;
      log(`${label}: loaded in ${(e.loadMs / 1000).toFixed(1)} s (${e.detail})`);
      const warm = await e.run(WARMUP_TOKENS);
      log(`${label}: warm-up done (${warm.promptTokens} prompt tokens)`);
      if (e.wasmBytes) e.memAfterWarmup = await e.wasmBytes();
      live.push(e);
    } catch (err) {
      const msg = `${label}: ${err?.message ?? err}`;
      log(`FAILED ${msg}`);
      errors.push(msg);
    }
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const e of live) {
      const res = await e.run(TOKENS);
      e.rounds.push(res);
      log(`round ${r + 1}/${ROUNDS} ${e.label}: prompt ${res.promptTokens} tok, prefill ${res.prefillTokPerS.toFixed(1)} tok/s, ` +
        `decode ${res.decodePasses} passes ${res.decodeTokPerS.toFixed(2)} tok/s, wall ${res.wallMs.toFixed(0)} ms`);
    }
  }
  const out = [];
  for (const e of engines) {
    out.push({
      name: e.name, label: e.label, threads: e.threads, detail: e.detail ?? null, loadMs: e.loadMs ?? null,
      tokenizedPromptTokens: e.promptTokens ?? null, rounds: e.rounds, workerUrl: e.workerUrl ?? null,
      wasmBytes: e.memAfterWarmup ?? null,
    });
  }
  return { env, prompt: PROMPT, tokens: TOKENS, roundsRequested: ROUNDS, modelBytes: blob.size, engines: out, errors };
}

main().then(
  (results) => {
    window.__benchResults = results;
    window.__benchDone?.(JSON.stringify(results));
  },
  (err) => {
    log(`FAILED: ${err?.stack ?? err}`);
    window.__benchResults = { fatal: String(err?.stack ?? err) };
    window.__benchDone?.(JSON.stringify(window.__benchResults));
  },
);
