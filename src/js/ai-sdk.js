// `createBrowserLlm(engineOrLoader)`: a Vercel AI SDK provider (`@ai-sdk/provider` v4 models:
// LanguageModelV4 and EmbeddingModelV4), so `generateText`, `streamText`, `generateObject`,
// `streamObject`, tools and `embed`/`embedMany` from `ai` run on this package. Built on the
// engine's `chat.completions` (native tool calls, constrained JSON output) and `embeddings`.

/** `engineOrLoader` as a function giving the engine (a loader runs once). */
function engineGetter(engineOrLoader) {
  let p = null;
  return () => (p ??= typeof engineOrLoader === "function" ? Promise.resolve(engineOrLoader()) : Promise.resolve(engineOrLoader));
}

/** A tool result's output as the text of a `tool` message. */
function outputText(o) {
  if (o == null) return "";
  if (o.type === "text" || o.type === "error-text") return String(o.value ?? "");
  if (o.type === "json" || o.type === "error-json") return JSON.stringify(o.value);
  if (o.type === "execution-denied") return `The tool call was denied${o.reason ? `: ${o.reason}` : "."}`;
  return JSON.stringify(o.value ?? o);
}

/** The AI SDK's prompt as OpenAI chat messages. */
function toMessages(prompt, warnings) {
  const out = [];
  for (const m of prompt) {
    if (m.role === "system") out.push({ role: "system", content: m.content });
    else if (m.role === "user") {
      const text = m.content.map((p) => {
        if (p.type === "text") return p.text;
        warnings.push({ type: "unsupported", feature: `${p.type} parts`, details: "text only: the part was left out" });
        return "";
      }).join("");
      out.push({ role: "user", content: text });
    } else if (m.role === "assistant") {
      const text = m.content.filter((p) => p.type === "text").map((p) => p.text).join("");
      const calls = m.content.filter((p) => p.type === "tool-call").map((p) => ({
        id: p.toolCallId, type: "function",
        function: { name: p.toolName, arguments: typeof p.input === "string" ? p.input : JSON.stringify(p.input ?? {}) },
      }));
      out.push(calls.length ? { role: "assistant", content: text || null, tool_calls: calls } : { role: "assistant", content: text });
      for (const p of m.content.filter((q) => q.type === "tool-result")) out.push({ role: "tool", tool_call_id: p.toolCallId, content: outputText(p.output) });
    } else if (m.role === "tool") {
      for (const p of m.content) if (p.type === "tool-result") out.push({ role: "tool", tool_call_id: p.toolCallId, content: outputText(p.output) });
    }
  }
  return out;
}

/** LanguageModelV4 call options as a chat.completions request. */
function toRequest(options, warnings) {
  const req = {
    messages: toMessages(options.prompt, warnings),
    max_tokens: options.maxOutputTokens, temperature: options.temperature ?? 0.8, top_p: options.topP, top_k: options.topK,
    presence_penalty: options.presencePenalty, frequency_penalty: options.frequencyPenalty, seed: options.seed,
    stop: options.stopSequences, signal: options.abortSignal,
  };
  if (options.responseFormat?.type === "json") {
    req.response_format = options.responseFormat.schema
      ? { type: "json_schema", json_schema: { name: options.responseFormat.name ?? "response", schema: options.responseFormat.schema, strict: true } }
      : { type: "json_object" };
  }
  const tools = (options.tools ?? []).filter((t) => {
    if (t.type === "function") return true;
    warnings.push({ type: "unsupported", feature: `provider tool ${t.name ?? t.id}` });
    return false;
  });
  if (tools.length) {
    req.tools = tools.map((t) => ({ type: "function", function: { name: t.name, description: t.description, parameters: t.inputSchema } }));
    const c = options.toolChoice;
    req.tool_choice = !c ? "auto" : c.type === "tool" ? { type: "function", function: { name: c.toolName } } : c.type;
  }
  for (const k of Object.keys(req)) if (req[k] === undefined) delete req[k];
  return req;
}

const FINISH = { stop: "stop", length: "length", tool_calls: "tool-calls", abort: "interrupted" };

function finishReason(raw) {
  return { unified: FINISH[raw] ?? "other", raw };
}

function usage(u) {
  const cached = u?.prompt_tokens_details?.cached_tokens;
  return {
    inputTokens: { total: u?.prompt_tokens, noCache: cached == null ? undefined : u.prompt_tokens - cached, cacheRead: cached, cacheWrite: undefined },
    outputTokens: { total: u?.completion_tokens, text: u?.completion_tokens, reasoning: undefined },
  };
}

class LanguageModel {
  specificationVersion = "v4";
  provider = "browser-llm";
  supportedUrls = {};
  #engine;
  constructor(modelId, engine) {
    this.modelId = modelId;
    this.#engine = engine;
  }

  async doGenerate(options) {
    const warnings = [];
    const engine = await this.#engine();
    const r = await engine.chat.completions.create(toRequest(options, warnings));
    const choice = r.choices[0];
    const content = [];
    if (choice.message.content) content.push({ type: "text", text: choice.message.content });
    for (const c of choice.message.tool_calls ?? []) content.push({ type: "tool-call", toolCallId: c.id, toolName: c.function.name, input: c.function.arguments });
    return {
      content, finishReason: finishReason(choice.finish_reason), usage: usage(r.usage), warnings,
      response: { id: r.id, modelId: r.model, timestamp: new Date(r.created * 1000) },
    };
  }

  async doStream(options) {
    const warnings = [];
    const engine = await this.#engine();
    const chunks = await engine.chat.completions.create({ ...toRequest(options, warnings), stream: true, stream_options: { include_usage: true } });
    const it = chunks[Symbol.asyncIterator]();
    let textOpen = false;
    let finish = null;
    let started = false;
    const stream = new ReadableStream({
      // Each pull enqueues at least one part, closes or fails (a pull that does none is not repeated).
      async pull(ctl) {
        if (!started) {
          started = true;
          ctl.enqueue({ type: "stream-start", warnings });
          return;
        }
        try {
          for (;;) {
            const { value: c, done } = await it.next();
            // The end: the usage chunk (`choices: []`, last), or the stream's end without one.
            if (done || c.choices.length === 0) {
              if (textOpen) ctl.enqueue({ type: "text-end", id: "0" });
              ctl.enqueue({ type: "finish", finishReason: finishReason(finish ?? (done ? "abort" : "other")), usage: usage(done ? null : c.usage) });
              ctl.close();
              return;
            }
            const ch = c.choices[0];
            if (ch.finish_reason) finish = ch.finish_reason;
            const parts = [];
            if (ch.delta.role) parts.push({ type: "response-metadata", id: c.id, modelId: c.model, timestamp: new Date(c.created * 1000) });
            if (ch.delta.content) {
              if (!textOpen) {
                textOpen = true;
                parts.push({ type: "text-start", id: "0" });
              }
              parts.push({ type: "text-delta", id: "0", delta: ch.delta.content });
            }
            for (const t of ch.delta.tool_calls ?? []) {
              parts.push(
                { type: "tool-input-start", id: t.id, toolName: t.function.name },
                { type: "tool-input-delta", id: t.id, delta: t.function.arguments },
                { type: "tool-input-end", id: t.id },
                { type: "tool-call", toolCallId: t.id, toolName: t.function.name, input: t.function.arguments },
              );
            }
            if (parts.length) {
              for (const p of parts) ctl.enqueue(p);
              return;
            }
          }
        } catch (e) {
          ctl.enqueue({ type: "error", error: e });
          ctl.close();
        }
      },
      async cancel() {
        await it.return?.();
      },
    });
    return { stream };
  }
}

class EmbeddingModel {
  specificationVersion = "v4";
  provider = "browser-llm";
  maxEmbeddingsPerCall = 64;
  supportsParallelCalls = false;
  #engine;
  constructor(modelId, engine) {
    this.modelId = modelId;
    this.#engine = engine;
  }

  async doEmbed({ values, dimensions, abortSignal }) {
    const engine = await this.#engine();
    const r = await engine.embeddings.create({ input: values, dimensions, signal: abortSignal });
    return { embeddings: r.data.map((d) => d.embedding), usage: { tokens: r.usage.total_tokens }, warnings: [] };
  }
}

/**
 * A Vercel AI SDK provider: `const local = createBrowserLlm(engine)`, then `local()` (or
 * `local.languageModel()`) as the `model` of `generateText`/`streamText`/`generateObject`, and
 * `local.embeddingModel()` for `embed`/`embedMany`. `engineOrLoader`: an engine, or a function
 * that loads one on first use.
 */
export function createBrowserLlm(engineOrLoader, { modelId = "browser-llm" } = {}) {
  const engine = engineGetter(engineOrLoader);
  const provider = (id = modelId) => new LanguageModel(id, engine);
  provider.specificationVersion = "v4";
  provider.languageModel = provider;
  provider.embeddingModel = (id = modelId) => new EmbeddingModel(id, engine);
  provider.textEmbeddingModel = provider.embeddingModel;
  return provider;
}
