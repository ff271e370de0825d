//! The `#[wasm_bindgen]` facade: what the npm package's JavaScript (src/js/) calls. Nothing here
//! computes; it converts options and results between JS and the Rust engine and turns every
//! [`Error`] into a JS `Error` with a stable `code`.
//!
//! Generation is driven from JS one step at a time (`begin`, then `step` until it resolves to
//! `null`, then `finish`), so the JS side can yield to its event loop between tokens: that keeps
//! a Worker responsive to abort messages and lets tokens stream out as they are made.
//!
//! One call at a time per engine: a call that arrives while another is running (possible only
//! across the `await` of an asynchronous step) fails with `BUSY`; the JS layer queues calls so
//! users never see that.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::{GpuBackend, GpuOptions};
use crate::backend::TensorBytes;
use crate::model::TensorSource;
use crate::chat::{self, ChatMessage, TemplateSource};
use crate::engine::{Engine, GenerateOptions, Generating, Step};
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::Gguf;
use crate::sampling::SamplingParams;

mod error;
pub use error::to_js_error;

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The engine on whichever backend runs it.
enum AnyEngine {
    Cpu(Engine<CpuBackend>),
    Gpu(Engine<GpuBackend>),
}

/// `with_engine!(any, e => expr)`: evaluate `expr` with `e` bound to the concrete engine.
macro_rules! with_engine {
    ($any:expr, $e:ident => $body:expr) => {
        match $any {
            AnyEngine::Cpu($e) => $body,
            AnyEngine::Gpu($e) => $body,
        }
    };
}

struct Inner {
    engine: AnyEngine,
    template: TemplateSource,
    info: ModelInfo,
    generating: Option<Generating>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelInfo {
    architecture: String,
    name: Option<String>,
    parameters: u64,
    file_size: u64,
    /// Tensor type -> bytes.
    quantization: Vec<(String, u64)>,
    context_length: usize,
    training_context_length: usize,
    vocab_size: usize,
    layers: usize,
    embedding_size: usize,
    backend: String,
    backend_reason: String,
    chat_template: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

/// (`onProgress` may be present too: it is read by `progress_callback`; the JS layer rejects
/// unknown options.)
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoadOptions {
    context_length: Option<usize>,
    /// Why this backend runs (set by the JS layer when it fell back).
    backend_reason: Option<String>,
    /// GPU: fail (so the caller falls back to the CPU) on a software adapter.
    avoid_software: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsGenerateOptions {
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    top_k: Option<usize>,
    top_p: Option<f32>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    penalty_last_n: Option<usize>,
    seed: Option<f64>,
    stop: Option<Vec<String>>,
    ignore_eos: Option<bool>,
    /// Add the model's BOS token (default: unless the prompt already starts with it).
    add_special: Option<bool>,
}

impl JsGenerateOptions {
    fn to_options(&self) -> Result<GenerateOptions> {
        let d = SamplingParams::default();
        let seed = match self.seed {
            Some(s) if s.is_finite() && s >= 0.0 && s.fract() == 0.0 && s <= 9_007_199_254_740_991.0 => s as u64,
            Some(s) => return Err(Error::invalid_argument(format!("seed must be a non-negative integer, got {s}"))),
            None => (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64,
        };
        let max_tokens = self.max_tokens.unwrap_or(256);
        let opts = GenerateOptions {
            max_tokens,
            sampling: SamplingParams {
                temperature: self.temperature.unwrap_or(d.temperature),
                top_k: self.top_k.unwrap_or(d.top_k),
                top_p: self.top_p.unwrap_or(d.top_p),
                min_p: self.min_p.unwrap_or(d.min_p),
                repeat_penalty: self.repetition_penalty.unwrap_or(d.repeat_penalty),
                frequency_penalty: self.frequency_penalty.unwrap_or(d.frequency_penalty),
                presence_penalty: self.presence_penalty.unwrap_or(d.presence_penalty),
                penalty_last_n: self.penalty_last_n.unwrap_or(d.penalty_last_n),
                seed,
            },
            stop: self.stop.clone().unwrap_or_default(),
            ignore_eos: self.ignore_eos.unwrap_or(false),
        };
        opts.sampling.validate()?;
        Ok(opts)
    }
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
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsResult {
    text: String,
    token_ids: Vec<u32>,
    finish_reason: &'static str,
    usage: Usage,
    timings: JsTimings,
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
struct JsTimings {
    prefill_tokens: usize,
    prefill_ms: f64,
    prefill_tokens_per_second: f64,
    decode_tokens: usize,
    decode_ms: f64,
    decode_tokens_per_second: f64,
}

fn from_js<T: for<'de> Deserialize<'de> + Default>(v: JsValue, what: &str) -> Result<T> {
    if v.is_undefined() || v.is_null() {
        return Ok(T::default());
    }
    serde_wasm_bindgen::from_value(v).map_err(|e| Error::invalid_argument(format!("{what}: {e}")))
}

fn to_js<T: Serialize>(v: &T) -> std::result::Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| to_js_error(Error::internal(e.to_string())))
}

/// A loaded model. Created by [`WasmEngine::from_bytes`].
#[wasm_bindgen]
pub struct WasmEngine {
    /// `None` once disposed.
    inner: Rc<RefCell<Option<Inner>>>,
}

fn busy() -> Error {
    Error::new(ErrorCode::Busy, "the engine is busy with another call; await it first")
}

fn disposed() -> Error {
    Error::invalid_argument("the engine was disposed; load the model again")
}

impl WasmEngine {
    /// Run `f` on the engine state, or fail with BUSY / a disposed error.
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T>) -> std::result::Result<T, JsValue> {
        let mut guard = self.inner.try_borrow_mut().map_err(|_| to_js_error(busy()))?;
        let inner = guard.as_mut().ok_or_else(|| to_js_error(disposed()))?;
        f(inner).map_err(to_js_error)
    }
}

#[wasm_bindgen]
impl WasmEngine {
    /// Load a complete GGUF file held in memory, on the CPU backend.
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(bytes: Vec<u8>, options: JsValue) -> std::result::Result<WasmEngine, JsValue> {
        let opts: LoadOptions = from_js(options, "load options").map_err(to_js_error)?;
        let file = Arc::new(bytes);
        let gguf = Gguf::from_bytes(&file).map_err(to_js_error)?;
        Self::cpu(file, gguf, opts).map_err(to_js_error)
    }

    /// The CPU engine over a whole file in memory and its (possibly merged split) header.
    fn cpu(file: Arc<Vec<u8>>, gguf: Gguf, opts: LoadOptions) -> Result<WasmEngine> {
        let engine = crate::block_on(Engine::load_from(CpuBackend::new(), &gguf, &file, opts.context_length))?;
        let reason = opts.backend_reason.unwrap_or_else(|| "the CPU backend (WebAssembly SIMD128) was requested".into());
        let inner = build_inner(&gguf, file.len() as u64, AnyEngine::Cpu(engine), reason);
        Ok(WasmEngine { inner: Rc::new(RefCell::new(Some(inner))) })
    }

    /// Load a model from browser storage (see `openModel`) into wasm memory, on the CPU backend.
    #[wasm_bindgen(js_name = fromStored)]
    pub async fn from_stored(stored: &crate::storage::js::JsStoredModel, options: JsValue) -> std::result::Result<WasmEngine, JsValue> {
        let opts: LoadOptions = from_js(options.clone(), "load options").map_err(to_js_error)?;
        let on_progress = progress_callback(&options);
        let model = stored.model();
        let r: Result<WasmEngine> = async {
            // Split models: the parts' headers merged into one (tensor offsets index the parts'
            // bytes one after the other, as `read_all` returns them).
            let gguf = model.header().await?;
            let bytes = model.read_all(on_progress).await?;
            Self::cpu(Arc::new(bytes), gguf, opts)
        }
        .await;
        r.map_err(to_js_error)
    }

    /// Load a model from browser storage onto the WebGPU backend, tensor by tensor: the file is
    /// never in wasm memory as a whole. Fails with `DEVICE_LOST` when no usable GPU is found, and
    /// (with `avoidSoftware`) when the only adapter is a software renderer, so the caller can fall
    /// back to the CPU backend.
    #[wasm_bindgen(js_name = fromStoredGpu)]
    pub async fn from_stored_gpu(stored: &crate::storage::js::JsStoredModel, options: JsValue) -> std::result::Result<WasmEngine, JsValue> {
        let opts: LoadOptions = from_js(options.clone(), "load options").map_err(to_js_error)?;
        let model = stored.model();
        let r: Result<WasmEngine> = async {
            let backend = gpu_backend(&opts).await?;
            let gguf = model.header().await?;
            let source = Progressed { inner: &*model, total: gguf.data_len(), done: Default::default(), on_progress: RefCell::new(progress_callback(&options)) };
            let engine = Engine::load_from(backend, &gguf, &source, opts.context_length).await?;
            let size = model.size();
            Ok(gpu_engine(&gguf, size, engine, opts.backend_reason))
        }
        .await;
        r.map_err(to_js_error)
    }

    /// Load a complete GGUF file held in memory onto the WebGPU backend (see `fromStoredGpu`).
    #[wasm_bindgen(js_name = fromBytesGpu)]
    pub async fn from_bytes_gpu(bytes: Vec<u8>, options: JsValue) -> std::result::Result<WasmEngine, JsValue> {
        let opts: LoadOptions = from_js(options, "load options").map_err(to_js_error)?;
        let r: Result<WasmEngine> = async {
            let file = Arc::new(bytes);
            let gguf = Gguf::from_bytes(&file)?;
            let backend = gpu_backend(&opts).await?;
            let engine = Engine::load_from(backend, &gguf, &file, opts.context_length).await?;
            Ok(gpu_engine(&gguf, file.len() as u64, engine, opts.backend_reason))
        }
        .await;
        r.map_err(to_js_error)
    }

    /// Architecture, size, quantization mix, context, backend and why.
    pub fn info(&self) -> std::result::Result<JsValue, JsValue> {
        let info = self.with(|i| Ok(i.info.clone()))?;
        to_js(&info)
    }

    /// Token ids of `text`. `add_special` adds the BOS token where the model wants one;
    /// `parse_special` turns control-token text such as `<start_of_turn>` into its id.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> std::result::Result<Vec<u32>, JsValue> {
        self.with(|i| Ok(with_engine!(&i.engine, e => e.tokenizer.encode(text, add_special, parse_special))))
    }

    /// Text of token ids (control tokens are rendered as their text).
    pub fn detokenize(&self, ids: Vec<u32>) -> std::result::Result<String, JsValue> {
        self.with(|i| {
            with_engine!(&i.engine, e => {
                if let Some(&bad) = ids.iter().find(|&&t| t as usize >= e.tokenizer.n_vocab()) {
                    return Err(Error::invalid_argument(format!("token id {bad} is out of range (vocabulary of {})", e.tokenizer.n_vocab())));
                }
                Ok(e.tokenizer.detokenize(&ids, false, true))
            })
        })
    }

    /// Render chat messages (`[{role, content}]`) with the model's chat template.
    #[wasm_bindgen(js_name = applyChatTemplate)]
    pub fn apply_chat_template(&self, messages: JsValue, add_generation_prompt: bool) -> std::result::Result<String, JsValue> {
        let messages: Vec<ChatMessage> = serde_wasm_bindgen::from_value(messages)
            .map_err(|e| to_js_error(Error::invalid_argument(format!("messages must be [{{role, content}}]: {e}"))))?;
        self.with(|i| {
            let bos = i.info.bos_token.clone().unwrap_or_default();
            let eos = i.info.eos_token.clone().unwrap_or_default();
            chat::render(&i.template, &messages, add_generation_prompt, &bos, &eos)
        })
    }

    /// Start generating from `prompt` (text or token ids). Drive it with `step()`.
    pub fn begin(&self, prompt: JsValue, options: JsValue) -> std::result::Result<(), JsValue> {
        let opts: JsGenerateOptions = from_js(options, "generate options").map_err(to_js_error)?;
        self.with(|i| {
            if i.generating.is_some() {
                return Err(busy());
            }
            let gen_opts = opts.to_options()?;
            let ids = prompt_ids(i, &prompt, opts.add_special)?;
            let g = with_engine!(&mut i.engine, e => e.begin(&ids, &gen_opts))?;
            i.generating = Some(g);
            Ok(())
        })
    }

    /// Run the next step: resolves to `{kind: "prefill"|"token"|"flush", tokenId, text, done,
    /// total}`, or `null` when the generation is over (then call `finish()`).
    pub fn step(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| to_js_error(busy()))?;
            let i = guard.as_mut().ok_or_else(|| to_js_error(disposed()))?;
            let mut g = i.generating.take().ok_or_else(|| to_js_error(Error::invalid_argument("no generation in progress; call begin() first")))?;
            let r = with_engine!(&mut i.engine, e => e.step(&mut g).await);
            i.generating = Some(g);
            let step = match r {
                Ok(Some(s)) => s,
                Ok(None) => return Ok(JsValue::NULL),
                Err(err) => {
                    // The generation cannot go on; the KV cache holds exactly what ran.
                    i.generating = None;
                    return Err(to_js_error(err));
                }
            };
            to_js(&match step {
                Step::Prefill { done, total } => JsStep { kind: "prefill", token_id: None, text: String::new(), done, total },
                Step::Token { id, text } => JsStep { kind: "token", token_id: Some(id), text, done: 0, total: 0 },
                Step::Flush { text } => JsStep { kind: "flush", token_id: None, text, done: 0, total: 0 },
            })
        })
    }

    /// Stop the current generation at the next step (finish reason "abort").
    pub fn abort(&self) -> std::result::Result<(), JsValue> {
        self.with(|i| {
            if let Some(g) = i.generating.as_mut() {
                g.abort();
            }
            Ok(())
        })
    }

    /// End the current generation and return `{text, tokenIds, finishReason, usage, timings}`.
    pub fn finish(&self) -> std::result::Result<JsValue, JsValue> {
        let g = self.with(|i| i.generating.take().ok_or_else(|| Error::invalid_argument("no generation in progress")))?;
        let r = g.into_generation();
        let t = &r.timings;
        to_js(&JsResult {
            text: r.text.clone(),
            token_ids: r.ids.clone(),
            finish_reason: r.finish_reason.as_str(),
            usage: Usage {
                prompt_tokens: r.prompt_ids.len(),
                completion_tokens: r.ids.len(),
                total_tokens: r.prompt_ids.len() + r.ids.len(),
                cached_tokens: r.cached_tokens,
            },
            timings: JsTimings {
                prefill_tokens: t.prefill_tokens,
                prefill_ms: t.prefill_ms,
                prefill_tokens_per_second: t.prefill_tokens_per_s(),
                decode_tokens: t.decode_tokens,
                decode_ms: t.decode_ms,
                decode_tokens_per_second: t.decode_tokens_per_s(),
            },
        })
    }

    /// Forget the KV cache (the next prompt runs from scratch).
    pub fn reset(&self) -> std::result::Result<(), JsValue> {
        self.with(|i| {
            with_engine!(&mut i.engine, e => e.reset());
            Ok(())
        })
    }

    /// Free the model. Later calls fail.
    pub fn dispose(&self) {
        if let Ok(mut g) = self.inner.try_borrow_mut() {
            *g = None;
        }
    }
}

/// `options.onProgress` as a storage progress callback (errors it throws are ignored; a value
/// that is not a function is rejected by the JS layer and ignored here).
fn progress_callback(options: &JsValue) -> Option<crate::storage::ProgressFn> {
    let f = js_sys::Reflect::get(options, &"onProgress".into()).ok().filter(|f| f.is_function())?;
    crate::storage::js::progress_callback(Some(f)).ok().flatten()
}

async fn gpu_backend(opts: &LoadOptions) -> Result<GpuBackend> {
    let backend = GpuBackend::new(&GpuOptions::default()).await?;
    if opts.avoid_software.unwrap_or(false) && is_software(&backend) {
        return Err(Error::new(
            ErrorCode::DeviceLost,
            format!("the WebGPU adapter is a software renderer ({}), slower than the CPU backend", backend.ctx.describe()),
        ));
    }
    Ok(backend)
}

/// SwiftShader, lavapipe/llvmpipe and other CPU implementations of WebGPU/Vulkan.
fn is_software(b: &GpuBackend) -> bool {
    let i = &b.ctx.info;
    let text = format!("{} {} {}", i.name, i.driver, i.driver_info).to_lowercase();
    i.device_type == wgpu::DeviceType::Cpu || ["swiftshader", "llvmpipe", "lavapipe", "software"].iter().any(|s| text.contains(s))
}

fn gpu_engine(gguf: &Gguf, size: u64, engine: Engine<GpuBackend>, reason: Option<String>) -> WasmEngine {
    let adapter = engine.backend.ctx.describe();
    let reason = format!("{}; adapter: {adapter}", reason.unwrap_or_else(|| "WebGPU, as requested".into()));
    let inner = build_inner(gguf, size, AnyEngine::Gpu(engine), reason);
    WasmEngine { inner: Rc::new(RefCell::new(Some(inner))) }
}

/// A stored model as a tensor source that reports load progress.
struct Progressed<'a> {
    inner: &'a crate::storage::StoredModel,
    total: u64,
    done: std::cell::Cell<u64>,
    on_progress: RefCell<Option<crate::storage::ProgressFn>>,
}

impl TensorSource for Progressed<'_> {
    fn file_len(&self) -> u64 {
        self.inner.size()
    }
    async fn read(&self, range: std::ops::Range<u64>) -> Result<TensorBytes> {
        let len = (range.end - range.start) as usize;
        let bytes = self.inner.read(range.start, len).await?;
        self.done.set(self.done.get() + len as u64);
        if let Some(f) = self.on_progress.borrow_mut().as_mut() {
            f(crate::storage::Progress { phase: "load", loaded: self.done.get(), total: self.total, bytes_per_second: 0.0 });
        }
        Ok(TensorBytes::new(Arc::new(bytes), 0..len))
    }
}

/// Token ids of a prompt given as text or as an array of ids.
fn prompt_ids(i: &Inner, prompt: &JsValue, add_special: Option<bool>) -> Result<Vec<u32>> {
    with_engine!(&i.engine, e => {
        if let Some(text) = prompt.as_string() {
            // A prompt that already starts with the BOS token (a rendered chat template) does not
            // get a second one.
            let starts_with_bos = i.info.bos_token.as_deref().is_some_and(|b| !b.is_empty() && text.starts_with(b));
            Ok(e.tokenizer.encode(&text, add_special.unwrap_or(!starts_with_bos), true))
        } else if js_sys::Array::is_array(prompt) || prompt.is_instance_of::<js_sys::Uint32Array>() {
            let ids: Vec<f64> = js_sys::Array::from(prompt).iter().map(|v| v.as_f64().unwrap_or(-1.0)).collect();
            ids.iter()
                .map(|&v| {
                    if v >= 0.0 && v.fract() == 0.0 && v < e.tokenizer.n_vocab() as f64 {
                        Ok(v as u32)
                    } else {
                        Err(Error::invalid_argument(format!("prompt token {v} is not a valid id (vocabulary of {})", e.tokenizer.n_vocab())))
                    }
                })
                .collect()
        } else {
            Err(Error::invalid_argument("the prompt must be a string or an array of token ids"))
        }
    })
}

fn build_inner(gguf: &Gguf, file_size: u64, engine: AnyEngine, backend_reason: String) -> Inner {
    let mut by_type: Vec<(String, u64)> = Vec::new();
    let mut params = 0u64;
    for t in &gguf.tensors {
        params += t.n_elements();
        let name = format!("{:?}", t.ty);
        match by_type.iter_mut().find(|(n, _)| *n == name) {
            Some((_, b)) => *b += t.n_bytes,
            None => by_type.push((name, t.n_bytes)),
        }
    }
    by_type.sort_by(|a, b| b.1.cmp(&a.1));
    let (info, template) = with_engine!(&engine, e => {
        let c = e.config();
        let tok = &e.tokenizer;
        let text = |id: Option<u32>| id.and_then(|id| tok.token_text(id)).map(str::to_string);
        let template = chat::template_for(gguf.get_str("tokenizer.chat_template"), tok);
        (
            ModelInfo {
                architecture: c.arch.name().to_string(),
                name: gguf.get_str("general.name").map(str::to_string),
                parameters: params,
                file_size,
                quantization: by_type,
                context_length: e.n_ctx(),
                training_context_length: c.n_ctx_train,
                vocab_size: c.n_vocab,
                layers: c.n_layer,
                embedding_size: c.n_embd,
                backend: e.backend_name().to_string(),
                backend_reason,
                chat_template: template.name().to_string(),
                bos_token: text(tok.bos_id()),
                eos_token: text(tok.eos_id()),
            },
            template,
        )
    });
    Inner { engine, template, info, generating: None }
}
