// Loading the wasm module once, in browsers, Workers and Node (one of three builds: see
// pkg-scripts/build), starting the threaded build's CPU threads, and small environment helpers.

import { BrowserLlmError, crashedError } from "./errors.js";

export const isNode = typeof process !== "undefined" && !!(process.versions && process.versions.node);

let ready = null;
/** Module instances retired after a trap so far: the next one imports a fresh copy of the glue. */
let retired = 0;

/**
 * The wasm module of `rt` trapped (a Rust panic or abort): its memory and stack may be
 * inconsistent, so it is never used again. Engines on it fail from now on (`rt.crashed`), every
 * asynchronous call in flight on it rejects (see `guard`), the Web Locks it held are released
 * (`setRuntimeHooks`), its threads stop, and the next load instantiates a fresh module. (A
 * WorkerEngine contains a crash in its Worker, which it terminates; its next load starts a fresh
 * Worker.) Returns the error for the call that trapped: INVALID_ARGUMENT when the module recorded a
 * cause in the input (a chat template past its memory budget), else INTERNAL with the panic's
 * message when there was one.
 */
export function markCrashed(rt, e) {
  if (rt?.crashed) return rt.crashError;
  let reason = 0;
  try {
    reason = rt?.wasm.abortReason?.() ?? 0; // reads one global: safe on a trapped instance
  } catch {}
  const error = reason === 1
    ? new BrowserLlmError(
      "INVALID_ARGUMENT",
      "the model's chat template needed more memory than its budget while rendering (a broken or hostile template); " +
        "the engine was disposed: load the model again, and prompt it with generate() instead of its chat template",
      { cause: e },
    )
    : crashedError(e, rt?.panicMessage);
  if (!rt) return error;
  rt.crashed = e;
  rt.crashError = error;
  rt.rejectTrapped?.(error);
  rt.disarm?.();
  for (const w of rt.workers ?? []) w.terminate();
  if (ready && ready.runtime === rt) {
    ready = null;
    retired++;
  }
  return error;
}

/** A trap of wasm code: what a Rust panic or abort, a bad memory access or a stack overflow throws. */
function isTrap(e) {
  return (typeof WebAssembly !== "undefined" && e instanceof WebAssembly.RuntimeError) ||
    (e instanceof RangeError && /call stack/i.test(e.message ?? ""));
}

/**
 * Make traps of `rt`'s module fail its calls instead of hanging them. A trap inside an
 * asynchronous export happens in a microtask that the module's futures run, with no caller to
 * catch it: the promise of that call would never settle and the error would reach the page's
 * `error` event (in Node, kill the process). So: the panic hook tells the runtime at once, with
 * the panic's message (`setRuntimeHooks`); a trap without a panic (an abort, a stack overflow) is
 * caught as the uncaught error it is, while a call is in flight; either way `markCrashed` rejects
 * `rt.trapped`, which every asynchronous call races (`guard`) and held Web Locks wait on.
 */
function armTraps(rt) {
  rt.pending = 0;
  rt.trapped = new Promise((_, reject) => { rt.rejectTrapped = reject; });
  rt.trapped.catch(() => {}); // observed by the calls racing it, not an unhandled rejection
  const renderer = rt.templateRenderer;
  rt.wasm.setRuntimeHooks(rt.trapped, (message) => {
    rt.panicMessage = String(message);
    markCrashed(rt, new WebAssembly.RuntimeError(`unreachable (panic: ${rt.panicMessage})`));
  }, renderer ? (job) => renderer.render(job) : undefined);
  // The uncaught trap itself: expected once `markCrashed` ran (a panic), else the first news of it.
  const ours = (e) => isTrap(e) && (rt.pending > 0 || (rt.crashed && !rt.trapSeen));
  const take = (e) => {
    rt.trapSeen = true;
    markCrashed(rt, e);
  };
  if (isNode) {
    const onUncaught = (e) => {
      if (ours(e)) return take(e);
      // Not ours: as if nobody listened, unless somebody else does.
      if (process.listenerCount("uncaughtException") > 1) return;
      process.removeListener("uncaughtException", onUncaught);
      process.nextTick(() => { throw e; });
    };
    // Listening changes Node's behaviour for every other error: only while the module runs code.
    rt.listen = (on) => (on ? process.on : process.removeListener).call(process, "uncaughtException", onUncaught);
    rt.disarm = () => setTimeout(() => rt.listen(false), 0);
  } else if (typeof globalThis.addEventListener === "function") {
    const onError = (ev) => {
      if (!ours(ev.error)) return;
      ev.preventDefault(); // reported as the call's typed error instead
      take(ev.error);
    };
    globalThis.addEventListener("error", onError);
    rt.disarm = () => setTimeout(() => globalThis.removeEventListener("error", onError), 0);
  }
}

/**
 * `promise` (an asynchronous call into `rt`'s module), settled even when the module traps: then
 * it rejects with the trap's typed error.
 */
export function guard(rt, promise) {
  if (rt.crashed) return Promise.reject(rt.crashError);
  if (rt.pending++ === 0) rt.listen?.(true);
  return Promise.race([promise, rt.trapped]).finally(() => {
    // After a trap the listener stays a moment: the uncaught error follows the rejection.
    if (--rt.pending === 0 && !rt.crashed) rt.listen?.(false);
  });
}

const utf8 = { encode: (s) => new TextEncoder().encode(s), decode: (b) => new TextDecoder().decode(b) };

/**
 * Chat templates come from model files, so they render in a module of their own
 * (`wasm/browser_llm_template.wasm`, examples/template_renderer.rs: minijinja and the memory
 * budget, no imports): a template past its memory budget traps that small instance only, which is
 * dropped; the engine's call fails with INVALID_ARGUMENT and every engine keeps working. The
 * engine's module calls `render(job)` synchronously (`setRuntimeHooks`); an instance is made ahead
 * of time (browsers refuse to instantiate a module this size synchronously on a page's main
 * thread), reused while it stays small, and replaced after a trap or a render that grew it.
 */
class TemplateRenderer {
  #module;
  #spare = null;
  #filling = null;

  constructor(module) {
    this.#module = module;
  }

  static async create(module) {
    const r = new TemplateRenderer(module);
    await r.#fill();
    return r;
  }

  #fill() {
    this.#filling ??= WebAssembly.instantiate(this.#module, {}).then((i) => {
      this.#spare ??= i;
      this.#filling = null;
    }, () => { this.#filling = null; });
    return this.#filling;
  }

  /** Render the JSON `RenderJob` `job`; the JSON `RenderReply`. */
  render(job) {
    let inst = this.#spare;
    this.#spare = null;
    if (!inst) {
      try {
        inst = new WebAssembly.Instance(this.#module, {});
      } catch (e) {
        this.#fill();
        return JSON.stringify({ Failed: `the template renderer is not ready yet (${e.message}); try again` });
      }
    }
    let reply;
    try {
      const x = inst.exports;
      const input = utf8.encode(job);
      const at = x.template_alloc(input.length);
      new Uint8Array(x.memory.buffer, at, input.length).set(input);
      const n = x.template_render(at, input.length);
      reply = utf8.decode(new Uint8Array(x.memory.buffer, x.template_output(), n).slice());
      if (x.memory.buffer.byteLength <= 16 << 20) this.#spare = inst;
    } catch (e) {
      if (!isTrap(e)) throw e;
      reply = JSON.stringify({ Trapped: String(e.message) });
    }
    if (!this.#spare) this.#fill();
    return reply;
  }
}

/** The template renderer, or null where its module cannot be loaded (templates then render in the engine's module). */
async function templateRenderer() {
  try {
    return await TemplateRenderer.create(await compile(new URL("./wasm/browser_llm_template.wasm", import.meta.url)));
  } catch {
    return null;
  }
}

/** Each build's own JS glue (see pkg-scripts/build). */
const GLUE = {
  threads_relaxed: "browser_llm_threads_relaxed.js",
  threads: "browser_llm_threads.js",
  relaxed: "browser_llm_relaxed.js",
  simd128: "browser_llm.js",
};

/**
 * The JS glue of a build. wasm-bindgen's glue keeps its instance in module state, so after a
 * crash a fresh instance needs a fresh copy of the module, imported by a URL of its own (bundlers
 * that rename files cannot follow that URL: the load then fails asking for a page reload).
 */
async function importGlue(build) {
  if (retired === 0) {
    // Literal specifiers, so bundlers ship all four.
    if (build === "threads_relaxed") return import("./wasm/browser_llm_threads_relaxed.js");
    if (build === "threads") return import("./wasm/browser_llm_threads.js");
    return build === "relaxed" ? import("./wasm/browser_llm_relaxed.js") : import("./wasm/browser_llm.js");
  }
  const url = new URL(`./wasm/${GLUE[build]}`, import.meta.url);
  url.searchParams.set("instance", String(retired));
  try {
    return await import(/* @vite-ignore */ /* webpackIgnore: true */ url.href);
  } catch (e) {
    throw new BrowserLlmError(
      "INTERNAL",
      `the engine's WebAssembly module crashed earlier and a fresh copy could not be loaded (${e?.message ?? e}); reload the page`,
      { cause: e },
    );
  }
}

/**
 * A module that computes one `i32x4.relaxed_dot_i8x16_i7x16_add_s` of memory bytes 0..16 (i8)
 * and 16..32 (i7) into bytes 48..64. Used to check that the engine has relaxed SIMD *and* computes
 * it right (Node 20's experimental implementation, behind a flag, returns twice the sum).
 */
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 5, 3, 1, 0, 1, 7, 11, 2, 1, 109, 2, 0, 3, 114,
  117, 110, 0, 0, 10, 31, 1, 29, 0, 65, 48, 65, 0, 253, 0, 4, 0, 65, 16, 253, 0, 4, 0, 65, 32, 253, 0, 4, 0,
  253, 147, 2, 253, 11, 4, 0, 11,
]);

/** Whether this engine runs relaxed SIMD's integer dot product correctly. */
function hasRelaxedSimd() {
  try {
    if (!WebAssembly.validate(RELAXED_PROBE)) return false;
    const { exports } = new WebAssembly.Instance(new WebAssembly.Module(RELAXED_PROBE));
    const bytes = new Int8Array(exports.m.buffer);
    bytes.fill(-3, 0, 16);
    bytes.fill(5, 16, 32);
    exports.run();
    return new Int32Array(exports.m.buffer, 48, 4).every((v) => v === -60);
  } catch {
    return false;
  }
}

/** CPU threads when the load options do not say: the cores, up to 4 (more rarely pays on small models). */
async function defaultThreads() {
  const cores = isNode ? (await nodeImport("node:os")).availableParallelism() : (navigator.hardwareConcurrency ?? 1);
  return Math.max(1, Math.min(4, cores));
}

/** Why this environment cannot run the threaded build, or null if it can. */
function threadsUnavailable() {
  if (typeof SharedArrayBuffer === "undefined" || typeof Atomics === "undefined") {
    return "SharedArrayBuffer is unavailable (serve the page with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)";
  }
  if (!isNode && !globalThis.crossOriginIsolated) {
    return "the page is not cross-origin isolated (serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)";
  }
  if (!isNode && typeof Worker === "undefined") return "this context cannot start Workers";
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  } catch {
    return "this engine has no WebAssembly threads (shared memory)";
  }
  return null;
}

async function compile(url) {
  if (isNode) {
    const fs = await nodeImport("node:fs/promises");
    return WebAssembly.compile(await fs.readFile(url));
  }
  const res = await fetch(url);
  if (!res.ok) throw new BrowserLlmError("NETWORK", `could not fetch ${url} (HTTP ${res.status})`);
  // Streaming compilation needs the right MIME type; some static hosts send another.
  const wasmMime = (res.headers.get("content-type") ?? "").startsWith("application/wasm");
  return WebAssembly.compileStreaming && wasmMime ? WebAssembly.compileStreaming(res) : WebAssembly.compile(await res.arrayBuffer());
}

/**
 * Instantiate the wasm module (once per page or Worker, and again after a crash): a threaded
 * build where threads are wanted (`threads` > 1, by default the cores up to 4) and the environment
 * allows them, else a single-thread one; each with relaxed SIMD where the engine has it, else
 * plain SIMD128. Resolves with the runtime: `{ wasm }` (the JS bindings), `threaded`, `relaxed`,
 * and `threadsReason` (why there is one thread).
 */
export function loadWasm({ threads } = {}) {
  if (!ready) {
    const p = (async () => {
      // The template renderer's module compiles while the engine's does.
      const renderer = templateRenderer();
      const wanted = threads ?? await defaultThreads();
      const why = wanted > 1 ? threadsUnavailable()
        : threads === 1 ? "the first load in this page or Worker asked for one thread (threads: 1), which picks a single-thread build"
        : "this machine has one core";
      const relaxed = hasRelaxedSimd();
      let rt;
      if (wanted > 1 && why === null) {
        const wasm = await importGlue(relaxed ? "threads_relaxed" : "threads");
        // Literal URLs, so bundlers (Vite, webpack) ship every file.
        const url = relaxed
          ? new URL("./wasm/browser_llm_threads_relaxed_bg.wasm", import.meta.url)
          : new URL("./wasm/browser_llm_threads_bg.wasm", import.meta.url);
        const module = await compile(url);
        await wasm.default({ module_or_path: module });
        rt = { wasm, threaded: true, relaxed, threadsReason: null, module, workers: [] };
      } else {
        const wasm = await importGlue(relaxed ? "relaxed" : "simd128");
        const url = relaxed
          ? new URL("./wasm/browser_llm_relaxed_bg.wasm", import.meta.url)
          : new URL("./wasm/browser_llm_bg.wasm", import.meta.url);
        await wasm.default({ module_or_path: await compile(url) });
        rt = { wasm, threaded: false, relaxed, threadsReason: why, workers: [] };
      }
      rt.templateRenderer = await renderer;
      armTraps(rt);
      p.runtime = rt;
      return rt;
    })();
    ready = p;
    p.catch(() => { if (ready === p) ready = null; });
  }
  return ready;
}

/**
 * Start the threaded build's worker threads until there are `threads - 1` (the calling thread is
 * the last). A worker that does not come up within 20 s is left out (fewer threads, same results).
 */
export async function ensureThreads(rt, threads) {
  if (!rt.threaded) return;
  const { wasm } = rt;
  const want = Math.min(threads ?? await defaultThreads(), 16) - 1;
  while (rt.workers.length < want) {
    const id = rt.workers.length;
    let worker;
    if (isNode) {
      const { Worker } = await nodeImport("node:worker_threads");
      const url = new URL("./thread-worker.js", import.meta.url);
      worker = new Worker(url);
      worker.unref(); // its loop never ends: it must not keep Node running
    } else {
      // Written as bundlers (Vite, webpack) recognize a worker: `new Worker(new URL(literal,
      // import.meta.url), static options)`. Any other form ships thread-worker.js unbundled (Vite
      // even inlines it as a data: URL), its import of the glue fails, and the engine runs on
      // one thread.
      worker = new Worker(new URL("./thread-worker.js", import.meta.url), { type: "module", name: "browser-llm thread" });
    }
    rt.workers.push(worker);
    let failed = null;
    const onError = (e) => { failed = e?.message ?? String(e); };
    if (isNode) worker.on("error", onError);
    else worker.addEventListener("error", onError);
    worker.postMessage({ module: rt.module, relaxed: rt.relaxed, memory: wasm.threadMemory(), id, failedFlag: wasm.threadFailedFlag() });
    const t0 = Date.now();
    while (!wasm.threadWorkerReady(id)) {
      if (failed !== null || Date.now() - t0 > 20000) {
        rt.threadsReason = `CPU thread ${id + 1} did not start (${failed ?? "timed out"})`;
        return;
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

/** Import a Node built-in without bundlers trying to resolve it for the browser. */
export function nodeImport(name) {
  return import(/* @vite-ignore */ /* webpackIgnore: true */ name);
}

/** Let the event loop run (abort messages, rendering) between generation steps. */
export function yieldToEventLoop() {
  if (isNode) return new Promise((r) => setImmediate(r));
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => { ch.port1.close(); resolve(); };
    ch.port2.postMessage(null);
  });
}
