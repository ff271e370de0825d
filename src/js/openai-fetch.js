// `openaiFetch(engine)`: a `fetch` that serves OpenAI's HTTP API in-process, so the official
// `openai` SDK (or any OpenAI-compatible client) runs on the local engine unchanged:
//
//   new OpenAI({ apiKey: "local", baseURL: "http://local/v1", fetch: openaiFetch(engine), dangerouslyAllowBrowser: true })
//
// Routes: POST /v1/chat/completions (JSON, or server-sent events with `data: [DONE]` when
// `stream`), POST /v1/completions, POST /v1/embeddings, GET /v1/models. Aborting the request's
// signal, or cancelling a streamed body, stops the generation. Errors come back as HTTP errors
// with OpenAI's body: { error: { message, type, param, code } }.

import { BrowserLlmError, randomId, toBrowserLlmError } from "./errors.js";

const STATUS = { INVALID_ARGUMENT: 400, CONTEXT_OVERFLOW: 400, BUSY: 429, ABORTED: 499, NOT_FOUND: 404 };

function json(body, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

function errorResponse(e) {
  const err = e?.httpStatus ? e : toBrowserLlmError(e);
  const status = err.httpStatus ?? STATUS[err.code] ?? 500;
  const type = status === 400 || status === 404 ? "invalid_request_error" : status === 429 ? "rate_limit_error" : "server_error";
  const code = err.code === "CONTEXT_OVERFLOW" ? "context_length_exceeded" : err.code?.toLowerCase() ?? null;
  return json({ error: { message: err.message, type, param: null, code } }, status);
}

function notFound(method, path) {
  return Object.assign(new Error(`no route for ${method} ${path}`), { httpStatus: 404, code: "not_found" });
}

/**
 * Server-sent events of `chunks` (an async iterator), then `data: [DONE]`. When the request's
 * `signal` fires, the body fails with an AbortError, as a real fetch's body does.
 */
function sse(chunks, signal) {
  const enc = new TextEncoder();
  const it = chunks[Symbol.asyncIterator]();
  const aborted = () => new DOMException("the request was aborted", "AbortError");
  return new Response(new ReadableStream({
    async pull(ctl) {
      try {
        if (signal?.aborted) {
          await it.return?.();
          ctl.error(aborted());
          return;
        }
        const { value, done } = await it.next();
        if (signal?.aborted) {
          await it.return?.();
          ctl.error(aborted());
          return;
        }
        if (done) {
          ctl.enqueue(enc.encode("data: [DONE]\n\n"));
          ctl.close();
        } else {
          ctl.enqueue(enc.encode(`data: ${JSON.stringify(value)}\n\n`));
        }
      } catch (e) {
        // Headers are sent: the error goes in the stream, as OpenAI-compatible servers do.
        const err = toBrowserLlmError(e);
        ctl.enqueue(enc.encode(`data: ${JSON.stringify({ error: { message: err.message, type: "server_error", code: err.code.toLowerCase() } })}\n\n`));
        ctl.close();
      }
    },
    async cancel() {
      await it.return?.(); // the client went away: abort the generation
    },
  }), { status: 200, headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
}


/** POST /v1/completions: the legacy text completion on `generate`. */
async function completions(engine, body, signal, modelName) {
  const { prompt, max_tokens, temperature, top_p, stop, seed, stream, model, frequency_penalty, presence_penalty, n, echo, logprobs, suffix, best_of, user, logit_bias, stream_options, ...rest } = body;
  const unknown = Object.keys(rest).filter((k) => !["top_k", "min_p", "repetition_penalty"].includes(k));
  if (unknown.length) throw new BrowserLlmError("INVALID_ARGUMENT", `unknown completion option "${unknown[0]}"`);
  if (typeof prompt !== "string") throw new BrowserLlmError("INVALID_ARGUMENT", "prompt must be a string");
  if ((n ?? 1) !== 1 || (best_of ?? 1) !== 1) throw new BrowserLlmError("INVALID_ARGUMENT", "only n = best_of = 1 is supported");
  if (echo || suffix || logprobs || (logit_bias && Object.keys(logit_bias).length)) {
    throw new BrowserLlmError("INVALID_ARGUMENT", "echo, suffix, logprobs and logit_bias are not supported on /v1/completions");
  }
  const opts = {
    maxTokens: max_tokens ?? 16, temperature: temperature ?? 1, topP: top_p, seed, signal,
    stop: stop == null ? undefined : Array.isArray(stop) ? stop : [stop],
    frequencyPenalty: frequency_penalty, presencePenalty: presence_penalty,
    topK: rest.top_k, minP: rest.min_p, repetitionPenalty: rest.repetition_penalty,
  };
  for (const k of Object.keys(opts)) if (opts[k] == null) delete opts[k];
  const id = randomId("cmpl");
  const created = Math.floor(Date.now() / 1000);
  const name = model ?? modelName;
  const usage = (r) => ({ prompt_tokens: r.usage.promptTokens, completion_tokens: r.usage.completionTokens, total_tokens: r.usage.totalTokens });
  if (!stream) {
    const r = await engine.generate(prompt, opts);
    return json({ id, object: "text_completion", created, model: name, choices: [{ text: r.text, index: 0, logprobs: null, finish_reason: r.finishReason }], usage: usage(r) });
  }
  return sse((async function* () {
    const it = engine.stream(prompt, opts);
    let step;
    try {
      for (step = await it.next(); !step.done; step = await it.next()) {
        if (step.value.text) yield { id, object: "text_completion", created, model: name, choices: [{ text: step.value.text, index: 0, logprobs: null, finish_reason: null }] };
      }
    } finally {
      if (!step?.done) await it.return();
    }
    yield { id, object: "text_completion", created, model: name, choices: [{ text: "", index: 0, logprobs: null, finish_reason: step.value.finishReason }], ...(stream_options?.include_usage ? { usage: usage(step.value) } : {}) };
  })(), signal);
}

/**
 * A `fetch` function serving OpenAI's API from `engine` (an Engine or WorkerEngine). Paths are
 * matched by their end (`.../v1/chat/completions`), so any `baseURL` works.
 */
export function openaiFetch(engine) {
  let name = null;
  const modelName = async () => (name ??= await engine.info().then((i) => i.name || i.architecture));
  return async function fetch(input, init = {}) {
    try {
      const req = typeof Request !== "undefined" && input instanceof Request ? input : null;
      const url = new URL(req ? req.url : String(input?.url ?? input), "http://local/");
      const method = (init.method ?? req?.method ?? "GET").toUpperCase();
      const signal = init.signal ?? req?.signal ?? undefined;
      const path = url.pathname.replace(/\/+$/, "");
      const body = async () => {
        const text = init.body != null ? (typeof init.body === "string" ? init.body : await new Response(init.body).text()) : req ? await req.text() : "";
        try {
          const v = JSON.parse(text);
          if (v && typeof v === "object" && !Array.isArray(v)) return v;
        } catch { /* below */ }
        throw new BrowserLlmError("INVALID_ARGUMENT", "the request body must be a JSON object");
      };
      if (method === "GET" && path.endsWith("/models")) {
        return json({ object: "list", data: [{ id: await modelName(), object: "model", created: 0, owned_by: "browser-llm" }] });
      }
      if (method !== "POST") throw notFound(method, path);
      if (path.endsWith("/chat/completions")) {
        const b = await body();
        const r = await engine.chat.completions.create({ ...b, model: b.model ?? (await modelName()), signal });
        return b.stream ? sse(r, signal) : json(r);
      }
      if (path.endsWith("/completions")) return await completions(engine, await body(), signal, await modelName());
      if (path.endsWith("/embeddings")) {
        const b = await body();
        return json(await engine.embeddings.create({ ...b, model: b.model ?? (await modelName()), signal }));
      }
      throw notFound(method, path);
    } catch (e) {
      return errorResponse(e);
    }
  };
}
