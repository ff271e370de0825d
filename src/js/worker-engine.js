// The Engine interface over a dedicated Worker: the page's thread never runs the model.
// Progress, tokens and errors (with their `code`) cross the boundary; AbortSignals are forwarded
// as abort messages. A Worker that dies fails every pending call: by its `error` event, an
// unreadable reply, or silence (a Worker the browser killed sends nothing: while calls are
// pending it is pinged, and one that stays silent past `heartbeatTimeout` is given up).

import { BrowserLlmError, abortedError } from "./errors.js";
import { createChat, streamFrom } from "./chat.js";
import { createEmbeddings } from "./embeddings.js";
import { requestPersist } from "./storage.js";

/** Workers an engine owns: two engines on one Worker would take each other's replies. */
const owned = new WeakSet();

const DEFAULT_HEARTBEAT_TIMEOUT = 60000;

export class WorkerEngine {
  #worker;
  #next = 1;
  #pending = new Map();
  #dead = null;
  #heartbeatTimeout;
  #lastHeard = 0;
  #pinger = null;

  /** @internal use WorkerEngine.load */
  constructor(worker, heartbeatTimeout = DEFAULT_HEARTBEAT_TIMEOUT) {
    if (owned.has(worker)) {
      throw new BrowserLlmError("INVALID_ARGUMENT", "this Worker already serves another WorkerEngine; give each engine its own");
    }
    owned.add(worker);
    this.#worker = worker;
    this.#heartbeatTimeout = heartbeatTimeout;
    this.chat = createChat(this);
    this.embeddings = createEmbeddings(this);
    worker.onmessage = (ev) => this.#onMessage(ev.data);
    worker.onerror = (ev) => {
      ev?.preventDefault?.();
      this.#fail(new BrowserLlmError("INTERNAL", `the engine worker failed: ${ev?.message ?? "unknown error"}`));
    };
    // A reply that cannot be deserialized would leave its call pending forever.
    worker.onmessageerror = () => {
      this.#fail(new BrowserLlmError("INTERNAL", "a message from the engine worker could not be read; the worker was stopped"));
    };
  }

  /**
   * Start a Worker and load the model in it (same options as Engine.load). `worker` may be a
   * Worker you created from this package's `worker.js` (for bundlers that need it explicit).
   */
  static async load(source, options = {}) {
    const { onProgress, signal, worker, heartbeatTimeout = DEFAULT_HEARTBEAT_TIMEOUT, ...rest } = options ?? {};
    if (typeof heartbeatTimeout !== "number" || !(heartbeatTimeout >= 0)) {
      throw new BrowserLlmError("INVALID_ARGUMENT", "heartbeatTimeout must be a number of milliseconds (0: wait forever)");
    }
    const w = worker ?? new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "browser-llm" });
    if (worker != null && (typeof worker.postMessage !== "function" || typeof worker.terminate !== "function")) {
      throw new BrowserLlmError("INVALID_ARGUMENT", "worker must be a Worker running this package's worker.js");
    }
    const engine = new WorkerEngine(w, heartbeatTimeout);
    try {
      await requestPersist(rest); // from the page: a Worker has no navigator.storage.persist()
      await engine.#call("load", { source, options: rest }, { signal, onProgress });
      return engine;
    } catch (e) {
      engine.terminate();
      throw e;
    }
  }

  #onMessage(msg) {
    this.#lastHeard = Date.now();
    const p = this.#pending.get(msg?.id);
    if (!p) return;
    if (msg.event) {
      p.handlers[msg.event]?.(msg.data);
      return;
    }
    this.#pending.delete(msg.id);
    p.cleanup();
    this.#watch();
    if (msg.error) {
      const err = new BrowserLlmError(msg.error.code, msg.error.message);
      if (err.code === "INTERNAL" || msg.error.trapped) this.#fail(err); // a crashed engine is not reused
      p.reject(err);
    } else {
      p.resolve(msg.result);
    }
  }

  #fail(err) {
    this.#dead = err;
    for (const p of this.#pending.values()) { p.cleanup(); p.reject(err); }
    this.#pending.clear();
    this.#watch();
    this.#worker.terminate();
  }

  /** Ping the Worker while calls are pending; give it up when it stays silent too long. */
  #watch() {
    const want = this.#pending.size > 0 && this.#heartbeatTimeout > 0;
    if (!want) {
      clearInterval(this.#pinger);
      this.#pinger = null;
      return;
    }
    if (this.#pinger !== null) return;
    this.#lastHeard = Date.now();
    const every = Math.max(10, Math.min(5000, this.#heartbeatTimeout / 4));
    this.#pinger = setInterval(() => {
      const silent = Date.now() - this.#lastHeard;
      if (silent > this.#heartbeatTimeout) {
        this.#fail(new BrowserLlmError(
          "INTERNAL",
          `the engine worker stopped answering (silent for ${Math.round(silent / 1000)} s: killed by the browser, out of memory, or stuck); it was stopped`,
        ));
        return;
      }
      try { this.#worker.postMessage({ id: 0, op: "ping" }); } catch { /* judged by the silence */ }
    }, every);
  }

  #call(op, args, { signal, onProgress, onToken, onPrefill } = {}) {
    if (this.#dead) return Promise.reject(this.#dead);
    if (signal?.aborted) return Promise.reject(abortedError());
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const onAbort = () => this.#worker.postMessage({ id: 0, op: "abort", args: { target: id } });
      signal?.addEventListener("abort", onAbort);
      const cleanup = () => signal?.removeEventListener("abort", onAbort);
      this.#pending.set(id, { resolve, reject, cleanup, handlers: { progress: onProgress, token: onToken, prefill: onPrefill } });
      this.#watch();
      try {
        this.#worker.postMessage({ id, op, args });
      } catch (e) {
        this.#pending.delete(id);
        cleanup();
        this.#watch();
        reject(new BrowserLlmError("INVALID_ARGUMENT", `cannot send this to the worker: ${e.message}`));
      }
    });
  }

  generate(prompt, options = {}) {
    const { signal, onToken, onPrefill, ...rest } = options;
    return this.#call("generate", { prompt, options: rest }, { signal, onToken, onPrefill });
  }
  stream(prompt, options = {}) {
    return streamFrom((opts) => this.generate(prompt, opts), options);
  }
  embed(text) {
    return this.#call("embed", { text });
  }

  applyChatTemplate(messages, addGenerationPrompt = true, tools = undefined) {
    return this.#call("applyChatTemplate", { messages, addGenerationPrompt, tools });
  }
  tokenizeChat(messages, addGenerationPrompt = true, tools = undefined) {
    return this.#call("tokenizeChat", { messages, addGenerationPrompt, tools });
  }
  tokenize(text, options = {}) { return this.#call("tokenize", { text, options }); }
  detokenize(ids) { return this.#call("detokenize", { ids: Array.from(ids ?? []) }); }
  info() { return this.#call("info", {}); }
  reset() { return this.#call("reset", {}); }
  saveSession(name, options = {}) { return this.#call("saveSession", { name, options }); }
  restoreSession(name) { return this.#call("restoreSession", { name }); }
  listSessions() { return this.#call("listSessions", {}); }
  deleteSession(name) { return this.#call("deleteSession", { name }); }
  exportSession() { return this.#call("exportSession", {}); }
  importSession(bytes) { return this.#call("importSession", { bytes }); }

  /** Free the model and stop the worker. */
  async dispose() {
    if (this.#dead) return;
    try { await this.#call("dispose", {}); } finally { this.terminate(); }
  }

  /** Stop the worker at once (pending calls fail with ABORTED). */
  terminate() {
    if (!this.#dead) this.#fail(abortedError());
  }
}
