// Streaming and OpenAI-style chat completions, built on any engine's `generate` and
// `tokenizeChat` (the same code serves Engine and WorkerEngine).

import { BrowserLlmError } from "./errors.js";

/** OpenAI's default temperature (Rust's `contract().chatDefaults`; every other default is generate's). */
export const CHAT_TEMPERATURE = 1.0;

/**
 * Turn a callback-style generation into an async iterator of its tokens. `run(opts)` starts the
 * generation with `opts.onToken` and `opts.signal` set; leaving the loop early aborts it. The
 * iterator's return value is the final result.
 */
export async function* streamFrom(run, options = {}) {
  const { signal: userSignal, onToken, ...rest } = options;
  const ctl = new AbortController();
  const onUserAbort = () => ctl.abort();
  if (userSignal?.aborted) ctl.abort();
  userSignal?.addEventListener("abort", onUserAbort);
  const queue = [];
  let wake = null;
  let settled = false;
  let result;
  let error;
  const notify = () => { if (wake) { const w = wake; wake = null; w(); } };
  run({ ...rest, signal: ctl.signal, onToken: (t) => { onToken?.(t); queue.push(t); notify(); } }).then(
    (r) => { result = r; settled = true; notify(); },
    (e) => { error = e; settled = true; notify(); },
  );
  try {
    for (;;) {
      if (queue.length > 0) {
        yield queue.shift();
        continue;
      }
      if (settled) break;
      await new Promise((r) => { wake = r; });
    }
    if (error) throw error;
    return result;
  } finally {
    userSignal?.removeEventListener("abort", onUserAbort);
    if (!settled) ctl.abort();
  }
}

const CHAT_KEYS = new Set([
  "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop",
  "frequency_penalty", "presence_penalty", "repetition_penalty", "signal", "model", "n", "stream_options",
]);

function generateOptions(req) {
  for (const k of Object.keys(req)) {
    if (!CHAT_KEYS.has(k)) throw new BrowserLlmError("INVALID_ARGUMENT", `unknown chat completion option "${k}"`);
  }
  if (req.n !== undefined && req.n !== 1) throw new BrowserLlmError("INVALID_ARGUMENT", "only n = 1 is supported");
  if (!Array.isArray(req.messages) || req.messages.length === 0) {
    throw new BrowserLlmError("INVALID_ARGUMENT", "messages must be a non-empty array of { role, content }");
  }
  const stop = req.stop === undefined || req.stop === null ? undefined : Array.isArray(req.stop) ? req.stop : [req.stop];
  const opts = {
    maxTokens: req.max_completion_tokens ?? req.max_tokens,
    temperature: req.temperature ?? CHAT_TEMPERATURE,
    topP: req.top_p,
    topK: req.top_k,
    minP: req.min_p,
    seed: req.seed,
    stop,
    frequencyPenalty: req.frequency_penalty,
    presencePenalty: req.presence_penalty,
    repetitionPenalty: req.repetition_penalty,
    signal: req.signal,
  };
  for (const k of Object.keys(opts)) if (opts[k] === undefined || opts[k] === null) delete opts[k];
  return opts;
}

function completionId() {
  const hex = Array.from({ length: 12 }, () => Math.floor(Math.random() * 16).toString(16)).join("");
  return `chatcmpl-${hex}`;
}

/** `engine.chat.completions.create(...)`, OpenAI-shaped. */
export function createChat(engine) {
  async function modelName() {
    const info = await engine.info();
    return info.name || info.architecture;
  }

  async function create(req) {
    if (!req || typeof req !== "object") throw new BrowserLlmError("INVALID_ARGUMENT", "create() needs a request object");
    const opts = generateOptions(req);
    const messages = req.messages.map((m) => ({ role: m?.role, content: typeof m?.content === "string" ? m.content : m?.content == null ? "" : String(m.content) }));
    // Token ids, not text: message contents must never become control tokens (a user typing
    // "<|im_start|>system" cannot forge a turn).
    const prompt = await engine.tokenizeChat(messages, true);
    const id = completionId();
    const created = Math.floor(Date.now() / 1000);
    const model = req.model ?? (await modelName());
    if (!req.stream) {
      const r = await engine.generate(prompt, opts);
      return {
        id, object: "chat.completion", created, model,
        choices: [{ index: 0, message: { role: "assistant", content: r.text }, finish_reason: r.finishReason, logprobs: null }],
        usage: { prompt_tokens: r.usage.promptTokens, completion_tokens: r.usage.completionTokens, total_tokens: r.usage.totalTokens },
        timings: r.timings,
      };
    }
    return (async function* chunks() {
      const chunk = (delta, finish, extra = {}) => ({
        id, object: "chat.completion.chunk", created, model,
        choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }], ...extra,
      });
      yield chunk({ role: "assistant", content: "" }, null);
      const it = streamFrom((o) => engine.generate(prompt, o), opts);
      let step;
      try {
        step = await it.next();
        while (!step.done) {
          if (step.value.text !== "") yield chunk({ content: step.value.text }, null);
          step = await it.next();
        }
      } finally {
        if (!step?.done) await it.return(); // the consumer stopped early: abort the generation
      }
      const r = step.value;
      yield chunk({}, r.finishReason, {
        usage: { prompt_tokens: r.usage.promptTokens, completion_tokens: r.usage.completionTokens, total_tokens: r.usage.totalTokens },
        timings: r.timings,
      });
    })();
  }

  return { completions: { create } };
}
