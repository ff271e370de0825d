// The engine on the calling thread: wraps the wasm `WasmEngine`, drives generation step by step
// (yielding to the event loop between steps so aborts and rendering get through), and queues
// calls so only one runs at a time. WorkerEngine (worker-engine.js) runs this same class in a
// dedicated Worker.

import { WasmEngine, openModel } from "./wasm/browser_llm.js";
import { BrowserLlmError, abortedError, toBrowserLlmError } from "./errors.js";
import { isNode, loadWasm, yieldToEventLoop } from "./runtime.js";
import { readSource } from "./source.js";
import { createChat, streamFrom } from "./chat.js";

const BACKENDS = ["auto", "webgpu", "cpu"];
const LOAD_KEYS = ["backend", "contextLength", "onProgress", "signal", "sha256", "cache", "store"];
const GENERATE_KEYS = [
  "maxTokens", "temperature", "topK", "topP", "minP", "repetitionPenalty", "frequencyPenalty", "presencePenalty",
  "penaltyLastN", "seed", "stop", "ignoreEos", "addSpecial", "signal", "onToken", "onPrefill",
];

/** Reject misspelled options instead of silently ignoring them. */
export function checkKeys(what, options, known) {
  if (options === null || typeof options !== "object") {
    throw new BrowserLlmError("INVALID_ARGUMENT", `${what} must be an object`);
  }
  for (const k of Object.keys(options)) {
    if (!known.includes(k)) {
      throw new BrowserLlmError("INVALID_ARGUMENT", `unknown ${what} "${k}" (known: ${known.join(", ")})`);
    }
  }
}

const hasWebGpu = () => typeof navigator !== "undefined" && !!navigator.gpu;

/** Is `source` something browser storage handles (URLs, Blobs, or lists of them)? */
function storable(source) {
  const one = (s) => typeof s === "string" || (typeof Blob !== "undefined" && s instanceof Blob);
  return Array.isArray(source) ? source.length > 0 && source.every(one) : one(source);
}

/**
 * A WasmEngine for `source` on the chosen backend. In browsers, URLs and Files go through browser
 * storage (resumable, verified, cached for the next visit): the CPU backend reads the stored file
 * straight into wasm memory, the WebGPU backend uploads it tensor by tensor. Bytes are used as
 * given; Node reads paths and URLs directly. `backend: "auto"` tries WebGPU (skipping software
 * renderers, which are slower than the CPU path) and falls back to the CPU, saying why.
 */
async function wasmEngine(source, { backend = "auto", sha256, cache = true, store, onProgress, signal, contextLength }) {
  const cpuWhy = (why) => `CPU backend (WebAssembly SIMD128): ${why}`;
  let tryGpu = backend !== "cpu";
  let reason = backend === "cpu" ? cpuWhy("requested") : "WebGPU, as requested";
  if (backend === "auto") {
    reason = "WebGPU (auto)";
    if (!hasWebGpu()) {
      tryGpu = false;
      reason = cpuWhy(isNode ? "WebGPU is not available in Node" : "WebGPU is not available in this browser (navigator.gpu is missing)");
    }
  } else if (backend === "webgpu" && !hasWebGpu()) {
    throw new BrowserLlmError("DEVICE_LOST", "WebGPU is not available here (navigator.gpu is missing); use backend \"cpu\" or \"auto\"");
  }
  const gpuOpts = { contextLength, backendReason: reason, avoidSoftware: backend === "auto", onProgress };
  const fallback = (e) => {
    const err = toBrowserLlmError(e);
    if (backend !== "auto" || err.code !== "DEVICE_LOST") throw err;
    return cpuWhy(`WebGPU could not be used: ${err.message}`);
  };

  if (isNode || !storable(source)) {
    if (sha256 !== undefined) {
      throw new BrowserLlmError("INVALID_ARGUMENT", "sha256 is checked by browser storage: pass a URL or a File in a browser");
    }
    const bytes = await readSource(source, { onProgress, signal });
    if (signal?.aborted) throw abortedError();
    if (tryGpu) {
      try {
        return await WasmEngine.fromBytesGpu(bytes, gpuOpts);
      } catch (e) {
        reason = fallback(e);
      }
    }
    return WasmEngine.fromBytes(bytes, { contextLength, backendReason: reason });
  }
  const stored = await openModel(source, { sha256, cache, store, onProgress, signal });
  try {
    if (signal?.aborted) throw abortedError();
    if (tryGpu) {
      try {
        return await WasmEngine.fromStoredGpu(stored, gpuOpts);
      } catch (e) {
        reason = fallback(e);
      }
    }
    if (signal?.aborted) throw abortedError();
    return await WasmEngine.fromStored(stored, { contextLength, backendReason: reason, onProgress });
  } finally {
    stored.free();
  }
}

export class Engine {
  #wasm;
  #queue = Promise.resolve();
  #disposed = false;

  /** @internal use Engine.load */
  constructor(wasm) {
    this.#wasm = wasm;
    this.chat = createChat(this);
  }

  /**
   * Load a GGUF model from a URL, a File/Blob, bytes, or (Node) a file path.
   */
  static async load(source, options = {}) {
    checkKeys("load option", options, LOAD_KEYS);
    const { backend = "auto", signal } = options;
    if (!BACKENDS.includes(backend)) {
      throw new BrowserLlmError("INVALID_ARGUMENT", `backend must be one of ${BACKENDS.join(", ")}, got ${JSON.stringify(backend)}`);
    }
    try {
      if (signal?.aborted) throw abortedError();
      await loadWasm();
      return new Engine(await wasmEngine(source, options));
    } catch (e) {
      throw toBrowserLlmError(e);
    }
  }

  /** Run calls one at a time, in order. */
  #run(fn) {
    const p = this.#queue.then(() => {
      if (this.#disposed) throw new BrowserLlmError("INVALID_ARGUMENT", "the engine was disposed; load the model again");
      return fn();
    });
    this.#queue = p.catch(() => {});
    return p.catch((e) => {
      const err = toBrowserLlmError(e);
      if (err.code === "INTERNAL" && e instanceof WebAssembly.RuntimeError) this.#disposed = true;
      throw err;
    });
  }

  /**
   * Generate a completion of `prompt` (text, or an array of token ids). Resolves with
   * { text, tokenIds, finishReason, usage, timings }; an abort resolves with the text so far and
   * finishReason "abort". Calls on one engine run one at a time, in call order.
   */
  generate(prompt, options = {}) {
    try {
      checkKeys("generate option", options, GENERATE_KEYS);
    } catch (e) {
      return Promise.reject(e);
    }
    const { signal, onToken, onPrefill, ...rest } = options;
    return this.#run(async () => {
      if (signal?.aborted) throw abortedError();
      const w = this.#wasm;
      w.begin(prompt, rest);
      try {
        for (;;) {
          if (signal?.aborted) w.abort();
          const s = await w.step();
          if (s === null) break;
          if (s.kind === "prefill") onPrefill?.({ done: s.done, total: s.total });
          else if (s.text !== "" || s.kind === "token") onToken?.({ text: s.text, tokenId: s.tokenId ?? null });
          await yieldToEventLoop();
        }
      } catch (e) {
        try { w.finish(); } catch { /* the failed step already ended the generation */ }
        throw e;
      }
      return w.finish();
    });
  }

  /** `generate` as an async iterator of { text, tokenId } chunks; breaking out aborts. */
  stream(prompt, options = {}) {
    return streamFrom((opts) => this.generate(prompt, opts), options);
  }

  /** Render chat messages with the model's chat template. */
  applyChatTemplate(messages, addGenerationPrompt = true) {
    return this.#run(async () => this.#wasm.applyChatTemplate(messages, addGenerationPrompt));
  }

  tokenize(text, { addSpecial = true, parseSpecial = true } = {}) {
    return this.#run(async () => Array.from(this.#wasm.tokenize(text, addSpecial, parseSpecial)));
  }

  detokenize(ids) {
    return this.#run(async () => {
      const list = Array.from(ids ?? []);
      if (!list.every((i) => Number.isInteger(i) && i >= 0 && i < 2 ** 32)) {
        throw new BrowserLlmError("INVALID_ARGUMENT", "token ids must be non-negative integers");
      }
      return this.#wasm.detokenize(Uint32Array.from(list));
    });
  }

  /** Architecture, parameters, quantization mix, context, backend and why. */
  info() {
    return this.#run(async () => this.#wasm.info());
  }

  /** Forget the conversation held in the KV cache. */
  reset() {
    return this.#run(async () => this.#wasm.reset());
  }

  /** Free the model's memory; later calls fail. */
  dispose() {
    return this.#run(async () => {
      this.#disposed = true;
      this.#wasm.dispose();
      this.#wasm.free();
    });
  }
}
