//! `WasmEngine`: a loaded model driven from JS. One load entry point ([`WasmEngine::load`]) for
//! every source and backend; generation runs one step at a time (`begin`, then `step` until it
//! resolves to `null`, then `finish`) so the JS side can yield to its event loop between tokens.
//!
//! One call at a time per engine: a call that arrives while another is running (possible only
//! across the `await` of an asynchronous step) fails with `BUSY`; the JS layer queues calls so
//! users never see that.
//!
//! A GPU engine whose device is lost (or runs out of memory) fails the call in flight with
//! `DEVICE_LOST` and holds no engine until [`WasmEngine::recover`], which the JS layer queues
//! right after that call: the model loads again from the source it was loaded from (browser
//! storage, or the caller's bytes) on a new device or the CPU (`load::reload_after_loss`).

use std::cell::RefCell;
use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;
use js_sys::Uint8Array;
use wasm_bindgen::JsCast;

use super::convert::{from_js, json_value, progress_callback, to_js, to_js_error, JsResult};
use super::hooks::PanicAt;
use super::info::ModelInfo;
use super::options::{ContextOverflow, JsGenerateOptions, JsLoadOptions};
use super::source::{parse_source, Bytes, ModelSource};
use crate::chat::tools::{ChatDelta, ParsedCall, ToolCallStream, ToolSettings};
use crate::chat::{self, ChatMessage, TemplateSource};
use crate::constrain::ConstraintSpec;
use crate::engine::{Generating, Step, TokenLogprob};
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::Gguf;
use crate::load::{load, reload_after_loss, AnyEngine, LoadOptions, Loaded};

struct Inner {
    engine: AnyEngine,
    template: TemplateSource,
    info: ModelInfo,
    generating: Option<Generating>,
    /// The reading of a chat generation's reply (`beginChat`); `None` for a plain generation.
    chat: Option<ChatReply>,
    /// What a GPU engine loads again from after its device is lost; `None` on the CPU.
    reload: Option<Reload>,
    /// Test-only: panic after the first step's await (the `__panicAfterAwait: "step"` load option).
    panic_at_step: bool,
    /// The model's identity, which keys its saved sessions (`crate::session::model_identity`).
    model_id: String,
}

struct Reload {
    bytes: Bytes,
    options: LoadOptions,
}

enum Slot {
    Ready(Inner),
    /// The GPU failed with this error and the model has not been loaded again yet.
    Lost { error: Error, template: TemplateSource, reload: Reload, model_id: String },
    /// Disposed, or the model could not be loaded again after a loss: every call fails with this.
    Gone(Error),
}

/// A loaded model. Created by [`WasmEngine::load`].
#[wasm_bindgen]
pub struct WasmEngine {
    inner: Rc<RefCell<Slot>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsStep {
    /// "prefill", "token" or "flush".
    kind: &'static str,
    token_id: Option<u32>,
    text: String,
    done: usize,
    total: usize,
    /// With `logprobs`: OpenAI's `{token, logprob, bytes, top_logprobs}` for a token step.
    logprob: Option<JsLogprob>,
    /// In a chat generation: the reply's pieces that became final with this step's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    deltas: Option<Vec<JsDelta>>,
}

/// A piece of a chat reply: `{content}` or `{toolCall: {index, id, type, function: {name,
/// arguments}}}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum JsDelta {
    Content(String),
    ToolCall {
        index: usize,
        #[serde(flatten)]
        call: ParsedCall,
    },
}

impl From<ChatDelta> for JsDelta {
    fn from(d: ChatDelta) -> JsDelta {
        match d {
            ChatDelta::Content(c) => JsDelta::Content(c),
            ChatDelta::Call { index, call } => JsDelta::ToolCall { index, call },
        }
    }
}

/// How a chat generation's reply is read: where the request has tools (and a `tool_choice` other
/// than "none"), through the tool-call splitter, whose calls' ids come from a per-reply seed.
struct ChatReply {
    stream: Option<ToolCallStream>,
    /// Messages `contextOverflow: "drop-oldest"` removed (`None`: not asked for).
    dropped: Option<usize>,
}

impl ChatReply {
    fn new(tools: Option<&ToolSettings>) -> ChatReply {
        let seed = (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64;
        ChatReply { stream: tools.map(|t| ToolCallStream::new(t, seed)), dropped: None }
    }

    fn push(&mut self, text: &str) -> Vec<JsDelta> {
        match &mut self.stream {
            Some(s) => s.push(text).into_iter().map(JsDelta::from).collect(),
            None if text.is_empty() => Vec::new(),
            None => vec![JsDelta::Content(text.to_string())],
        }
    }
}

/// One entry of OpenAI's `logprobs.content` (snake_case, as OpenAI spells it).
#[derive(Serialize)]
struct JsLogprob {
    token: String,
    logprob: f32,
    bytes: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<Vec<JsLogprob>>,
}

impl JsLogprob {
    fn new(tok: &crate::tokenizer::Tokenizer, lp: &TokenLogprob) -> JsLogprob {
        let entry = |id: u32, logprob: f32, top| {
            let bytes = tok.token_to_piece(id, true);
            JsLogprob { token: String::from_utf8_lossy(&bytes).into_owned(), logprob, bytes, top_logprobs: top }
        };
        let top = lp.top.iter().map(|&(id, l)| entry(id, l, None)).collect();
        entry(lp.id, lp.logprob, Some(top))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsGeneration {
    text: String,
    token_ids: Vec<u32>,
    finish_reason: &'static str,
    usage: Usage,
    timings: Timings,
    /// A chat generation's reply: its text without the calls (`null` when only calls), ...
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<String>>,
    /// ... its calls ...
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ParsedCall>>,
    /// ... and the pieces the stream held back until the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    deltas: Option<Vec<JsDelta>>,
    /// With `contextOverflow: "drop-oldest"`: how many of the oldest messages were left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped_messages: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Usage {
    prompt_tokens: usize,
    completion_tokens: usize,
    total_tokens: usize,
    cached_tokens: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Timings {
    prefill_tokens: usize,
    prefill_ms: f64,
    prefill_tokens_per_second: f64,
    decode_tokens: usize,
    decode_ms: f64,
    decode_tokens_per_second: f64,
    /// Decoded tokens per forward pass (above 1 where speculation's drafts were accepted).
    accepted_per_pass: f64,
    /// Context shifts done (`contextOverflow: "shift"`).
    context_shifts: usize,
}

/// Options of `saveSession`.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsSessionOptions {
    max_session_bytes: Option<f64>,
}

fn check_max_bytes(v: f64) -> Result<u64> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= 9_007_199_254_740_991.0 {
        Ok(v as u64)
    } else {
        Err(Error::invalid_argument("maxSessionBytes must be a whole number of bytes >= 0"))
    }
}

fn busy() -> Error {
    Error::new(ErrorCode::Busy, "the engine is busy with another call; await it first")
}

fn disposed() -> Error {
    Error::invalid_argument("the engine was disposed; load the model again")
}

/// Check `Engine.load` options without loading anything (the JS layer calls this before it reads
/// a file or URL in Node, so a misspelled option fails at once).
#[wasm_bindgen(js_name = checkLoadOptions)]
pub fn check_load_options(options: JsValue) -> JsResult<()> {
    from_js::<JsLoadOptions>(options, "load options").and_then(JsLoadOptions::check).map(drop).map_err(to_js_error)
}

impl WasmEngine {
    /// The model's identity (for its sessions), or why there is no engine.
    fn model_of(inner: &Rc<RefCell<Slot>>) -> JsResult<String> {
        let mut guard = inner.try_borrow_mut().map_err(|_| to_js_error(busy()))?;
        match &mut *guard {
            Slot::Lost { model_id, .. } => Ok(model_id.clone()),
            s => Ok(s.ready().map_err(to_js_error)?.model_id.clone()),
        }
    }

    /// Run `f` on the engine state, or fail with BUSY / a disposed error.
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T>) -> JsResult<T> {
        let mut guard = self.inner.try_borrow_mut().map_err(|_| to_js_error(busy()))?;
        f(guard.ready().map_err(to_js_error)?).map_err(to_js_error)
    }

    async fn load_inner(source: JsValue, options: JsValue) -> Result<WasmEngine> {
        let opts = from_js::<JsLoadOptions>(options, "load options")?.check()?;
        if opts.panic_at == Some(PanicAt::Load) {
            PanicAt::Load.fire().await;
        }
        let bytes = if let Some(a) = source.dyn_ref::<js_sys::Uint8Array>() {
            if opts.sha256.is_some() {
                return Err(Error::invalid_argument("sha256 is checked by browser storage: pass a URL or a File in a browser"));
            }
            Bytes::Js(a.clone())
        } else {
            Bytes::Stored(Rc::new(crate::storage::open(parse_source(&source)?, opts.open_options()).await?))
        };
        let src = ModelSource::new(bytes, opts.signal.clone(), progress_callback(opts.on_progress.as_ref()));
        let (gguf, loaded, model_id) = src
            .reading(async {
                let gguf = src.header().await?;
                let loaded = load(&gguf, &src, &opts.engine).await?;
                let id = src.identity(&gguf).await?;
                Ok((gguf, loaded, id))
            })
            .await?;
        src.finish();
        let template = chat::template_for(gguf.get_str("tokenizer.chat_template"), loaded.engine.tokenizer());
        let size = src.size();
        let reload = Reload { bytes: src.into_bytes(), options: opts.engine };
        let mut inner = Inner::new(&gguf, size, loaded, template, reload, model_id);
        inner.panic_at_step = opts.panic_at == Some(PanicAt::Step);
        Ok(WasmEngine { inner: Rc::new(RefCell::new(Slot::Ready(inner))) })
    }
}

impl Inner {
    /// The engine `loaded` from `gguf`. A GPU engine keeps `reload` to load again from after a
    /// device loss (a handle on browser storage, or a reference to the caller's bytes, never a
    /// copy); a CPU engine drops it.
    fn new(gguf: &Gguf, file_size: u64, loaded: Loaded, template: TemplateSource, reload: Reload, model_id: String) -> Inner {
        let info = ModelInfo::new(gguf, file_size, &loaded.engine, loaded.reason, template.name());
        let reload = matches!(loaded.engine, AnyEngine::Gpu(_)).then_some(reload);
        Inner { engine: loaded.engine, template, info, generating: None, chat: None, reload, panic_at_step: false, model_id }
    }
}

impl Slot {
    /// The engine, between generations (a call that cannot run during one).
    fn idle(&mut self) -> Result<&mut Inner> {
        let i = self.ready()?;
        if i.generating.is_some() {
            return Err(busy());
        }
        Ok(i)
    }

    fn ready(&mut self) -> Result<&mut Inner> {
        match self {
            Slot::Ready(i) => Ok(i),
            Slot::Lost { error, .. } => Err(Error::new(
                ErrorCode::DeviceLost,
                format!("{}; the model is being loaded again", error.message),
            )),
            Slot::Gone(e) => Err(e.clone()),
        }
    }

    /// After a failed call: a GPU engine whose device failed gives up its engine (and its GPU
    /// memory) at once and waits for `recover`.
    fn failed(&mut self, e: &Error) {
        if e.code != ErrorCode::DeviceLost || !matches!(self, Slot::Ready(Inner { reload: Some(_), .. })) {
            return;
        }
        if let Slot::Ready(Inner { template, reload: Some(reload), model_id, .. }) = std::mem::replace(self, Slot::Gone(disposed())) {
            *self = Slot::Lost { error: e.clone(), template, reload, model_id };
        }
    }
}

#[wasm_bindgen]
impl WasmEngine {
    /// Load a model: `source` is a URL, a `File`/`Blob`, an array of split-part URLs or Files
    /// (through browser storage: downloaded, verified and cached unless `cache: false`), a
    /// `Uint8Array` holding a whole GGUF file (read tensor by tensor, never copied whole). Weights are read tensor by
    /// tensor onto the backend `options.backend` picks (`"auto"`, `"webgpu"`, `"cpu"`; see
    /// `crate::load`); `info().backendReason` says which and why.
    pub async fn load(source: JsValue, options: JsValue) -> JsResult<WasmEngine> {
        Self::load_inner(source, options).await.map_err(to_js_error)
    }

    /// Architecture, size, quantization mix, context, backend and why.
    pub fn info(&self) -> JsResult<JsValue> {
        let info = self.with(|i| Ok(i.info.clone()))?;
        to_js(&info)
    }

    /// Token ids of `text`. `add_special` adds the BOS token where the model wants one;
    /// `parse_special` turns control-token text such as `<start_of_turn>` into its id.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> JsResult<Vec<u32>> {
        self.with(|i| Ok(i.engine.tokenizer().encode(text, add_special, parse_special)))
    }

    /// Text of token ids (control tokens are rendered as their text).
    pub fn detokenize(&self, ids: Vec<u32>) -> JsResult<String> {
        self.with(|i| {
            let tok = i.engine.tokenizer();
            crate::logits::check_token_ids(&ids, tok.n_vocab())?;
            Ok(tok.detokenize(&ids, false, true))
        })
    }

    /// Render chat messages (`[{role, content, tool_calls?, tool_call_id?}]`) with the model's
    /// chat template; `tools` (OpenAI's array, or undefined) as `chat::prepare_tools` says.
    #[wasm_bindgen(js_name = applyChatTemplate)]
    pub fn apply_chat_template(&self, messages: JsValue, add_generation_prompt: bool, tools: JsValue) -> JsResult<String> {
        let messages = chat_messages(messages).map_err(to_js_error)?;
        let tools = json_value(&tools, "tools").map_err(to_js_error)?;
        self.with(|i| {
            let (messages, tools) = chat::prepare_tools(&i.template, &messages, tools.as_ref())?;
            i.render_chat(&messages, tools.as_ref(), add_generation_prompt)
        })
    }

    /// Token ids of the chat prompt for `messages`: the template's markup may become control
    /// tokens, what the caller wrote never does (`chat::encode_chat`). The ids `beginChat` (and so
    /// `chat.completions`) runs; a public utility (counting a conversation's tokens).
    #[wasm_bindgen(js_name = tokenizeChat)]
    pub fn tokenize_chat(&self, messages: JsValue, add_generation_prompt: bool, tools: JsValue) -> JsResult<Vec<u32>> {
        let messages = chat_messages(messages).map_err(to_js_error)?;
        let tools = json_value(&tools, "tools").map_err(to_js_error)?;
        self.with(|i| {
            let (messages, tools) = chat::prepare_tools(&i.template, &messages, tools.as_ref())?;
            Ok(i.encode_chat(&messages, tools.as_ref(), add_generation_prompt)?.ids)
        })
    }

    /// Start generating from `prompt` (text or token ids). Drive it with `step()`.
    pub fn begin(&self, prompt: JsValue, options: JsValue) -> JsResult<()> {
        let opts: JsGenerateOptions = from_js(options, "generate options").map_err(to_js_error)?;
        self.with(|i| {
            if i.generating.is_some() {
                return Err(busy());
            }
            let gen_opts = opts.to_options()?;
            if opts.context_overflow()? == ContextOverflow::DropOldest {
                return Err(Error::invalid_argument("contextOverflow \"drop-oldest\" needs a chat prompt ({messages})"));
            }
            let ids = prompt_ids(i, &prompt, opts.add_special)?;
            i.generating = Some(i.engine.begin(&ids, &gen_opts)?);
            i.chat = None;
            Ok(())
        })
    }

    /// Start generating the assistant's reply to a chat: `chat` is `{messages, tools?,
    /// tool_choice?, parallel_tool_calls?}` (the template's message shape; OpenAI's tool
    /// settings). Everything happens here: the template renders the conversation, what the caller
    /// wrote is tokenized as plain text (`chat::encode_chat`), tools are described to the model,
    /// a required call is forced by a grammar, and each `step()` brings the reply's `deltas`
    /// (text, and calls parsed as they complete); `finish()` adds `content` and `toolCalls`.
    /// The prompt's token ids never leave wasm.
    #[wasm_bindgen(js_name = beginChat)]
    pub fn begin_chat(&self, chat: JsValue, options: JsValue) -> JsResult<()> {
        let opts: JsGenerateOptions = from_js(options, "generate options").map_err(to_js_error)?;
        let (messages, tools) = chat_request(&chat).map_err(to_js_error)?;
        self.with(|i| {
            if i.generating.is_some() {
                return Err(busy());
            }
            let mut gen_opts = opts.to_options()?;
            if let Some(grammar) = tools.as_ref().and_then(ToolSettings::forced_grammar) {
                if gen_opts.constraint.is_some() {
                    return Err(Error::invalid_argument("a required tool call cannot be combined with response_format, grammar or regex"));
                }
                gen_opts.constraint = Some(ConstraintSpec::Grammar(grammar));
            }
            let (messages, described) = chat::prepare_tools(&i.template, &messages, tools.as_ref().map(|t| &t.tools))?;
            let (prompt, dropped) = match opts.context_overflow()? {
                ContextOverflow::Error | ContextOverflow::Shift => (i.encode_chat(&messages, described.as_ref(), true)?, None),
                ContextOverflow::DropOldest => {
                    let room = i.engine.n_ctx().saturating_sub(gen_opts.max_tokens);
                    let mut last = None;
                    let (kept, dropped) = chat::overflow::drop_oldest(messages, |m| {
                        let p = i.encode_chat(m, described.as_ref(), true)?;
                        let fits = p.ids.len() <= room;
                        last = Some(p);
                        Ok(fits)
                    })?;
                    let prompt = match last {
                        Some(p) => p,
                        None => i.encode_chat(&kept, described.as_ref(), true)?,
                    };
                    (prompt, Some(dropped))
                }
            };
            i.generating = Some(i.engine.begin(&prompt.ids, &gen_opts)?);
            i.chat = Some(ChatReply { dropped, ..ChatReply::new(tools.as_ref().filter(|t| t.parses_calls())) });
            Ok(())
        })
    }

    /// Run the next step: resolves to `{kind: "prefill"|"token"|"flush", tokenId, text, done,
    /// total}`, or `null` when the generation is over (then call `finish()`).
    pub fn step(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| to_js_error(busy()))?;
            let i = guard.ready().map_err(to_js_error)?;
            let mut g = i.generating.take().ok_or_else(|| to_js_error(Error::invalid_argument("no generation in progress; call begin() first")))?;
            let r = i.engine.step(&mut g).await;
            if i.panic_at_step {
                PanicAt::Step.fire().await;
            }
            i.generating = Some(g);
            let step = match r {
                Ok(Some(s)) => s,
                Ok(None) => return Ok(JsValue::NULL),
                Err(err) => {
                    // The generation cannot go on; the KV cache holds exactly what ran.
                    i.generating = None;
                    guard.failed(&err);
                    return Err(to_js_error(err));
                }
            };
            let tok = i.engine.tokenizer();
            let mut js = match step {
                Step::Prefill { done, total } => {
                    JsStep { kind: "prefill", token_id: None, text: String::new(), done, total, logprob: None, deltas: None }
                }
                Step::Token { id, text, logprob } => JsStep {
                    kind: "token",
                    token_id: Some(id),
                    text,
                    done: 0,
                    total: 0,
                    logprob: logprob.map(|lp| JsLogprob::new(tok, &lp)),
                    deltas: None,
                },
                Step::Flush { text } => JsStep { kind: "flush", token_id: None, text, done: 0, total: 0, logprob: None, deltas: None },
            };
            if let Some(c) = i.chat.as_mut().filter(|_| js.kind != "prefill") {
                js.deltas = Some(c.push(&js.text));
            }
            to_js(&js)
        })
    }

    /// The embedding of `text` (see `Engine::embed`): resolves to `{embedding: Float32Array,
    /// tokens}`. Fails with BUSY during a generation.
    pub fn embed(&self, text: String) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| to_js_error(busy()))?;
            let i = guard.idle().map_err(to_js_error)?;
            let (v, tokens) = match i.engine.embed(&text).await {
                Ok(r) => r,
                Err(err) => {
                    guard.failed(&err);
                    return Err(to_js_error(err));
                }
            };
            let out = js_sys::Object::new();
            let set = |k: &str, v: &JsValue| js_sys::Reflect::set(&out, &k.into(), v).map(drop);
            set("embedding", &js_sys::Float32Array::from(v.as_slice()).into())?;
            set("tokens", &JsValue::from(tokens as f64))?;
            Ok(out.into())
        })
    }

    /// Save what the engine holds (the conversation's tokens and their KV cache) in browser storage
    /// as `name` of this model (`crate::storage::sessions`); `options`: `{maxSessionBytes?}` (the
    /// cap on all saved sessions, least recently used evicted first). Resolves to the record
    /// `{model, name, bytes, tokens, savedAtMs, usedAtMs}`.
    #[wasm_bindgen(js_name = saveSession)]
    pub fn save_session(&self, name: String, options: JsValue) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let opts: JsSessionOptions = from_js(options, "session options").map_err(to_js_error)?;
            let max = opts.max_session_bytes.map_or(Ok(crate::storage::sessions::DEFAULT_MAX_BYTES), check_max_bytes).map_err(to_js_error)?;
            crate::storage::sessions::check_name(&name).map_err(to_js_error)?;
            let mut guard = inner.try_borrow_mut().map_err(|_| to_js_error(busy()))?;
            let i = guard.idle().map_err(to_js_error)?;
            let model = i.model_id.clone();
            let (pieces, tokens) = match super::session::file_pieces(&mut i.engine, &model).await {
                Ok(p) => p,
                Err(err) => {
                    guard.failed(&err);
                    return Err(to_js_error(err));
                }
            };
            drop(guard);
            let meta = crate::storage::sessions::save(&model, &name, &pieces, tokens, max).await.map_err(to_js_error)?;
            to_js(&meta)
        })
    }

    /// Restore session `name` of this model from browser storage: the next prompt that starts
    /// with its tokens reuses them. Resolves to its record plus `{alreadyHeld}` (the engine held
    /// them already: nothing but the header was read), or `null` when there is no such session. A
    /// damaged one (or one of another model or cache shape) is `INTEGRITY` and removed; one longer
    /// than this engine's context is `CONTEXT_OVERFLOW` and kept.
    #[wasm_bindgen(js_name = restoreSession)]
    pub fn restore_session(&self, name: String) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let model = Self::model_of(&inner)?;
            let Some((blob, meta)) = crate::storage::sessions::open(&model, &name).await.map_err(to_js_error)? else {
                return Ok(JsValue::NULL);
            };
            let mut guard = inner.try_borrow_mut().map_err(|_| to_js_error(busy()))?;
            let i = guard.idle().map_err(to_js_error)?;
            let r = super::session::restore(&mut i.engine, &model, &super::session::SessionBytes::Stored(blob)).await;
            let r = match r {
                Ok(r) => r,
                Err(err) => {
                    guard.failed(&err);
                    drop(guard);
                    if err.code == ErrorCode::Integrity {
                        let _ = crate::storage::sessions::remove(&model, &name).await;
                    }
                    return Err(to_js_error(err));
                }
            };
            let out = to_js(&meta)?;
            r.set_on(&out)?;
            Ok(out)
        })
    }

    /// This model's saved sessions, most recently used first.
    #[wasm_bindgen(js_name = listSessions)]
    pub fn list_sessions(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let model = Self::model_of(&inner)?;
            to_js(&crate::storage::sessions::list(Some(&model)).await.map_err(to_js_error)?)
        })
    }

    /// Remove saved session `name` of this model; resolves to whether there was one.
    #[wasm_bindgen(js_name = deleteSession)]
    pub fn delete_session(&self, name: String) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let model = Self::model_of(&inner)?;
            Ok(crate::storage::sessions::remove(&model, &name).await.map_err(to_js_error)?.into())
        })
    }

    /// The session file of what the engine holds, as bytes (to keep anywhere; `importSession`
    /// reads it back).
    #[wasm_bindgen(js_name = exportSession)]
    pub fn export_session(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| to_js_error(busy()))?;
            let i = guard.idle().map_err(to_js_error)?;
            let model = i.model_id.clone();
            match super::session::file_pieces(&mut i.engine, &model).await {
                Ok((pieces, _)) => {
                    let total: u32 = pieces.iter().map(|p| p.length()).sum();
                    let out = Uint8Array::new_with_length(total);
                    let mut at = 0;
                    for p in &pieces {
                        out.set(p, at);
                        at += p.length();
                    }
                    Ok(out.into())
                }
                Err(err) => {
                    guard.failed(&err);
                    Err(to_js_error(err))
                }
            }
        })
    }

    /// Restore a session file given as bytes (`exportSession`'s); resolves to
    /// `{tokens, alreadyHeld}`. A damaged one is `INTEGRITY`.
    #[wasm_bindgen(js_name = importSession)]
    pub fn import_session(&self, bytes: Uint8Array) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| to_js_error(busy()))?;
            let i = guard.idle().map_err(to_js_error)?;
            let model = i.model_id.clone();
            match super::session::restore(&mut i.engine, &model, &super::session::SessionBytes::Js(bytes)).await {
                Ok(r) => {
                    let out: JsValue = js_sys::Object::new().into();
                    r.set_on(&out)?;
                    Ok(out)
                }
                Err(err) => {
                    guard.failed(&err);
                    Err(to_js_error(err))
                }
            }
        })
    }

    /// Stop the current generation at the next step (finish reason "abort").
    pub fn abort(&self) -> JsResult<()> {
        self.with(|i| {
            if let Some(g) = i.generating.as_mut() {
                g.abort();
            }
            Ok(())
        })
    }

    /// End the current generation and return `{text, tokenIds, finishReason, usage, timings}`.
    pub fn finish(&self) -> JsResult<JsValue> {
        let (g, chat) = self.with(|i| Ok((i.generating.take().ok_or_else(|| Error::invalid_argument("no generation in progress"))?, i.chat.take())))?;
        let r = g.into_generation();
        let t = &r.timings;
        let mut finish_reason = r.finish_reason.as_str();
        let dropped_messages = chat.as_ref().and_then(|c| c.dropped);
        let (content, tool_calls, deltas) = match chat {
            None => (None, None, None),
            Some(mut c) => {
                let rest = c.stream.as_mut().map(|s| s.end().into_iter().map(JsDelta::from).collect()).unwrap_or_default();
                let (content, calls) = match &c.stream {
                    Some(s) => s.parse_whole(&r.text),
                    None => (Some(r.text.clone()), Vec::new()),
                };
                if !calls.is_empty() && finish_reason == "stop" {
                    finish_reason = "tool_calls";
                }
                (Some(content), Some(calls), Some(rest))
            }
        };
        to_js(&JsGeneration {
            content,
            tool_calls,
            deltas,
            dropped_messages,
            text: r.text.clone(),
            token_ids: r.ids.clone(),
            finish_reason,
            usage: Usage {
                prompt_tokens: r.prompt_ids.len(),
                completion_tokens: r.ids.len(),
                total_tokens: r.prompt_ids.len() + r.ids.len(),
                cached_tokens: r.cached_tokens,
            },
            timings: Timings {
                prefill_tokens: t.prefill_tokens,
                prefill_ms: t.prefill_ms,
                prefill_tokens_per_second: t.prefill_tokens_per_s(),
                decode_tokens: t.decode_tokens,
                decode_ms: t.decode_ms,
                decode_tokens_per_second: t.decode_tokens_per_s(),
                accepted_per_pass: t.accepted_per_pass(),
                context_shifts: t.context_shifts,
            },
        })
    }

    /// Forget the KV cache (the next prompt runs from scratch).
    pub fn reset(&self) -> JsResult<()> {
        self.with(|i| {
            i.engine.reset();
            Ok(())
        })
    }

    /// After a call failed with DEVICE_LOST: load the model again (`load::reload_after_loss`)
    /// and resolve to `true`; `false` when nothing was lost. Where the model cannot be loaded
    /// again, every later call fails with why.
    pub fn recover(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| to_js_error(busy()))?;
            let (error, template, reload, model_id) = match std::mem::replace(&mut *guard, Slot::Gone(disposed())) {
                Slot::Lost { error, template, reload, model_id } => (error, template, reload, model_id),
                other => {
                    *guard = other;
                    return Ok(JsValue::FALSE);
                }
            };
            match reload_inner(&error, template, reload, model_id).await {
                Ok(i) => {
                    *guard = Slot::Ready(i);
                    Ok(JsValue::TRUE)
                }
                Err(e) => {
                    let e = Error::new(
                        ErrorCode::DeviceLost,
                        format!("{}, and the model could not be loaded again ({}): load it again", error.message, e.message),
                    );
                    *guard = Slot::Gone(e.clone());
                    Err(to_js_error(e))
                }
            }
        })
    }

    /// Free the model. Later calls fail.
    pub fn dispose(&self) {
        if let Ok(mut g) = self.inner.try_borrow_mut() {
            *g = Slot::Gone(disposed());
        }
    }
}

/// The model loaded again after its GPU failed with `lost`, from the source it was loaded from.
async fn reload_inner(lost: &Error, template: TemplateSource, reload: Reload, model_id: String) -> Result<Inner> {
    let src = ModelSource::new(reload.bytes.clone(), None, None);
    let (gguf, loaded) = src
        .reading(async {
            let gguf = src.header().await?;
            let loaded = reload_after_loss(&gguf, &src, &reload.options, lost).await?;
            Ok((gguf, loaded))
        })
        .await?;
    Ok(Inner::new(&gguf, src.size(), loaded, template, reload, model_id))
}

/// The `messages` argument of the chat methods.
/// A chat prompt `{messages, tools?, tool_choice?, parallel_tool_calls?}`: the messages and the
/// checked tool settings.
fn chat_request(chat: &JsValue) -> Result<(Vec<ChatMessage>, Option<ToolSettings>)> {
    const SHAPE: &str = "a chat prompt must be {messages, tools?, tool_choice?, parallel_tool_calls?}";
    if !chat.is_object() || js_sys::Array::is_array(chat) {
        return Err(Error::invalid_argument(SHAPE));
    }
    let keys: Vec<String> = js_sys::Object::keys(chat.unchecked_ref::<js_sys::Object>()).iter().filter_map(|k| k.as_string()).collect();
    if let Some(k) = keys.iter().find(|k| !["messages", "tools", "tool_choice", "parallel_tool_calls"].contains(&k.as_str())) {
        return Err(Error::invalid_argument(format!("{SHAPE}; got \"{k}\"")));
    }
    let get = |k: &str| js_sys::Reflect::get(chat, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
    let messages = chat_messages(get("messages"))?;
    let parallel = get("parallel_tool_calls");
    let parallel = match parallel.as_bool() {
        Some(b) => Some(b),
        None if parallel.is_undefined() || parallel.is_null() => None,
        None => return Err(Error::invalid_argument("parallel_tool_calls must be a boolean")),
    };
    let tools = ToolSettings::from_request(json_value(&get("tools"), "tools")?.as_ref(), json_value(&get("tool_choice"), "tool_choice")?.as_ref(), parallel)?;
    Ok((messages, tools))
}

fn chat_messages(messages: JsValue) -> Result<Vec<ChatMessage>> {
    serde_wasm_bindgen::from_value(messages)
        .map_err(|e| Error::invalid_argument(format!("messages must be [{{role, content, tool_calls?, tool_call_id?}}]: {e}")))
}

impl Inner {
    /// `messages` through the model's chat template, with its BOS/EOS texts.
    fn render_chat(&self, messages: &[ChatMessage], tools: Option<&serde_json::Value>, add_generation_prompt: bool) -> Result<String> {
        let (bos, eos) = self.bos_eos();
        chat::render_with_tools(&self.template, messages, tools, add_generation_prompt, bos, eos)
    }

    /// `messages` through the chat template and tokenized, the caller's text as plain text.
    fn encode_chat(&self, messages: &[ChatMessage], tools: Option<&serde_json::Value>, add_generation_prompt: bool) -> Result<chat::ChatPrompt> {
        let (bos, eos) = self.bos_eos();
        chat::encode_chat(self.engine.tokenizer(), &self.template, messages, tools, add_generation_prompt, bos, eos)
    }

    /// The model's BOS and EOS texts (empty where it has none).
    fn bos_eos(&self) -> (&str, &str) {
        (self.info.bos_token.as_deref().unwrap_or_default(), self.info.eos_token.as_deref().unwrap_or_default())
    }
}

/// Token ids of a prompt given as text or as an array of ids.
fn prompt_ids(i: &Inner, prompt: &JsValue, add_special: Option<bool>) -> Result<Vec<u32>> {
    let tok = i.engine.tokenizer();
    if let Some(text) = prompt.as_string() {
        // A prompt that already starts with the BOS token (a rendered chat template) does not get
        // a second one.
        let starts_with_bos = i.info.bos_token.as_deref().is_some_and(|b| !b.is_empty() && text.starts_with(b));
        Ok(tok.encode(&text, add_special.unwrap_or(!starts_with_bos), true))
    } else if js_sys::Array::is_array(prompt) || prompt.is_instance_of::<js_sys::Uint32Array>() {
        // Integers only here; their range is the engine's one check (`logits::check_token_ids`).
        js_sys::Array::from(prompt)
            .iter()
            .map(|v| v.as_f64().unwrap_or(-1.0))
            .map(|v| {
                if v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64 {
                    Ok(v as u32)
                } else {
                    Err(Error::invalid_argument(format!("prompt token {v} is not a token id (an integer >= 0)")))
                }
            })
            .collect()
    } else {
        Err(Error::invalid_argument("the prompt must be a string or an array of token ids"))
    }
}
