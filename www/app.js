// The demo chat page. It uses only the public API of the npm package ("browser-llm", mapped to
// the built package by the import map in index.html), with the model in a Worker so this page
// never freezes.
//
// For tests, the page reports its state on <body data-state="idle|loading|ready|generating">,
// its mode on <body data-mode="chat|completion">, and puts each reply's token ids on its element
// (data-token-ids, completion mode).

import * as llm from "browser-llm";

/**
 * The two models the page offers, served by pkg-scripts/serve.mjs at these URLs. `layers` and
 * `kvDim` (n_head_kv * head_dim) size the KV cache the engine allocates: f32 keys and values for
 * every layer at the chosen context length, on top of the weights (kept as in the file).
 */
const MODELS = {
  smollm2: { url: "/models/smollm2-135m-instruct.gguf", mode: "chat", bytes: 98_362_432, layers: 30, kvDim: 192 },
  gemma: { url: "/models/gemma-3-270m-q4_k_m.gguf", mode: "completion", bytes: 253_113_024, layers: 18, kvDim: 256 },
};

const $ = (id) => document.getElementById(id);
const el = {
  form: $("load-form"), url: $("model-url"), file: $("model-file"), drop: $("drop-zone"), backend: $("backend"), ctx: $("ctx"),
  loadBtn: $("load-btn"), cancelLoad: $("cancel-load-btn"), progressBox: $("progress-box"), progress: $("progress"),
  progressText: $("progress-text"), status: $("status"), error: $("error"), info: $("model-info"),
  cachePanel: $("cache-panel"), cacheList: $("cache-list"), usage: $("storage-usage"),
  transcript: $("transcript"), promptForm: $("prompt-form"), prompt: $("prompt"), send: $("send-btn"), stop: $("stop-btn"),
  stats: $("stats"), clear: $("clear-btn"), system: $("system-prompt"), systemBox: $("system-box"), heading: $("chat-heading"),
  panel: $("model-panel"), summary: $("model-summary"), sessionNote: $("session-note"), preflight: $("preflight"),
};

let engine = null;
let loadAbort = null;
let genAbort = null;
let localFile = null;
/** Chat mode: the conversation so far (user and assistant turns; the system prompt is added per request). */
let messages = [];
/** The loaded model's source, as a string: the key its saved conversation is kept under. */
let modelKey = null;

// A chat survives a reload: its text in localStorage (per model), its KV cache as the engine's
// saved session SESSION (browser storage, per model), restored when the model loads again, so the
// next reply does not read the whole conversation again.
const SESSION = "demo-chat";
const savedKey = () => `browser-llm-demo:conversation:${modelKey}`;
function saveConversation() {
  try {
    if (messages.length === 0) localStorage.removeItem(savedKey());
    else localStorage.setItem(savedKey(), JSON.stringify({ system: el.system.value, messages }));
  } catch { /* no localStorage (private mode): the chat just does not survive a reload */ }
}
function savedConversation() {
  try {
    const v = JSON.parse(localStorage.getItem(savedKey()) ?? "null");
    return v && Array.isArray(v.messages) && v.messages.every((m) => typeof m?.content === "string") ? v : null;
  } catch {
    return null;
  }
}
function sessionNote(text) {
  el.sessionNote.textContent = text ?? "";
  el.sessionNote.hidden = !text;
}

/** After a chat model loads: bring back its last conversation and its saved session. */
async function continueConversation() {
  const saved = savedConversation();
  if (!saved || saved.messages.length === 0) return;
  messages = saved.messages;
  el.system.value = saved.system ?? el.system.value;
  el.transcript.replaceChildren();
  for (const m of messages) addMessage(m.role === "user" ? "user" : "model", m.content);
  const t0 = performance.now();
  try {
    const r = await engine.restoreSession(SESSION);
    el.transcript.dataset.restoredTokens = String(r?.tokens ?? 0);
    sessionNote(r
      ? `Continued your last conversation: ${r.tokens} tokens restored from its saved session in ${Math.round(performance.now() - t0)} ms, so the next reply starts without reading it all again.`
      : "Continued your last conversation (no saved session: the next reply reads it again).");
  } catch (e) {
    el.transcript.dataset.restoredTokens = "0";
    sessionNote(`Continued your last conversation; its saved session could not be used ([${e.code}] ${e.message}), so the next reply reads it again.`);
  }
}

function setState(s) {
  document.body.dataset.state = s;
  // On a phone a loaded model folds its panel into one line (style.css); loading unfolds it.
  document.body.toggleAttribute("data-loaded", !!engine && s !== "loading");
  if (s === "loading") foldModelPanel(false);
  const ready = s === "ready";
  el.prompt.disabled = !engine || s === "loading";
  el.send.disabled = !ready;
  el.stop.disabled = s !== "generating";
  el.loadBtn.disabled = s === "loading" || s === "generating";
  el.cancelLoad.hidden = s !== "loading";
}

function showError(e) {
  const code = e && e.code ? `[${e.code}] ` : "";
  el.error.textContent = `${code}${e && e.message ? e.message : String(e)}`;
  el.error.hidden = false;
}
function clearError() {
  el.error.hidden = true;
  el.error.textContent = "";
}

const mb = (n) => (n >= 1e10 ? `${(n / 1e9).toFixed(1)} GB` : `${(n / 1e6).toFixed(n >= 1e8 ? 0 : 1)} MB`);

function onProgress(p) {
  el.progressBox.hidden = false;
  const frac = p.total > 0 ? p.loaded / p.total : 0;
  el.progress.value = frac;
  const speed = p.bytesPerSecond > 0 ? `, ${mb(p.bytesPerSecond)}/s` : "";
  const amount = p.total > 0 ? `${mb(p.loaded)} of ${mb(p.total)} (${Math.floor(frac * 100)}%)` : mb(p.loaded);
  const phase = { download: "Downloading", verify: "Verifying", load: "Loading" }[p.phase] ?? p.phase;
  el.progressText.textContent = `${phase}: ${amount}${speed}`;
}

/** "About N MB" of memory a model needs: its file plus the KV cache at `ctx` tokens, rounded up to 10 MB. */
function memoryNeeded(m, ctx) {
  const kv = 2 * m.layers * m.kvDim * ctx * 4;
  return Math.ceil((m.bytes + kv) / 1e7) * 10;
}

function showModelMeta() {
  const ctx = Number(el.ctx.value) || 2048;
  for (const [key, m] of Object.entries(MODELS)) {
    document.querySelector(`[data-model-meta=${key}]`).textContent =
      `${mb(m.bytes)} download, needs about ${memoryNeeded(m, ctx)} MB of memory at ${ctx} tokens of context`;
  }
}

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

/** Chat or completion: the radio, the system prompt field, labels, and <body data-mode>. */
function setMode(m) {
  document.querySelector(`input[name=mode][value=${m}]`).checked = true;
  document.body.dataset.mode = m;
  const chat = m === "chat";
  el.systemBox.hidden = !chat;
  el.heading.textContent = chat ? "Chat" : "Completion";
  el.send.textContent = chat ? "Send" : "Generate";
  el.prompt.placeholder = engine
    ? (chat ? "Your message. Enter sends, Shift+Enter adds a line." : "The start of a text for the model to continue. Enter sends.")
    : "Load a model, then type here. Enter sends, Shift+Enter adds a line.";
}

function source() {
  const kind = document.querySelector("input[name=source]:checked").value;
  if (kind === "url") {
    const u = el.url.value.trim();
    if (!u) throw Object.assign(new Error("Enter the URL of a .gguf file (or a Hugging Face id, hf:owner/repo/file.gguf)."), { code: "INVALID_ARGUMENT" });
    return u;
  }
  if (kind === "file") {
    if (!localFile) throw Object.assign(new Error("Choose or drop a .gguf file first."), { code: "INVALID_ARGUMENT" });
    return localFile;
  }
  return new URL(MODELS[kind].url, location.href).href;
}

async function load(ev) {
  ev?.preventDefault();
  clearError();
  let src;
  try {
    src = source();
  } catch (e) {
    return showError(e);
  }
  // A check still waiting to start would only compete with the load for the network.
  clearTimeout(preflightTimer);
  loadAbort = new AbortController();
  setState("loading");
  if (engine) {
    const old = engine;
    engine = null;
    await old.dispose().catch(() => {});
  }
  el.info.hidden = true;
  el.status.textContent = "Loading…";
  const t0 = performance.now();
  try {
    // A URL's model is shared by every tab of this page (one copy in memory, in the tab that
    // loaded it first); a local file belongs to this tab.
    const Kind = typeof src === "string" ? llm.SharedEngine : llm.WorkerEngine;
    engine = await Kind.load(src, {
      backend: el.backend.value,
      contextLength: Number(el.ctx.value) || undefined,
      onProgress,
      signal: loadAbort.signal,
    });
    const info = await engine.info();
    el.status.textContent = `Ready in ${((performance.now() - t0) / 1000).toFixed(1)} s.`;
    showInfo(info);
    // The offered models keep the mode they are made for; for another, a base model (no chat
    // template in the file) is best used for completion.
    const offered = Object.values(MODELS).find((m) => src === new URL(m.url, location.href).href);
    setMode(offered ? offered.mode : info.chatTemplate === "gguf" ? "chat" : "completion");
    modelKey = typeof src === "string" ? src : `file:${src.name}:${src.size}`;
    messages = [];
    el.transcript.replaceChildren();
    sessionNote(null);
    if (mode() === "chat") await continueConversation();
    setState("ready");
    foldModelPanel(true);
    el.prompt.focus();
  } catch (e) {
    engine = null;
    el.status.textContent = "";
    showError(e);
    setState("idle");
  } finally {
    loadAbort = null;
    el.progressBox.hidden = true;
    refreshCache();
  }
}

// Before a download: what the chosen model would take here (llm.preflight reads its header's
// first bytes, or the stored copy, and times its products on the backend a load would pick).
// <p id="preflight" data-state="running|done|error">.
let preflightRun = 0;
let preflightTimer = null;
function schedulePreflight() {
  clearTimeout(preflightTimer);
  preflightTimer = setTimeout(runPreflight, 250);
}
async function runPreflight() {
  const run = ++preflightRun;
  let src;
  try {
    src = source();
  } catch {
    el.preflight.textContent = "";
    delete el.preflight.dataset.state;
    return;
  }
  el.preflight.dataset.state = "running";
  el.preflight.textContent = "Checking this device…";
  try {
    const p = await llm.preflight(src, { backend: el.backend.value, contextLength: Number(el.ctx.value) || undefined });
    if (run !== preflightRun) return;
    const fits = p.fitsMemory && p.fitsQuota !== false;
    const where = p.backend === "webgpu" ? "WebGPU" : "the CPU";
    const store = p.stored ? "already on this device" : p.fitsQuota === false ? "not enough browser storage" : `${mb(p.fileBytes)} to download`;
    el.preflight.textContent = `${fits ? "Fits" : "Does not fit"} · ${store} · runs on ${where}: about ` +
      `${Math.round(p.estimate.decodeTokensPerSecond)} tokens/s replying, ${Math.round(p.estimate.prefillTokensPerSecond)} tokens/s reading · ` +
      `${p.architecture}, ${p.quantization[0]?.[0] ?? "?"}${p.quantizationExact ? "" : " (from its first bytes)"}, KV cache ${mb(p.kvBytes)} at ${p.contextLength} tokens` +
      (fits ? "" : ` · ${p.fitsMemory ? "" : p.memoryReason}`);
    el.preflight.title = `${p.backendReason}. ${p.memoryReason}. Header: ${p.headerBytesRead} bytes read; estimate took ${Math.round(p.estimate.ms)} ms.`;
    el.preflight.dataset.state = "done";
    el.preflight.dataset.fits = String(fits);
    el.preflight.dataset.decode = String(p.estimate.decodeTokensPerSecond);
    el.preflight.dataset.prefill = String(p.estimate.prefillTokensPerSecond);
  } catch (e) {
    if (run !== preflightRun) return;
    el.preflight.textContent = `Could not check this model: ${e.code ? `[${e.code}] ` : ""}${e.message}`;
    el.preflight.dataset.state = "error";
  }
}

/** Fold (or unfold) the model panel into its summary line (phone-sized screens only: style.css). */
function foldModelPanel(folded) {
  el.panel.toggleAttribute("data-expanded", !folded);
  el.summary.setAttribute("aria-expanded", String(!folded));
}

function showInfo(info) {
  el.summary.textContent = `Model: ${info.name ?? info.architecture} · ${info.backend} ▸ change`;
  const params = info.parameters >= 1e9 ? `${(info.parameters / 1e9).toFixed(2)} B` : `${Math.round(info.parameters / 1e6)} M`;
  const quant = info.quantization.map(([t, b]) => `${t} ${mb(b)}`).join(", ");
  const rows = [
    ["Model", info.name ?? "(unnamed)"], ["Architecture", `${info.architecture}, ${info.layers} layers`], ["Parameters", params],
    ["Weights", quant], ["Context", `${info.contextLength} tokens (trained: ${info.trainingContextLength})`],
    ["Backend", info.backend], ["Why", info.backendReason], ["Chat template", info.chatTemplate],
    ...(info.shared ? [["Shared", `${info.shared.tabs} tab${info.shared.tabs > 1 ? "s" : ""}; ${info.shared.host ? "this tab holds the model" : "another tab holds the model"}`]] : []),
    ...(info.backend === "cpu" ? [["Kernels", `WebAssembly ${info.cpuKernels}, ${info.cpuThreads} thread${info.cpuThreads > 1 ? "s" : ""}${info.cpuThreadsReason ? ` (${info.cpuThreadsReason})` : ""}`]] : []),
  ];
  el.info.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dd.dataset.field = k.toLowerCase();
    return [dt, dd];
  }));
  el.info.hidden = false;
}

function num(input, fallback) {
  const v = input.value.trim();
  return v === "" ? fallback : Number(v);
}

function samplingOptions() {
  const opts = {
    maxTokens: num($("max-tokens"), 128), temperature: num($("temperature"), 0.7), topK: num($("top-k"), 40),
    topP: num($("top-p"), 0.95), minP: num($("min-p"), 0.05), repetitionPenalty: num($("repeat"), 1.0),
  };
  const seed = num($("seed"), undefined);
  if (seed !== undefined) opts.seed = seed;
  return opts;
}

function addMessage(who, text) {
  const div = document.createElement("div");
  div.className = `msg ${who}`;
  const head = document.createElement("div");
  head.className = "msg-head";
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who === "user" ? "You" : "Model";
  head.append(label);
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.append(head, body);
  el.transcript.append(div);
  el.transcript.scrollTop = el.transcript.scrollHeight;
  return div;
}

async function send(ev) {
  ev?.preventDefault();
  const text = el.prompt.value;
  if (!engine || document.body.dataset.state !== "ready" || text.trim() === "") return;
  clearError();
  const current = mode();
  genAbort = new AbortController();
  setState("generating");
  el.stats.textContent = "";
  const opts = samplingOptions();
  let reply;
  let out;
  try {
    if (current === "completion") {
      reply = addMessage("model", "");
      const promptSpan = reply.querySelector(".text");
      promptSpan.textContent = text;
      out = document.createElement("span");
      out.className = "gen";
      reply.append(out);
      const r = await engine.generate(text, {
        ...opts, signal: genAbort.signal,
        onPrefill: (p) => { el.stats.textContent = `Reading the prompt: ${p.done}/${p.total} tokens`; },
        onToken: (t) => { out.textContent += t.text; el.transcript.scrollTop = el.transcript.scrollHeight; },
      });
      finish(reply, r.tokenIds, r.finishReason, r.timings);
    } else {
      messages.push({ role: "user", content: text });
      addMessage("user", text);
      el.prompt.value = "";
      reply = addMessage("model", "");
      out = reply.querySelector(".text");
      const system = el.system.value.trim();
      const stream = await engine.chat.completions.create({
        messages: system ? [{ role: "system", content: system }, ...messages] : messages, stream: true, max_tokens: opts.maxTokens, temperature: opts.temperature, top_k: opts.topK, top_p: opts.topP,
        min_p: opts.minP, repetition_penalty: opts.repetitionPenalty, seed: opts.seed, signal: genAbort.signal,
        stream_options: { include_usage: true }, session: SESSION,
        // A conversation longer than the context keeps going: its oldest turns are left out.
        context_overflow: "drop-oldest",
      });
      let last;
      let usage = null;
      for await (const chunk of stream) {
        if (chunk.usage) {
          usage = chunk.usage;
          continue;
        }
        out.textContent += chunk.choices[0].delta.content ?? "";
        el.transcript.scrollTop = el.transcript.scrollHeight;
        last = chunk;
      }
      messages.push({ role: "assistant", content: out.textContent });
      saveConversation();
      if (usage) {
        reply.dataset.promptTokens = String(usage.prompt_tokens);
        reply.dataset.cachedTokens = String(usage.prompt_tokens_details.cached_tokens);
      }
      if (last.session?.error) sessionNote(`The saved session could not be used ([${last.session.error.code}] ${last.session.error.message}).`);
      finish(reply, null, last.choices[0].finish_reason, last.timings);
      if (last.dropped_messages > 0) {
        reply.dataset.droppedMessages = String(last.dropped_messages);
        el.stats.textContent += ` · the ${last.dropped_messages} oldest messages were left out to fit the context`;
      }
    }
  } catch (e) {
    showError(e);
    if (current === "chat") messages.pop();
  } finally {
    genAbort = null;
    setState(engine ? "ready" : "idle");
  }
}

/** A Copy button in a reply's head: copies the reply's text (in completion mode: prompt and continuation). */
function addCopyButton(reply) {
  const btn = document.createElement("button");
  btn.type = "button";
  btn.className = "copy";
  btn.textContent = "Copy";
  btn.setAttribute("aria-label", "Copy this reply");
  btn.onclick = async () => {
    const text = [...reply.querySelectorAll(".text, .gen")].map((n) => n.textContent).join("");
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // No clipboard API (or no permission): copy a selection the old way.
      const ta = Object.assign(document.createElement("textarea"), { value: text });
      ta.style.position = "fixed";
      ta.style.opacity = "0";
      document.body.append(ta);
      ta.select();
      document.execCommand("copy");
      ta.remove();
    }
    btn.textContent = "Copied";
    btn.dataset.copied = "true";
    setTimeout(() => { btn.textContent = "Copy"; }, 1500);
  };
  reply.querySelector(".msg-head").append(btn);
}

function finish(reply, tokenIds, finishReason, t) {
  if (tokenIds) reply.dataset.tokenIds = JSON.stringify(tokenIds);
  addCopyButton(reply);
  reply.dataset.finishReason = finishReason;
  const why = { stop: "finished", length: "token limit", abort: "stopped" }[finishReason] ?? finishReason;
  const spec = t.acceptedPerPass > 1.05 ? ` (${t.acceptedPerPass.toFixed(1)} per pass: speculation)` : "";
  el.stats.textContent = `prefill ${t.prefillTokensPerSecond.toFixed(1)} tok/s (${t.prefillTokens} tokens) · ` +
    `decode ${t.decodeTokensPerSecond.toFixed(1)} tok/s (${t.decodeTokens} tokens${spec}) · ${why}`;
}

async function refreshCache() {
  try {
    const [models, usage] = await Promise.all([llm.listCachedModels(), llm.storageUsage()]);
    el.usage.textContent = `Using ${mb(usage.usage)} of ${mb(usage.quota)} available to this site.`;
    if (models.length === 0) {
      const li = document.createElement("li");
      li.textContent = "No models cached yet.";
      el.cacheList.replaceChildren(li);
      return;
    }
    el.cacheList.replaceChildren(...models.map((m) => {
      const li = document.createElement("li");
      const label = document.createElement("span");
      const state = m.complete ? "" : " (partial)";
      label.textContent = `${m.url.split("/").pop()} · ${mb(m.size)}${state}`;
      label.title = m.url;
      const del = document.createElement("button");
      del.type = "button";
      del.textContent = "Delete";
      del.setAttribute("aria-label", `Delete ${m.url.split("/").pop()} from the cache`);
      del.onclick = async () => {
        try {
          await llm.deleteCachedModel(m.key);
        } catch (e) {
          showError(e);
        }
        refreshCache();
      };
      li.append(label, del);
      return li;
    }));
  } catch (e) {
    el.usage.textContent = `Cache unavailable: ${e.message}`;
  }
}

// Wiring.
for (const radio of document.querySelectorAll("input[name=source]")) {
  // Picking one of the two offered models switches to the mode it is made for.
  radio.addEventListener("change", () => { if (radio.checked && MODELS[radio.value]) setMode(MODELS[radio.value].mode); });
}
for (const radio of document.querySelectorAll("input[name=mode]")) {
  radio.addEventListener("change", () => { if (radio.checked) setMode(radio.value); });
}
el.ctx.addEventListener("input", showModelMeta);
el.ctx.addEventListener("change", schedulePreflight);
el.backend.addEventListener("change", schedulePreflight);
el.url.addEventListener("change", schedulePreflight);
for (const radio of document.querySelectorAll("input[name=source]")) radio.addEventListener("change", schedulePreflight);
el.form.addEventListener("submit", load);
el.cancelLoad.addEventListener("click", () => loadAbort?.abort());
el.promptForm.addEventListener("submit", send);
el.stop.addEventListener("click", () => genAbort?.abort());
el.prompt.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});
el.clear.addEventListener("click", async () => {
  messages = [];
  el.transcript.replaceChildren();
  el.stats.textContent = "";
  sessionNote(null);
  if (modelKey) saveConversation();
  if (engine && document.body.dataset.state === "ready") {
    await engine.reset();
    await engine.deleteSession(SESSION).catch(() => {});
  }
});
el.summary.addEventListener("click", () => foldModelPanel(el.panel.hasAttribute("data-expanded")));
el.url.addEventListener("input", () => { document.querySelector("input[name=source][value=url]").checked = true; });
function pickFile(f) {
  if (!f) return;
  localFile = f;
  $("drop-help").textContent = `${f.name} (${mb(f.size)})`;
  document.querySelector("input[name=source][value=file]").checked = true;
  schedulePreflight();
}
el.file.addEventListener("change", () => pickFile(el.file.files[0]));
el.drop.addEventListener("click", () => el.file.click());
el.drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); el.file.click(); } });
el.drop.addEventListener("dragover", (e) => { e.preventDefault(); el.drop.classList.add("over"); });
el.drop.addEventListener("dragleave", () => el.drop.classList.remove("over"));
el.drop.addEventListener("drop", (e) => {
  e.preventDefault();
  el.drop.classList.remove("over");
  pickFile(e.dataTransfer.files[0]);
});
const params = new URLSearchParams(location.search);
if (params.get("model")) {
  el.url.value = params.get("model");
  document.querySelector("input[name=source][value=url]").checked = true;
}
setState("idle");
setMode("chat");
showModelMeta();
refreshCache();
runPreflight();
