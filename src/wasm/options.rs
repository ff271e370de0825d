//! The option objects of the exported functions, as serde structs: the one definition of which
//! keys exist and what they mean (`src/js/index.d.ts` documents the same keys; a test checks the
//! documented defaults against [`crate::wasm::contract`]). Unknown keys are `INVALID_ARGUMENT`.
//! JS values that serde cannot describe (functions, `AbortSignal`s) pass through unchanged and are
//! checked by `convert`.

use serde::Deserialize;
use wasm_bindgen::JsValue;

use super::convert::{abort_signal, function, json_value, progress_callback};
use super::hooks::PanicAt;
use crate::constrain::ConstraintSpec;
use crate::engine::GenerateOptions;
use crate::error::{Error, Result};
use crate::load::{BackendChoice, LoadOptions};
use crate::sampling::SamplingParams;
use crate::storage::manifest::DEFAULT_CHUNK_SIZE;
use crate::storage::{OpenOptions, StoreKind};

/// `Engine.load(source, options)`: the engine's options and the storage options that apply to a
/// URL or `File` source.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsLoadOptions {
    backend: Option<String>,
    context_length: Option<usize>,
    kv_cache: Option<String>,
    threads: Option<usize>,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    on_progress: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    signal: JsValue,
    sha256: Option<String>,
    cache: Option<bool>,
    store: Option<String>,
    inactivity_timeout: Option<u32>,
    hf_endpoint: Option<String>,
    persist: Option<bool>,
    /// Test-only: panic after an await in `load` or in the first `step` (see `hooks::PanicAt`).
    #[serde(rename = "__panicAfterAwait")]
    panic_after_await: Option<String>,
}

/// Most CPU threads a load may ask for (the calling thread and the pool's workers).
const MAX_THREADS: usize = crate::backend::cpu::pool::MAX_WORKERS + 1;

/// The checked form of [`JsLoadOptions`].
pub struct Load {
    pub engine: LoadOptions,
    pub on_progress: Option<js_sys::Function>,
    pub signal: Option<web_sys::AbortSignal>,
    pub sha256: Option<String>,
    pub cache: bool,
    pub store: StoreKind,
    pub inactivity_timeout: Option<u32>,
    pub hf_endpoint: Option<String>,
    pub persist: bool,
    pub panic_at: Option<PanicAt>,
}

impl JsLoadOptions {
    pub fn check(self) -> Result<Load> {
        Ok(Load {
            engine: LoadOptions {
                backend: match &self.backend {
                    Some(b) => BackendChoice::parse(b)?,
                    None => BackendChoice::Auto,
                },
                n_ctx: self.context_length,
                kv_type: self.kv_cache.as_deref().map_or(Ok(crate::backend::KvType::F16), crate::backend::KvType::parse)?,
                cpu_threads: match self.threads {
                    Some(n @ 1..=MAX_THREADS) => Some(n),
                    Some(n) => return Err(Error::invalid_argument(format!("threads must be from 1 to {MAX_THREADS} (got {n})"))),
                    None => None,
                },
                ..Default::default()
            },
            on_progress: function(&self.on_progress, "onProgress")?,
            signal: abort_signal(&self.signal)?,
            sha256: self.sha256,
            cache: self.cache.unwrap_or(true),
            store: parse_store(self.store.as_deref())?,
            inactivity_timeout: self.inactivity_timeout,
            hf_endpoint: self.hf_endpoint,
            persist: self.persist.unwrap_or(false),
            panic_at: self.panic_after_await.as_deref().map(PanicAt::parse).transpose()?,
        })
    }
}

impl Load {
    /// Storage options for opening a URL or `File` source.
    /// Storage options of a load. Where the context has no browser storage at all and the store
    /// is "auto", the model loads straight from the source (as with `cache: false`) instead of
    /// failing; `downloadModel` (whose point is the stored copy) still fails there.
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            sha256: self.sha256.clone(),
            cache: self.cache && (self.store != StoreKind::Auto || crate::storage::has_storage()),
            store: self.store,
            signal: self.signal.clone(),
            on_progress: progress_callback(self.on_progress.as_ref()),
            inactivity_timeout_ms: self.inactivity_timeout.unwrap_or(OpenOptions::default().inactivity_timeout_ms),
            hf_endpoint: self.hf_endpoint.clone(),
            persist: self.persist,
            ..Default::default()
        }
    }
}

fn parse_store(s: Option<&str>) -> Result<StoreKind> {
    match s {
        None => Ok(StoreKind::Auto),
        Some(s) => StoreKind::parse(s)
            .ok_or_else(|| Error::invalid_argument(format!("store must be \"auto\", \"opfs\" or \"cache\", got {s:?}"))),
    }
}

/// `downloadModel(source, options)` and the internal `openModel`: storage only.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsStorageOptions {
    sha256: Option<String>,
    cache: Option<bool>,
    store: Option<String>,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    signal: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    on_progress: JsValue,
    key: Option<String>,
    chunk_size: Option<u64>,
    concurrency: Option<usize>,
    retries: Option<u32>,
    inactivity_timeout: Option<u32>,
    hf_endpoint: Option<String>,
    persist: Option<bool>,
}

impl JsStorageOptions {
    pub fn check(self) -> Result<OpenOptions> {
        let d = OpenOptions::default();
        Ok(OpenOptions {
            sha256: self.sha256,
            cache: self.cache.unwrap_or(d.cache),
            store: parse_store(self.store.as_deref())?,
            signal: abort_signal(&self.signal)?,
            on_progress: progress_callback(function(&self.on_progress, "onProgress")?.as_ref()),
            key: self.key,
            chunk_size: self.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE),
            concurrency: self.concurrency.unwrap_or(d.concurrency),
            retries: self.retries.map_or(d.retries, |r| r.min(20)),
            inactivity_timeout_ms: self.inactivity_timeout.unwrap_or(d.inactivity_timeout_ms),
            hf_endpoint: self.hf_endpoint,
            persist: self.persist.unwrap_or(false),
        })
    }
}

/// `generate(prompt, options)` less the callbacks and the signal, which the JS loop handles.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsGenerateOptions {
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
    /// OpenAI's `response_format`: `{type: "text" | "json_object" | "json_schema", json_schema:
    /// {name, schema, strict, description}}` (read through JSON, so numbers keep their type).
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    response_format: JsValue,
    /// A Lark or GBNF grammar the output must match.
    grammar: Option<String>,
    /// A regular expression the output must match.
    regex: Option<String>,
    /// Report each token's log-probability; `top_logprobs` adds the most likely alternatives.
    logprobs: Option<bool>,
    top_logprobs: Option<usize>,
    /// Add the model's BOS token (default: unless the prompt already starts with it).
    pub add_special: Option<bool>,
    /// "error" (default), "drop-oldest" (chat prompts: the oldest turns go until the prompt and
    /// `max_tokens` fit the context; `chat::overflow`) or "shift" (generation goes on past a full
    /// context: llama.cpp's context shift, [`crate::engine::GenerateOptions::context_shift`]).
    context_overflow: Option<String>,
    /// Prompt-lookup speculation: omitted, on for greedy decoding on the CPU; `true` or `{ngram,
    /// maxDraft}` also when sampling and on WebGPU; `false` off.
    speculation: Option<JsSpeculation>,
}

/// `speculation: false | true | { ngram?, maxDraft? }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsSpeculation {
    On(bool),
    Tuned {
        ngram: Option<usize>,
        #[serde(rename = "maxDraft")]
        max_draft: Option<usize>,
    },
}

impl JsSpeculation {
    fn to_speculation(&self) -> Result<Option<crate::speculate::Speculation>> {
        use crate::speculate::{Speculation, MAX_NGRAM};
        let d = Speculation::default();
        match *self {
            JsSpeculation::On(false) => Ok(None),
            JsSpeculation::On(true) => Ok(Some(Speculation { requested: true, ..d })),
            JsSpeculation::Tuned { ngram, max_draft } => {
                let ngram_max = ngram.unwrap_or(d.ngram_max);
                let max_draft = max_draft.unwrap_or(d.max_draft);
                if !(1..=MAX_NGRAM).contains(&ngram_max) || !(1..=64).contains(&max_draft) {
                    return Err(Error::invalid_argument(format!("speculation: ngram must be 1..{MAX_NGRAM} and maxDraft 1..64")));
                }
                Ok(Some(Speculation { ngram_min: d.ngram_min.min(ngram_max), ngram_max, max_draft, requested: true, ..d }))
            }
        }
    }
}

/// What a chat does when its prompt and `max_tokens` do not fit the context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextOverflow {
    Error,
    DropOldest,
    Shift,
}

/// OpenAI's `response_format` object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseFormat {
    r#type: String,
    json_schema: Option<JsonSchemaFormat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSchemaFormat {
    #[allow(dead_code)]
    name: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    schema: Option<serde_json::Value>,
    /// Always honored: the output always matches the schema (OpenAI's `strict: true`).
    #[allow(dead_code)]
    strict: Option<bool>,
}

impl JsGenerateOptions {
    /// The output constraint: at most one of `responseFormat` (other than text), `grammar` and
    /// `regex`.
    fn constraint(&self) -> Result<Option<ConstraintSpec>> {
        let format = match json_value(&self.response_format, "responseFormat")? {
            None => None,
            Some(v) => {
                let f: ResponseFormat = serde_json::from_value(v)
                    .map_err(|e| Error::invalid_argument(format!("responseFormat must be {{type, json_schema?}}: {e}")))?;
                match (f.r#type.as_str(), f.json_schema) {
                    ("text", _) => None,
                    ("json_object", _) => Some(ConstraintSpec::JsonObject),
                    ("json_schema", Some(JsonSchemaFormat { schema: Some(s), .. })) => Some(ConstraintSpec::JsonSchema(s)),
                    ("json_schema", _) => {
                        return Err(Error::invalid_argument("responseFormat json_schema needs json_schema.schema"));
                    }
                    (t, _) => {
                        return Err(Error::invalid_argument(format!(
                            "responseFormat type must be \"text\", \"json_object\" or \"json_schema\", got \"{t}\""
                        )))
                    }
                }
            }
        };
        let grammar = self.grammar.clone().map(ConstraintSpec::Grammar);
        let regex = self.regex.clone().map(ConstraintSpec::Regex);
        let mut given = [format, grammar, regex].into_iter().flatten();
        let first = given.next();
        if given.next().is_some() {
            return Err(Error::invalid_argument("give at most one of responseFormat, grammar and regex"));
        }
        Ok(first)
    }

    /// Defaults are [`GenerateOptions::default`]'s; the seed is random when omitted.
    pub fn context_overflow(&self) -> Result<ContextOverflow> {
        match self.context_overflow.as_deref() {
            None | Some("error") => Ok(ContextOverflow::Error),
            Some("drop-oldest") => Ok(ContextOverflow::DropOldest),
            Some("shift") => Ok(ContextOverflow::Shift),
            Some(other) => Err(Error::invalid_argument(format!("contextOverflow must be \"error\", \"drop-oldest\" or \"shift\", got {other:?}"))),
        }
    }

    pub fn to_options(&self) -> Result<GenerateOptions> {
        let d = GenerateOptions::default();
        let s = &d.sampling;
        let seed = match self.seed {
            Some(s) if s.is_finite() && s >= 0.0 && s.fract() == 0.0 && s <= 9_007_199_254_740_991.0 => s as u64,
            Some(s) => return Err(Error::invalid_argument(format!("seed must be a non-negative integer, got {s}"))),
            None => (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64,
        };
        let opts = GenerateOptions {
            max_tokens: self.max_tokens.unwrap_or(d.max_tokens),
            sampling: SamplingParams {
                temperature: self.temperature.unwrap_or(s.temperature),
                top_k: self.top_k.unwrap_or(s.top_k),
                top_p: self.top_p.unwrap_or(s.top_p),
                min_p: self.min_p.unwrap_or(s.min_p),
                repeat_penalty: self.repetition_penalty.unwrap_or(s.repeat_penalty),
                frequency_penalty: self.frequency_penalty.unwrap_or(s.frequency_penalty),
                presence_penalty: self.presence_penalty.unwrap_or(s.presence_penalty),
                penalty_last_n: self.penalty_last_n.unwrap_or(s.penalty_last_n),
                seed,
            },
            stop: self.stop.clone().unwrap_or_default(),
            ignore_eos: self.ignore_eos.unwrap_or(d.ignore_eos),
            constraint: self.constraint()?,
            logprobs: match (self.logprobs, self.top_logprobs) {
                (Some(true), n) => Some(n.unwrap_or(0)),
                (_, Some(n)) if n > 0 => {
                    return Err(Error::invalid_argument("topLogprobs needs logprobs: true"));
                }
                _ => None,
            },
            speculation: match &self.speculation {
                None => d.speculation,
                Some(s) => s.to_speculation()?,
            },
            context_shift: self.context_overflow()? == ContextOverflow::Shift,
        };
        opts.sampling.validate()?;
        Ok(opts)
    }
}
