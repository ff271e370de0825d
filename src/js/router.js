// `createRouter({ local, remote, policy })`: the `chat.completions` interface over the local engine
// and, when configured, an OpenAI-compatible server the app already runs (llama.cpp's server,
// vLLM). Local first; remote when the local model cannot load on this device, when a request
// does not fit the local context, or when the request asks (`route: "remote"`). Nothing is sent
// remote unless `remote` is configured. Every response carries `route: { side, reason }`.
// An aborted stream ends the same way on both sides: a last chunk with finish_reason "abort".
// Remote errors are typed: CONTEXT_OVERFLOW, INVALID_ARGUMENT (400), BUSY (429), NETWORK, ABORTED.

import { BrowserLlmError, toBrowserLlmError, invalidArgument } from "./errors.js";

const invalid = invalidArgument;

/** Server-sent events from `res` as parsed `data:` objects, until `[DONE]`. */
async function* sseChunks(res, signal) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read().catch((e) => { throw fetchError(e, signal); });
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        let v;
        try {
          v = JSON.parse(data);
        } catch {
          throw new BrowserLlmError("NETWORK", `the remote server sent a malformed event: ${data.slice(0, 200)}`);
        }
        if (v?.error) throw new BrowserLlmError("NETWORK", `the remote server failed: ${v.error.message ?? JSON.stringify(v.error)}`);
        yield v;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** A failed fetch or body read as a typed error: ABORTED when `signal` aborted it. */
function fetchError(e, signal) {
  if (e instanceof BrowserLlmError) return e;
  if (signal?.aborted || e?.name === "AbortError") return new BrowserLlmError("ABORTED", "the operation was aborted");
  return new BrowserLlmError("NETWORK", `the remote server could not be reached: ${e?.message ?? e}`);
}

/** An error answer (`res.ok` false) as a typed error, OpenAI's or llama.cpp's body read for its kind. */
async function httpError(res) {
  const body = await res.json().catch(() => null);
  const kind = `${body?.error?.code ?? ""} ${body?.error?.type ?? ""}`;
  const code = /context_length|exceed_context/.test(kind) ? "CONTEXT_OVERFLOW"
    : res.status === 400 ? "INVALID_ARGUMENT"
      : res.status === 429 ? "BUSY" : "NETWORK";
  return new BrowserLlmError(code, `the remote server answered ${res.status}: ${body?.error?.message ?? res.statusText}`);
}

/**
 * A stream that ends as the local engine's does when `signal` aborts it: with a last chunk whose
 * finish_reason is "abort", instead of an error.
 */
async function* endOnAbort(chunks, signal) {
  let last = null;
  try {
    for await (const c of chunks) {
      last = c;
      yield c;
    }
  } catch (e) {
    if (e?.code !== "ABORTED" || !signal?.aborted) throw e;
    yield {
      id: last?.id ?? "", object: "chat.completion.chunk", created: last?.created ?? Math.floor(Date.now() / 1000), model: last?.model ?? "",
      choices: [{ index: 0, delta: {}, finish_reason: "abort", logprobs: null }],
    };
  }
}

/**
 * `local`: an engine, or a function that loads one (called once; a failure routes to `remote`).
 * `remote`: `{ baseURL, apiKey?, model?, fetch? }` of an OpenAI-compatible server, or omitted.
 * `policy`: "local-first" (default), "local-only" or "remote-first".
 */
export function createRouter({ local, remote, policy = "local-first" } = {}) {
  if (!["local-first", "local-only", "remote-first"].includes(policy)) throw invalid('policy must be "local-first", "local-only" or "remote-first"');
  if (remote != null && typeof remote.baseURL !== "string") throw invalid("remote needs a baseURL");
  if (local == null && remote == null) throw invalid("createRouter needs local, remote or both");
  let localState = null; // Promise<{ engine } | { error }>
  const getLocal = () => (localState ??= (async () => {
    if (local == null) return { error: new BrowserLlmError("INVALID_ARGUMENT", "no local engine is configured") };
    try {
      return { engine: typeof local === "function" ? await local() : local };
    } catch (e) {
      return { error: toBrowserLlmError(e) };
    }
  })());

  async function callRemote(req, signal) {
    const f = remote.fetch ?? globalThis.fetch;
    const res = await f(`${remote.baseURL.replace(/\/+$/, "")}/chat/completions`, {
      method: "POST", signal,
      headers: { "content-type": "application/json", ...(remote.apiKey ? { authorization: `Bearer ${remote.apiKey}` } : {}) },
      body: JSON.stringify({ ...req, model: remote.model ?? req.model }),
    }).catch((e) => { throw fetchError(e, signal); });
    if (!res.ok) throw await httpError(res);
    if (req.stream) return endOnAbort(sseChunks(res, signal), signal);
    return res.json().catch((e) => { throw fetchError(e, signal); });
  }

  /** Which side serves `req`, and why. */
  async function decide(req) {
    const asked = req.route ?? "auto";
    if (!["auto", "local", "remote"].includes(asked)) throw invalid('route must be "auto", "local" or "remote"');
    if (asked === "remote" || (asked === "auto" && policy === "remote-first")) {
      if (!remote) throw invalid("the request asks for the remote server, and none is configured");
      return { side: "remote", reason: asked === "remote" ? "the request asked for it" : "policy remote-first" };
    }
    const l = await getLocal();
    const canRemote = remote && policy !== "local-only" && asked !== "local";
    if (l.error) {
      if (canRemote) return { side: "remote", reason: `the local model could not load: ${l.error.message}` };
      throw l.error;
    }
    if (canRemote) {
      const info = await l.engine.info();
      const text = (c) => typeof c === "string" ? c : Array.isArray(c) ? c.map((p) => p?.text ?? "").join("") : "";
      const messages = (req.messages ?? []).map((m) => ({ ...m, role: m.role === "developer" ? "system" : m.role, content: text(m.content) }));
      const promptTokens = (await l.engine.tokenizeChat(messages, true, req.tools)).length;
      const wanted = promptTokens + (req.max_completion_tokens ?? req.max_tokens ?? 1);
      if (wanted > info.contextLength) {
        return { side: "remote", reason: `the request needs ${wanted} tokens, more than the local context of ${info.contextLength}` };
      }
    }
    return { side: "local", reason: asked === "local" ? "the request asked for it" : "the local model is loaded and the request fits", engine: l.engine };
  }

  async function create(request) {
    if (!request || typeof request !== "object") throw invalid("create() needs a request object");
    const { route: _route, signal, ...req } = request;
    const d = await decide(request);
    const route = { side: d.side, reason: d.reason };
    // A saved session is this device's KV cache, and a remote server has its own context: neither
    // extension is sent there.
    const { session: _session, context_overflow: _overflow, speculation: _speculation, ...remoteReq } = req;
    const r = d.side === "local" ? await d.engine.chat.completions.create({ ...req, signal }) : await callRemote(remoteReq, signal);
    if (!req.stream) return { ...r, route };
    return (async function* () {
      for await (const c of r) yield { ...c, route };
    })();
  }

  return {
    chat: { completions: { create } },
    /** The local engine, once loaded (null when it could not load or none is configured). */
    async localEngine() {
      return (await getLocal()).engine ?? null;
    },
  };
}
