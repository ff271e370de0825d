// Streaming and OpenAI-style chat completions, built on any engine's `generate` (the same code
// serves Engine and WorkerEngine). Only shapes are converted here: OpenAI's request into a chat
// prompt and generate options, the reply's pieces into OpenAI's objects. The template, the
// tokens, tool calls (described, forced, parsed) and the streamed text's hold-back are wasm's
// (`beginChat` in src/wasm/engine.rs, src/chat/).

import { invalidArgument, randomId } from "./errors.js";

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

// Every field of OpenAI's chat completion request: the official SDK may send any of them.
// Extras of ours: top_k, min_p, repetition_penalty, grammar, regex, signal, session,
// context_overflow ("error", "drop-oldest" or "shift"), speculation (as generate's).
const CHAT_KEYS = new Set([
  "messages", "model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p",
  "n", "stop", "seed", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs",
  "response_format", "tools", "tool_choice", "parallel_tool_calls", "user", "metadata", "store", "service_tier",
  "reasoning_effort", "modalities", "audio", "prediction", "web_search_options", "prompt_cache_key",
  "safety_identifier", "verbosity", "functions", "function_call",
  "top_k", "min_p", "repetition_penalty", "grammar", "regex", "signal", "session", "context_overflow",
  "speculation",
]);

const invalid = invalidArgument;

function generateOptions(req) {
  for (const k of Object.keys(req)) {
    if (!CHAT_KEYS.has(k)) throw invalid(`unknown chat completion option "${k}"`);
  }
  // Fields that ask for what a local text model cannot do fail clearly; the rest that do not
  // apply here (user, metadata, store, service_tier, prompt_cache_key, ...) are ignored.
  if (req.n !== undefined && req.n !== null && req.n !== 1) throw invalid("only n = 1 is supported");
  if (req.logit_bias && Object.keys(req.logit_bias).length > 0) throw invalid("logit_bias is not supported");
  if (Array.isArray(req.modalities) && req.modalities.some((m) => m !== "text")) throw invalid("only the text modality is supported");
  if (req.audio) throw invalid("audio output is not supported");
  if (req.web_search_options) throw invalid("web search is not supported");
  if (req.functions || req.function_call) throw invalid("functions/function_call are deprecated: use tools/tool_choice");
  if (!Array.isArray(req.messages) || req.messages.length === 0) {
    throw invalid("messages must be a non-empty array of { role, content }");
  }
  if (req.top_logprobs != null && !req.logprobs) throw invalid("top_logprobs needs logprobs: true");
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
    responseFormat: req.response_format,
    grammar: req.grammar,
    regex: req.regex,
    logprobs: req.logprobs || undefined,
    topLogprobs: req.logprobs ? req.top_logprobs : undefined,
    signal: req.signal,
    contextOverflow: req.context_overflow,
    speculation: req.speculation,
  };
  for (const k of Object.keys(opts)) if (opts[k] === undefined || opts[k] === null) delete opts[k];
  return opts;
}

/** OpenAI's usage object from a generate() result. */
function usageOf(r) {
  return {
    prompt_tokens: r.usage.promptTokens,
    completion_tokens: r.usage.completionTokens,
    total_tokens: r.usage.totalTokens,
    prompt_tokens_details: { cached_tokens: r.usage.cachedTokens },
  };
}

/** `engine.chat.completions.create(...)`, OpenAI-shaped. */
export function createChat(engine) {
  async function modelName() {
    const info = await engine.info();
    return info.name || info.architecture;
  }

  /**
   * `session: "name"`: restore the saved session before the request (a missing one is a cold
   * start; a damaged one is removed and reported in `session.error`, and the request runs
   * cold), save after it. Returns what the response's `session` field says.
   */
  async function restoreFor(name) {
    if (name === undefined || name === null) return null;
    if (typeof name !== "string") throw invalid("session must be a string (the saved session's name)");
    try {
      const r = await engine.restoreSession(name);
      return { name, restoredTokens: r ? r.tokens : 0, savedTokens: 0 };
    } catch (e) {
      if (e?.code !== "INTEGRITY" && e?.code !== "CONTEXT_OVERFLOW") throw e;
      return { name, restoredTokens: 0, savedTokens: 0, error: { code: e.code, message: e.message } };
    }
  }
  async function saveFor(session) {
    if (!session) return null;
    const m = await engine.saveSession(session.name);
    return { ...session, savedTokens: m.tokens };
  }

  async function create(req) {
    if (!req || typeof req !== "object") throw invalid("create() needs a request object");
    const opts = generateOptions(req);
    const prompt = { messages: req.messages };
    for (const k of ["tools", "tool_choice", "parallel_tool_calls"]) if (req[k] != null) prompt[k] = req[k];
    const id = randomId("chatcmpl");
    const created = Math.floor(Date.now() / 1000);
    const model = req.model ?? (await modelName());
    if (!req.stream) {
      const restored = await restoreFor(req.session);
      const r = await engine.generate(prompt, opts);
      const session = await saveFor(restored);
      const message = { role: "assistant", content: r.content, refusal: null };
      if (r.toolCalls.length > 0) message.tool_calls = r.toolCalls;
      return {
        id, object: "chat.completion", created, model,
        choices: [{ index: 0, message, finish_reason: r.finishReason, logprobs: r.logprobs ? { content: r.logprobs, refusal: null } : null }],
        usage: usageOf(r),
        timings: r.timings,
        ...(session ? { session } : {}),
        ...(r.droppedMessages !== undefined ? { dropped_messages: r.droppedMessages } : {}),
      };
    }
    const restored = await restoreFor(req.session);
    const includeUsage = !!req.stream_options?.include_usage;
    return (async function* chunks() {
      const chunk = (delta, finish, logprobs = null) => ({
        id, object: "chat.completion.chunk", created, model,
        choices: [{ index: 0, delta, finish_reason: finish, logprobs }],
        ...(includeUsage ? { usage: null } : {}),
      });
      yield chunk({ role: "assistant", content: "" }, null);
      const it = streamFrom((o) => engine.generate(prompt, o), opts);
      let step;
      let pending = []; // logprobs of tokens whose text is not out yet
      const deltas = function* (pieces) {
        for (const p of pieces ?? []) {
          const { toolCall } = p;
          const delta = toolCall
            ? { tool_calls: [{ index: toolCall.index, id: toolCall.id, type: toolCall.type, function: toolCall.function }] }
            : { content: p.content };
          yield chunk(delta, null, opts.logprobs ? { content: pending, refusal: null } : null);
          pending = [];
        }
      };
      try {
        step = await it.next();
        while (!step.done) {
          if (step.value.logprob) pending.push(step.value.logprob);
          yield* deltas(step.value.deltas);
          step = await it.next();
        }
      } finally {
        if (!step?.done) await it.return(); // the consumer stopped early: abort the generation
      }
      const r = step.value;
      yield* deltas(r.deltas);
      const session = await saveFor(restored);
      yield {
        ...chunk({}, r.finishReason, opts.logprobs && pending.length ? { content: pending, refusal: null } : null),
        timings: r.timings,
        ...(session ? { session } : {}),
        ...(r.droppedMessages !== undefined ? { dropped_messages: r.droppedMessages } : {}),
      };
      if (includeUsage) yield { id, object: "chat.completion.chunk", created, model, choices: [], usage: usageOf(r) };
    })();
  }

  return { completions: { create } };
}
