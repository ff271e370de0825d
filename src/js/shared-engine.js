// One model for all the tabs of an origin: SharedEngine has WorkerEngine's interface, but only one
// tab (the host) holds the model, in its WorkerEngine; the others send their calls to it.
//
// - Election: every tab asks for the Web Lock "browser-llm shared <name>" and holds it while it
//   lives; the holder is the host. When the host tab closes (or disposes), the browser hands the
//   lock to the next tab in line, which loads the model from browser storage (no network once
//   the first host stored it) and announces itself.
// - Messages go over the BroadcastChannel of the same name: calls { t: "call", from, id, op,
//   args }, aborts, and hello/bye (tab counting) to the host; events (progress, tokens), results
//   and errors { to, id } back, and "ready" / "gone" announcements from hosts.
// - Calls run one at a time in arrival order (the host's WorkerEngine queues them); an abort stops
//   only its own call. Calls in flight when the host goes fail with HOST_CHANGED (retryable: the
//   next call goes to the new host); saved sessions stay in storage, shared by every tab.
// - The name is the source's (a URL or Hugging Face id: a File belongs to one tab), or
//   `options.sharedName`.

import { BrowserLlmError, abortedError, invalidArgument, randomId } from "./errors.js";
import { createChat, streamFrom } from "./chat.js";
import { createEmbeddings } from "./embeddings.js";
import { WorkerEngine } from "./worker-engine.js";

/** The operations a client tab may ask of the host, as WorkerEngine methods. */
const OPS = new Set([
  "generate", "embed", "applyChatTemplate", "tokenizeChat", "tokenize", "detokenize", "info", "reset",
  "saveSession", "restoreSession", "listSessions", "deleteSession", "exportSession", "importSession",
]);

function hostChanged(why) {
  return new BrowserLlmError("HOST_CHANGED", `the tab that held the shared model ${why}; retry the call (another tab takes the model over)`);
}

export class SharedEngine {
  #name;
  #source;
  #options;
  #channel;
  #id = randomId("tab", 12);
  /** The host's WorkerEngine, when this tab is the host. */
  #engine = null;
  #hostId = null;
  #clients = new Set();
  #next = 1;
  #pending = new Map();
  #waiting = [];
  #release = null;
  #disposed = false;
  /** Calls from other tabs that this host runs: `${from}:${id}` -> AbortController. */
  #running = new Map();
  #onPageHide = () => this.#leave("closed");

  /** @internal use SharedEngine.load */
  constructor(name, source, options) {
    this.#name = name;
    this.#source = source;
    this.#options = options;
    this.chat = createChat(this);
    this.embeddings = createEmbeddings(this);
  }

  /**
   * Join (or start) the shared engine of `source` (a URL or `hf:` id) for this origin. The first
   * tab loads the model in its Worker (options as WorkerEngine.load); the others use it. Resolves
   * once the model is ready in some tab. `onProgress` reports the host's load.
   */
  static async load(source, options = {}) {
    const { sharedName, onProgress, signal, ...rest } = options ?? {};
    if (typeof source !== "string" || source === "") {
      throw invalidArgument("SharedEngine needs a URL or a Hugging Face id: tabs share a model by its source (a File belongs to one tab)");
    }
    if (typeof BroadcastChannel === "undefined" || typeof navigator === "undefined" || !navigator.locks) {
      throw invalidArgument("SharedEngine needs BroadcastChannel and Web Locks (a browser page): use WorkerEngine here");
    }
    const e = new SharedEngine(`browser-llm shared ${sharedName ?? source}`, source, rest);
    await e.#start(onProgress, signal);
    return e;
  }

  async #start(onProgress, signal) {
    this.#channel = new BroadcastChannel(this.#name);
    this.#channel.onmessage = (ev) => this.#onMessage(ev.data, onProgress);
    addEventListener("pagehide", this.#onPageHide);
    // In line for the lock: granted at once to the first tab, later to the next when a host goes.
    navigator.locks.request(this.#name, () => new Promise((release) => {
      this.#release = release;
      if (this.#disposed) return release();
      this.#becomeHost(onProgress);
    })).catch(() => {});
    this.#post({ t: "hello", from: this.#id });
    const ready = new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      signal?.addEventListener("abort", () => reject(abortedError()), { once: true });
    });
    try {
      await ready;
    } catch (e) {
      this.#leave("failed");
      throw e;
    }
  }

  async #becomeHost(onProgress) {
    this.#hostId = this.#id;
    const failed = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of failed) p.reject(hostChanged("closed"));
    try {
      this.#engine = await WorkerEngine.load(this.#source, {
        ...this.#options,
        onProgress: (p) => { onProgress?.(p); this.#post({ t: "progress", host: this.#id, data: p }); },
      });
    } catch (e) {
      this.#hostId = null;
      this.#post({ t: "gone", host: this.#id, error: { code: e.code, message: e.message } });
      for (const w of this.#waiting.splice(0)) w.reject(e);
      this.#release?.();
      return;
    }
    if (this.#disposed) {
      // Disposed while loading: hand the lock on at once.
      this.#engine.terminate();
      this.#engine = null;
      this.#post({ t: "gone", host: this.#id });
      this.#release?.();
      return;
    }
    this.#post({ t: "ready", host: this.#id });
    for (const w of this.#waiting.splice(0)) w.resolve();
  }

  #post(msg) {
    try {
      this.#channel?.postMessage(msg);
    } catch { /* a closed channel: this tab is leaving */ }
  }

  #onMessage(m, onProgress) {
    if (!m || typeof m !== "object") return;
    if (this.#engine && this.#hostId === this.#id) return this.#serve(m);
    switch (m.t) {
      case "ready":
        if (this.#hostId !== m.host) {
          // A new host: calls sent to the old one are lost with it.
          const lost = [...this.#pending.values()];
          this.#pending.clear();
          for (const p of lost) p.reject(hostChanged("closed"));
          this.#hostId = m.host;
          this.#post({ t: "hello", from: this.#id });
        }
        for (const w of this.#waiting.splice(0)) w.resolve();
        return;
      case "gone":
        if (m.host === this.#hostId) {
          this.#hostId = null;
          const lost = [...this.#pending.values()];
          this.#pending.clear();
          for (const p of lost) p.reject(m.error ? new BrowserLlmError(m.error.code, m.error.message) : hostChanged("closed"));
        }
        return;
      case "progress":
        onProgress?.(m.data);
        return;
    }
    if (m.to !== this.#id) return;
    const p = this.#pending.get(m.id);
    if (!p) return;
    if (m.t === "event") {
      p.handlers[m.event]?.(m.data);
    } else {
      this.#pending.delete(m.id);
      p.cleanup();
      if (m.t === "result") p.resolve(m.result);
      else p.reject(new BrowserLlmError(m.error.code, m.error.message));
    }
  }

  /** Host: a message from a client tab. */
  async #serve(m) {
    switch (m.t) {
      case "hello":
        this.#clients.add(m.from);
        this.#post({ t: "ready", host: this.#id });
        return;
      case "bye":
        this.#clients.delete(m.from);
        return;
      case "abort":
        this.#running.get(`${m.from}:${m.id}`)?.abort();
        return;
      case "call":
        break;
      default:
        return;
    }
    const { from, id, op, args } = m;
    this.#clients.add(from);
    const reply = (msg) => this.#post({ ...msg, to: from, id });
    if (!OPS.has(op)) return reply({ t: "error", error: { code: "INVALID_ARGUMENT", message: `unknown operation ${op}` } });
    const ctl = new AbortController();
    this.#running.set(`${from}:${id}`, ctl);
    try {
      const result = op === "generate"
        ? await this.#engine.generate(args[0], {
          ...(args[1] ?? {}), signal: ctl.signal,
          onToken: (t) => reply({ t: "event", event: "token", data: t }),
          onPrefill: (p) => reply({ t: "event", event: "prefill", data: p }),
        })
        : op === "info" ? await this.info() : await this.#engine[op](...args);
      reply({ t: "result", result });
    } catch (e) {
      reply({ t: "error", error: { code: e.code ?? "INTERNAL", message: e.message ?? String(e) } });
    } finally {
      this.#running.delete(`${from}:${id}`);
    }
  }

  /** Run `op` here (host) or in the host tab. */
  #call(op, args, { signal, onToken, onPrefill } = {}) {
    if (this.#disposed) return Promise.reject(invalidArgument("the engine was disposed; load the model again"));
    if (signal?.aborted) return Promise.reject(abortedError());
    if (this.#engine && this.#hostId === this.#id) {
      if (op === "generate") return this.#engine.generate(args[0], { ...(args[1] ?? {}), signal, onToken, onPrefill });
      return this.#engine[op](...args);
    }
    if (this.#hostId === null || this.#hostId === this.#id) {
      // Between hosts, or this tab is loading the model: wait for it.
      return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject })).then(() => this.#call(op, args, { signal, onToken, onPrefill }));
    }
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const onAbort = () => this.#post({ t: "abort", from: this.#id, id });
      signal?.addEventListener("abort", onAbort);
      const cleanup = () => signal?.removeEventListener("abort", onAbort);
      this.#pending.set(id, { resolve, reject, cleanup, handlers: { token: onToken, prefill: onPrefill } });
      this.#post({ t: "call", from: this.#id, id, op, args });
    });
  }

  generate(prompt, options = {}) {
    const { signal, onToken, onPrefill, ...rest } = options ?? {};
    return this.#call("generate", [prompt, rest], { signal, onToken, onPrefill });
  }
  stream(prompt, options = {}) {
    return streamFrom((opts) => this.generate(prompt, opts), options);
  }
  embed(text) { return this.#call("embed", [text]); }
  applyChatTemplate(messages, addGenerationPrompt = true, tools = undefined) {
    return this.#call("applyChatTemplate", [messages, addGenerationPrompt, tools]);
  }
  tokenizeChat(messages, addGenerationPrompt = true, tools = undefined) {
    return this.#call("tokenizeChat", [messages, addGenerationPrompt, tools]);
  }
  tokenize(text, options = {}) { return this.#call("tokenize", [text, options]); }
  detokenize(ids) { return this.#call("detokenize", [Array.from(ids ?? [])]); }
  reset() { return this.#call("reset", []); }
  saveSession(name, options = {}) { return this.#call("saveSession", [name, options]); }
  restoreSession(name) { return this.#call("restoreSession", [name]); }
  listSessions() { return this.#call("listSessions", []); }
  deleteSession(name) { return this.#call("deleteSession", [name]); }
  exportSession() { return this.#call("exportSession", []); }
  importSession(bytes) { return this.#call("importSession", [bytes]); }

  /** The model's info, with `shared: { host, tabs }` (whether this tab holds the model; tabs attached). */
  async info() {
    if (this.#engine && this.#hostId === this.#id) {
      const info = await this.#engine.info();
      return { ...info, shared: { host: true, tabs: 1 + this.#clients.size } };
    }
    const info = await this.#call("info", []);
    return { ...info, shared: { ...info.shared, host: false } };
  }

  #leave(why) {
    if (this.#disposed) return;
    this.#disposed = true;
    removeEventListener("pagehide", this.#onPageHide);
    if (this.#engine && this.#hostId === this.#id) {
      this.#post({ t: "gone", host: this.#id });
      this.#engine.terminate();
      this.#engine = null;
    } else {
      this.#post({ t: "bye", from: this.#id });
    }
    for (const p of this.#pending.values()) { p.cleanup(); p.reject(invalidArgument(`the engine was disposed (${why})`)); }
    this.#pending.clear();
    for (const w of this.#waiting.splice(0)) w.reject(invalidArgument("the engine was disposed"));
    this.#release?.();
    this.#channel?.close();
    this.#channel = null;
  }

  /** Leave the shared engine: a host hands the model over to the next tab in line. */
  async dispose() {
    this.#leave("disposed");
  }
}
