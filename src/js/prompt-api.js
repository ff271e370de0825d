// `installLanguageModel(engineOrLoader)`: a `LanguageModel` with the shape of Chrome's Prompt API
// (availability, params, create with download progress, prompt, promptStreaming, append,
// measureContextUsage, contextUsage / contextWindow, clone, destroy; `responseConstraint` as a
// JSON schema or RegExp), run on this package's engine, in pages and in workers. Pages written
// for Chrome's built-in model work where it is missing.

import { BrowserLlmError, invalidArgument } from "./errors.js";

const invalid = invalidArgument;

/** Prompt API input (a string, or messages with string or `[{type: "text", value}]` content) as chat messages. */
function toMessages(input, role = "user") {
  if (typeof input === "string") return [{ role, content: input }];
  if (!Array.isArray(input)) throw invalid("a prompt is a string or an array of { role, content } messages");
  return input.map((m) => {
    if (typeof m === "string") return { role, content: m };
    const content = typeof m?.content === "string" ? m.content : Array.isArray(m?.content)
      ? m.content.map((p) => {
        if (p?.type !== "text") throw invalid(`content of type "${p?.type}" is not supported (text only)`);
        return String(p.value ?? "");
      }).join("")
      : null;
    if (content === null || !["system", "user", "assistant"].includes(m?.role ?? role)) throw invalid("a message is { role: \"system\" | \"user\" | \"assistant\", content }");
    return { role: m.role ?? role, content };
  });
}

/** `responseConstraint` (a JSON schema object, or a RegExp) as chat completion options. */
function constraint(c) {
  if (c == null) return {};
  if (c instanceof RegExp) return { regex: c.source };
  if (typeof c === "object") return { response_format: { type: "json_schema", json_schema: { name: "response", schema: c, strict: true } } };
  throw invalid("responseConstraint must be a JSON schema object or a RegExp");
}

const DEFAULTS = { defaultTopK: 40, maxTopK: 128, defaultTemperature: 0.8, maxTemperature: 2 };

/**
 * Define `LanguageModel` on `target` (default `globalThis`) unless one exists (pass `force: true`
 * to replace it). `engineOrLoader` is an engine, or a function that loads one (called once, by
 * the first `create()`, with an `onProgress` for its download). Returns the class.
 */
export function installLanguageModel(engineOrLoader, { target = globalThis, force = false } = {}) {
  if (target.LanguageModel && !force) return target.LanguageModel;
  let engine = typeof engineOrLoader === "function" ? null : Promise.resolve(engineOrLoader);
  let state = engine ? "available" : "downloadable";
  const monitors = new Set();
  const getEngine = () => {
    engine ??= (async () => {
      state = "downloading";
      try {
        const e = await engineOrLoader({
          onProgress: (p) => {
            if (p.phase !== "download") return;
            for (const m of monitors) m.dispatchEvent(Object.assign(new Event("downloadprogress"), { loaded: p.total ? p.loaded / p.total : 0 }));
          },
        });
        state = "available";
        return e;
      } catch (err) {
        state = "downloadable";
        engine = null;
        throw err;
      }
    })();
    return engine;
  };

  class LanguageModel extends EventTarget {
    #history;
    #options;
    #destroyed = false;
    #window;
    /** Tokens the session's conversation takes (`contextUsage`) out of `contextWindow`. */
    contextUsage = 0;
    contextWindow = 0;

    /** @internal use LanguageModel.create */
    constructor(history, options, window) {
      super();
      this.#history = history;
      this.#options = options;
      this.#window = window;
      this.contextWindow = window;
    }

    static async availability() {
      return state;
    }

    static async params() {
      return { ...DEFAULTS };
    }

    static async create(options = {}) {
      if (options.signal?.aborted) throw new BrowserLlmError("ABORTED", "the operation was aborted");
      const monitor = new EventTarget();
      options.monitor?.(monitor);
      monitors.add(monitor);
      let e;
      try {
        e = await getEngine();
      } finally {
        monitors.delete(monitor);
      }
      monitor.dispatchEvent(Object.assign(new Event("downloadprogress"), { loaded: 1 }));
      const temperature = options.temperature ?? DEFAULTS.defaultTemperature;
      const topK = options.topK ?? DEFAULTS.defaultTopK;
      if (temperature < 0 || temperature > DEFAULTS.maxTemperature) throw invalid(`temperature must be in [0, ${DEFAULTS.maxTemperature}]`);
      if (!Number.isInteger(topK) || topK < 1 || topK > DEFAULTS.maxTopK) throw invalid(`topK must be an integer in [1, ${DEFAULTS.maxTopK}]`);
      const history = options.initialPrompts ? toMessages(options.initialPrompts) : [];
      const info = await e.info();
      const s = new LanguageModel(history, { engine: e, temperature, topK }, info.contextLength);
      await s.#measure();
      return s;
    }

    async #measure() {
      this.contextUsage = this.#history.length ? (await this.#options.engine.tokenizeChat(this.#history, false)).length : 0;
    }

    #check(signal) {
      if (this.#destroyed) throw new BrowserLlmError("INVALID_ARGUMENT", "the session was destroyed");
      if (signal?.aborted) throw new BrowserLlmError("ABORTED", "the operation was aborted");
    }

    #request(input, options, stream) {
      const { engine, temperature, topK } = this.#options;
      return engine.chat.completions.create({
        messages: [...this.#history, ...toMessages(input)], temperature, top_k: topK, stream,
        ...constraint(options.responseConstraint), signal: options.signal,
      });
    }

    /** The reply to `input`, which joins the session's history with it. */
    async prompt(input, options = {}) {
      this.#check(options.signal);
      const r = await this.#request(input, options, false);
      const text = r.choices[0].message.content ?? "";
      if (r.choices[0].finish_reason === "abort") throw new BrowserLlmError("ABORTED", "the operation was aborted");
      this.#history.push(...toMessages(input), { role: "assistant", content: text });
      await this.#measure();
      return text;
    }

    /** The reply as a ReadableStream of text pieces (each new piece, not the text so far). */
    promptStreaming(input, options = {}) {
      this.#check(options.signal);
      let it;
      let text = "";
      return new ReadableStream({
        start: async () => {
          it = (await this.#request(input, options, true))[Symbol.asyncIterator]();
        },
        // Each pull must enqueue, close or fail: a pull that does none of these is not repeated.
        pull: async (ctl) => {
          try {
            for (;;) {
              const { value, done } = await it.next();
              if (done) {
                this.#history.push(...toMessages(input), { role: "assistant", content: text });
                await this.#measure();
                ctl.close();
                return;
              }
              if (value.choices[0]?.finish_reason === "abort") {
                ctl.error(new BrowserLlmError("ABORTED", "the operation was aborted"));
                return;
              }
              const piece = value.choices[0]?.delta?.content ?? "";
              if (piece) {
                text += piece;
                ctl.enqueue(piece);
                return;
              }
            }
          } catch (e) {
            ctl.error(e);
          }
        },
        cancel: async () => {
          await it?.return?.();
        },
      });
    }

    /** Add messages to the history without a reply. */
    async append(input, options = {}) {
      this.#check(options.signal);
      this.#history.push(...toMessages(input));
      await this.#measure();
    }

    /** Tokens `input` would add. */
    async measureContextUsage(input) {
      this.#check();
      return (await this.#options.engine.tokenizeChat(toMessages(input), false)).length;
    }

    async clone(options = {}) {
      this.#check(options.signal);
      const c = new LanguageModel(this.#history.map((m) => ({ ...m })), { ...this.#options }, this.#window);
      c.contextUsage = this.contextUsage;
      return c;
    }

    destroy() {
      this.#destroyed = true;
      this.#history = [];
    }

    get temperature() {
      return this.#options.temperature;
    }

    get topK() {
      return this.#options.topK;
    }
  }

  target.LanguageModel = LanguageModel;
  return LanguageModel;
}
