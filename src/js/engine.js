// The engine on the calling thread: wraps the wasm `WasmEngine`, drives generation step by step
// (yielding to the event loop between steps so aborts and rendering get through), and queues
// calls so only one runs at a time. WorkerEngine (worker-engine.js) runs this same class in a
// dedicated Worker.

import { BrowserLlmError, abortedError, toBrowserLlmError } from "./errors.js";
import { templateMessages } from "./messages.js";
import { ensureThreads, guard, isNode, loadWasm, markCrashed, yieldToEventLoop } from "./runtime.js";
import { readSource } from "./source.js";
import { createChat, streamFrom } from "./chat.js";
import { createEmbeddings } from "./embeddings.js";

/** Is `source` something browser storage handles (URLs, Blobs, or lists of them)? */
function storable(source) {
  const one = (s) => typeof s === "string" || (typeof Blob !== "undefined" && s instanceof Blob);
  return Array.isArray(source) ? source.length > 0 && source.every(one) : one(source);
}

/**
 * A WasmEngine for `source`. Rust does the rest (one load path, one backend policy: see the
 * crate's `load` module): in browsers URLs and Files go through browser storage (resumable,
 * verified, cached for the next visit); bytes are read tensor by tensor. Node reads paths and
 * URLs into bytes here first. The options are checked before anything is read.
 */
async function wasmEngine(rt, source, options) {
  rt.wasm.checkLoadOptions(options);
  await ensureThreads(rt, options.threads);
  const { onProgress, signal } = options;
  // In Node a Hugging Face id becomes its URL here (browser storage resolves ids itself).
  if (isNode && typeof source === "string" && source.startsWith("hf:")) {
    const urls = rt.wasm.resolveHubId(source, options.hfEndpoint);
    source = urls.length === 1 ? urls[0] : urls;
  }
  const src = isNode || !storable(source) ? await readSource(source, { onProgress, signal }) : source;
  if (signal?.aborted) throw abortedError();
  return guard(rt, rt.wasm.WasmEngine.load(src, options));
}

export class Engine {
  #wasm;
  #runtime;
  #threads;
  #queue = Promise.resolve();
  #disposed = false;
  /** dispose() was called: a generation in flight stops at its next step. */
  #disposing = false;

  /** @internal use Engine.load */
  constructor(wasm, runtime, threads) {
    this.#wasm = wasm;
    this.#runtime = runtime;
    this.#threads = threads;
    this.chat = createChat(this);
    this.embeddings = createEmbeddings(this);
  }

  /**
   * Load a GGUF model from a URL, a File/Blob, bytes, or (Node) a file path.
   */
  static async load(source, options = {}) {
    let rt = null;
    try {
      options ??= {};
      if (options.signal?.aborted) throw abortedError();
      // (`threads` is checked with the other options, by the module.)
      rt = await loadWasm({ threads: Number.isInteger(options.threads) ? options.threads : undefined });
      return new Engine(await wasmEngine(rt, source, options), rt, options.threads);
    } catch (e) {
      if (e instanceof WebAssembly.RuntimeError) throw markCrashed(rt, e);
      throw toBrowserLlmError(e);
    }
  }

  /** Run calls one at a time, in order. */
  #run(fn) {
    const p = this.#queue.then(() => {
      if (this.#disposed) throw new BrowserLlmError("INVALID_ARGUMENT", "the engine was disposed; load the model again");
      const crashed = this.#runtime?.crashed;
      if (crashed) {
        this.#disposed = true;
        throw new BrowserLlmError("INTERNAL", `the engine's WebAssembly module crashed (${crashed.message}); load the model again`, { cause: crashed });
      }
      return fn();
    });
    // A GPU engine whose device failed (lost, out of memory) fails the call in flight with
    // DEVICE_LOST and loads the model again, on a new device or the CPU, before the next call
    // runs (info().backendReason then says so). When it cannot, later calls fail with why.
    this.#queue = p.then(() => {}, (e) => (e?.code === "DEVICE_LOST" ? this.#recover() : undefined));
    return p.catch((e) => {
      if (e instanceof WebAssembly.RuntimeError) {
        this.#disposed = true;
        throw markCrashed(this.#runtime, e); // the whole module instance, not just this engine
      }
      if (this.#runtime?.crashed && e === this.#runtime.crashError) this.#disposed = true; // trapped asynchronously (guard)
      throw toBrowserLlmError(e);
    });
  }

  async #recover() {
    try {
      if (!this.#disposed) await guard(this.#runtime, this.#wasm.recover());
    } catch { /* the engine keeps why, for the next call */ }
  }

  /**
   * Generate a completion of `prompt`: text, an array of token ids, or a chat
   * `{ messages, tools?, tool_choice?, parallel_tool_calls? }` (the reply to it; rendering,
   * tokenizing, tool calls and their parsing all happen in wasm). Resolves with
   * { text, tokenIds, finishReason, usage, timings } (a chat adds { content, toolCalls, deltas });
   * an abort resolves with the text so far and finishReason "abort". Calls on one engine run one
   * at a time, in call order.
   */
  generate(prompt, options = {}) {
    if (options === null || typeof options !== "object") {
      return Promise.reject(new BrowserLlmError("INVALID_ARGUMENT", "generate options must be an object"));
    }
    const { signal, onToken, onPrefill, ...rest } = options;
    return this.#run(async () => {
      for (const [name, f] of [["onToken", onToken], ["onPrefill", onPrefill]]) {
        if (f != null && typeof f !== "function") throw new BrowserLlmError("INVALID_ARGUMENT", `${name} must be a function`);
      }
      if (signal?.aborted) throw abortedError();
      const w = this.#wasm;
      if (isChatPrompt(prompt)) w.beginChat({ ...prompt, messages: templateMessages(prompt.messages) }, rest);
      else w.begin(prompt, rest);
      const logprobs = rest.logprobs ? [] : null;
      try {
        for (;;) {
          if (signal?.aborted || this.#disposing) w.abort();
          const s = await guard(this.#runtime, w.step());
          if (s === null) break;
          if (s.kind === "prefill") onPrefill?.({ done: s.done, total: s.total });
          else if (s.text !== "" || s.kind === "token") {
            if (s.logprob) logprobs.push(s.logprob);
            const t = { text: s.text, tokenId: s.tokenId ?? null };
            if (s.logprob) t.logprob = s.logprob;
            if (s.deltas) t.deltas = s.deltas;
            onToken?.(t);
          }
          await yieldToEventLoop();
        }
      } catch (e) {
        try { w.finish(); } catch { /* the failed step already ended the generation */ }
        throw e;
      }
      const r = w.finish();
      return logprobs ? { ...r, logprobs } : r;
    });
  }

  /** `generate` as an async iterator of { text, tokenId } chunks; breaking out aborts. */
  stream(prompt, options = {}) {
    return streamFrom((opts) => this.generate(prompt, opts), options);
  }

  /** The embedding of `text`: `{ embedding: Float32Array, tokens }` (see `embeddings.create`). */
  embed(text) {
    return this.#run(async () => {
      if (typeof text !== "string") throw new BrowserLlmError("INVALID_ARGUMENT", "embed() needs a string");
      return guard(this.#runtime, this.#wasm.embed(text));
    });
  }

  /** Render chat messages with the model's chat template. */
  applyChatTemplate(messages, addGenerationPrompt = true, tools = undefined) {
    return this.#run(async () => this.#wasm.applyChatTemplate(messages, addGenerationPrompt, tools));
  }

  /** Token ids of the chat prompt; message contents are plain text, never control tokens. */
  tokenizeChat(messages, addGenerationPrompt = true, tools = undefined) {
    return this.#run(async () => Array.from(this.#wasm.tokenizeChat(messages, addGenerationPrompt, tools)));
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
    return this.#run(async () => {
      const info = this.#wasm.info();
      const why = this.#threads === 1 ? "one thread was asked for (threads: 1)" : this.#runtime.threadsReason ?? "this machine has one core";
      return {
        ...info,
        cpuThreadsReason: info.backend === "cpu" && info.cpuThreads === 1 ? why : null,
        wasmMemoryBytes: this.#runtime.wasm.wasmMemoryBytes(),
      };
    });
  }

  /**
   * Save the conversation the engine holds (its tokens and KV cache) in browser storage as
   * `name`, for this model: the next page, after a reload, restores it instead of running the
   * prompt again. `{ maxSessionBytes }` caps all saved sessions together (default 512 MiB; the
   * least recently used go first). Resolves to `{ model, name, bytes, tokens, savedAtMs, usedAtMs }`.
   */
  saveSession(name, options = {}) {
    return this.#run(async () => guard(this.#runtime, this.#wasm.saveSession(sessionName(name), options)));
  }

  /**
   * Restore saved session `name`: the next `generate` or `chat.completions.create` whose prompt
   * starts with its tokens reuses them (`usage.cachedTokens`). Resolves to its record with
   * `alreadyHeld`, or `null` when there is none. A damaged session, or one of another model, is
   * refused with INTEGRITY and removed; one longer than the context is CONTEXT_OVERFLOW.
   */
  restoreSession(name) {
    return this.#run(async () => guard(this.#runtime, this.#wasm.restoreSession(sessionName(name))));
  }

  /** This model's saved sessions, most recently used first. */
  listSessions() {
    return this.#run(async () => guard(this.#runtime, this.#wasm.listSessions()));
  }

  /** Remove saved session `name`; resolves to whether there was one. */
  deleteSession(name) {
    return this.#run(async () => guard(this.#runtime, this.#wasm.deleteSession(sessionName(name))));
  }

  /** The session file of what the engine holds, as a Uint8Array (to store anywhere, e.g. in Node). */
  exportSession() {
    return this.#run(async () => guard(this.#runtime, this.#wasm.exportSession()));
  }

  /** Restore a session file from `exportSession`; resolves to `{ tokens, alreadyHeld }`. */
  importSession(bytes) {
    return this.#run(async () => {
      if (!(bytes instanceof Uint8Array)) throw new BrowserLlmError("INVALID_ARGUMENT", "importSession() needs a Uint8Array");
      return guard(this.#runtime, this.#wasm.importSession(bytes));
    });
  }

  /** Forget the conversation held in the KV cache. */
  reset() {
    return this.#run(async () => this.#wasm.reset());
  }

  /** Free the model's memory; later calls fail. A generation in flight stops at once (finishReason "abort"). */
  dispose() {
    this.#disposing = true;
    return this.#run(async () => {
      this.#disposed = true;
      this.#wasm.dispose();
      this.#wasm.free();
    });
  }
}

function sessionName(name) {
  if (typeof name !== "string") throw new BrowserLlmError("INVALID_ARGUMENT", "a session name must be a string");
  return name;
}

/** A chat prompt: a plain object (not text, not token ids). */
function isChatPrompt(prompt) {
  return prompt !== null && typeof prompt === "object" && !Array.isArray(prompt) && !ArrayBuffer.isView(prompt);
}
