//! `Engine`: a loaded model, its tokenizer and one KV cache, with the generation loop.
//!
//! The KV cache remembers which tokens it holds; a new prompt that starts with them (the next
//! turn of a chat) only runs the new tokens. Generation stops at max tokens, at any of the model's
//! end-of-generation tokens, at a stop string (never included in the text), when the context is
//! full, or when the token callback asks to stop.
//!
//! Loading validates the config and checks the KV cache's size against the backend's budget
//! ([`check_kv_budget`]) before any weight is read. A step whose logits are NaN or infinite fails
//! with `UNSUPPORTED_MODEL` (see [`crate::sampling::Sampler::sample_out`]) instead of sampling them.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::backend::{Backend, KvShape, KvType, TensorSource};
use crate::constrain::{Constraint, ConstraintSpec, Vocab};
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::Gguf;
use crate::logits::{ReadOut, Readback};
use crate::model::{Logits, Model, ModelConfig, Pooling};
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::{Detokenizer, Tokenizer};

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Stop when the text contains one of these; the stop string is not part of the result.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks, golden comparisons).
    pub ignore_eos: bool,
    /// What the output must match (JSON schema, grammar, regex): see [`crate::constrain`].
    pub constraint: Option<ConstraintSpec>,
    /// Report each generated token's log-probability and that of the `n` most likely tokens
    /// (`Some(0)`: the token's only), from the model's raw distribution.
    pub logprobs: Option<usize>,
    /// Prompt-lookup speculation ([`crate::speculate`]; `None`: off). The default drafts for
    /// greedy decoding on the CPU ([`crate::speculate::Speculation::requested`] false); the tokens are
    /// the same with and without it on the CPU (a draft's batched rows are bit-identical to
    /// one-token decode, and a sampled draft is kept exactly when the sampler's own draw equals
    /// it), on the GPU up to near-ties between the batched and the decode kernels.
    pub speculation: Option<crate::speculate::Speculation>,
    /// Go on past a full context with llama.cpp's context shift (its server's `--context-shift`):
    /// when the cache holds `n_ctx - 1` tokens, the BOS token stays, the older half of the rest
    /// leaves the cache, and the newer half moves down with its keys' rotary embedding turned
    /// back to their new positions ([`Engine::shift_context`]). Off: the generation ends with
    /// `Length` when the context is full. The prompt itself must still fit.
    pub context_shift: bool,
}

/// The default `max_tokens` of `generate` everywhere (the CLI, JS `generate`; OpenAI-style chat
/// has no default of its own in JS and uses this too).
pub const DEFAULT_MAX_TOKENS: usize = 256;

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: DEFAULT_MAX_TOKENS,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            ignore_eos: false,
            constraint: None,
            logprobs: None,
            speculation: Some(crate::speculate::Speculation::default()),
            context_shift: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_tokens` reached or the context is full.
    Length,
    /// An end-of-generation token or a stop string.
    Stop,
    /// The token callback asked to stop.
    Aborted,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::Stop => "stop",
            FinishReason::Aborted => "abort",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Timings {
    pub prefill_tokens: usize,
    pub prefill_ms: f64,
    /// Tokens decoded after the first (the first comes from the prompt's logits).
    pub decode_tokens: usize,
    pub decode_ms: f64,
    /// Forward passes that decoded them (fewer than the tokens when speculation's drafts are
    /// accepted).
    pub decode_passes: usize,
    /// Context shifts done ([`GenerateOptions::context_shift`]).
    pub context_shifts: usize,
}

impl Timings {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        per_s(self.prefill_tokens, self.prefill_ms)
    }
    pub fn decode_tokens_per_s(&self) -> f64 {
        per_s(self.decode_tokens, self.decode_ms)
    }
    /// Decoded tokens per forward pass (1 without speculation).
    pub fn accepted_per_pass(&self) -> f64 {
        if self.decode_passes > 0 {
            self.decode_tokens as f64 / self.decode_passes as f64
        } else {
            0.0
        }
    }
}

fn per_s(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub ids: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    pub timings: Timings,
    /// Prompt tokens whose keys/values were reused from the previous call.
    pub cached_tokens: usize,
}

/// Milliseconds from an arbitrary origin.
#[cfg(not(target_arch = "wasm32"))]
pub fn now_ms() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}
#[cfg(target_arch = "wasm32")]
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// The KV cache an engine allocates: its context length (`None`: min(4096, the model's training
/// context); capped by the training context) and the type it stores (llama.cpp's
/// `--cache-type-k/-v`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheOptions {
    pub n_ctx: Option<usize>,
    pub kv_type: KvType,
}

impl From<Option<usize>> for CacheOptions {
    fn from(n_ctx: Option<usize>) -> Self {
        CacheOptions { n_ctx, kv_type: KvType::F16 }
    }
}

pub struct Engine<B: Backend> {
    pub backend: B,
    pub model: Model<B>,
    pub tokenizer: Arc<Tokenizer>,
    kv: B::Kv,
    n_ctx: usize,
    kv_type: KvType,
    /// Tokens whose keys/values are in `kv`, in order from position 0.
    cached: Vec<u32>,
    /// The vocabulary for constrained decoding, built on first use.
    vocab: Option<Arc<Vocab>>,
}

impl<B: Backend> Engine<B> {
    /// Load a complete GGUF file held in memory with a KV cache of `cache` (a context length
    /// alone: `Some(n)` / `None`, f16).
    pub fn load(backend: B, file: Arc<Vec<u8>>, cache: impl Into<CacheOptions>) -> Result<Engine<B>> {
        let gguf = Gguf::from_bytes(&file)?;
        crate::block_on(Self::load_from(backend, &gguf, &file, cache))
    }

    /// Load from a GGUF header and a source of tensor bytes (read tensor by tensor).
    pub async fn load_from<S: TensorSource>(mut backend: B, gguf: &Gguf, file: &S, cache: impl Into<CacheOptions>) -> Result<Engine<B>> {
        let CacheOptions { n_ctx, kv_type } = cache.into();
        let tokenizer = Arc::new(Tokenizer::from_gguf(gguf)?);
        // Validate the config and size the KV cache before any weight is read or uploaded.
        let config = ModelConfig::from_gguf(gguf)?;
        // Every row of the embedding/output head must be a token the tokenizer can name, and
        // every token a row (llama.cpp rejects a mismatch too): otherwise sampled ids render as
        // nothing and `detokenize` rejects ids `generate` returned.
        if tokenizer.n_vocab() != config.n_vocab {
            return Err(Error::bad_gguf(format!(
                "the tokenizer has {} tokens but token_embd.weight has {} rows; the file is inconsistent",
                tokenizer.n_vocab(),
                config.n_vocab
            )));
        }
        let train = config.n_ctx_train;
        let n_ctx = match n_ctx {
            Some(0) => return Err(Error::invalid_argument("context length must be at least 1")),
            Some(n) => n.min(train),
            None => 4096.min(train),
        };
        let shape = config.kv_shape(n_ctx).with_type(kv_type);
        shape.check_heads(config.head_dim, config.head_dim_v)?;
        check_kv_budget(shape, backend.kv_bytes(shape), backend.kv_budget())?;
        let model = Model::load_from(&mut backend, gguf, file).await?;
        let kv = backend.kv_cache(shape)?;
        Ok(Engine { backend, model, tokenizer, kv, n_ctx, kv_type, cached: Vec::new(), vocab: None })
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }
    pub fn config(&self) -> &ModelConfig {
        &self.model.config
    }
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// The loaded model's first tokens on this backend: a two-token prefill and one decoded
    /// token must give finite logits (a GPU that computes garbage fails here with DEVICE_LOST).
    /// Running both paths once also creates every pipeline the model's prefill and decode use,
    /// so none is compiled later, in the middle of a user's first prompt.
    pub async fn check_first_tokens(&mut self) -> Result<()> {
        self.first_tokens(2, true).await
    }

    /// A prefill of `n` tokens and one decoded token, then the cache forgotten, so that a page's
    /// first prompt does not run the engine's baseline code: WebAssembly engines compile a
    /// function with their optimizing tier once it has run a while, on a background thread,
    /// and two threads computing a first prompt left that compile no core (Chromium, Gemma 3:
    /// a fresh page's first prompt prefilled 1.47x faster on two threads than on one, later
    /// prompts 2.0x). `n` covers the products' token tiles (8, 4 and 1).
    pub async fn warm_up(&mut self, n: usize) -> Result<()> {
        self.first_tokens(n, false).await
    }

    /// A prefill of `n` tokens (fewer in a short context) and one decoded token, their logits
    /// finite where `check` (else only run), then the cache forgotten.
    async fn first_tokens(&mut self, n: usize, check: bool) -> Result<()> {
        let id = self.tokenizer.bos_id().unwrap_or(0);
        // A context too short checks what fits.
        let first = vec![id; n.min(self.n_ctx.saturating_sub(1)).max(1)];
        self.reset();
        let mut r = self.eval_finite(&first, "the first tokens (a prefill)", check).await;
        if r.is_ok() && first.len() < self.n_ctx {
            r = self.eval_finite(&[id], "a decoded token", check).await;
        }
        self.reset();
        r
    }

    /// [`Engine::eval_last`] whose best logit must be finite (every logit, for a full readback)
    /// where `check`.
    async fn eval_finite(&mut self, ids: &[u32], what: &str, check: bool) -> Result<()> {
        let out = self.eval_last(ids, Readback::Argmax).await?;
        if !check {
            return Ok(());
        }
        let finite = match out {
            ReadOut::Candidates(c) => c.first().is_some_and(|t| t.1.is_finite()),
            ReadOut::Full(l) => l.iter().all(|v| v.is_finite()),
        };
        if finite {
            Ok(())
        } else {
            Err(Error::new(ErrorCode::DeviceLost, format!("the GPU computed non-finite logits for {what}")))
        }
    }

    /// Forget the KV cache.
    pub fn reset(&mut self) {
        self.cached.clear();
    }

    /// The tokens whose keys and values the cache holds, from position 0.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }

    /// The shape of this engine's KV cache.
    pub fn kv_shape(&self) -> KvShape {
        self.model.config.kv_shape(self.n_ctx).with_type(self.kv_type)
    }

    /// Write the session file of what the cache holds ([`crate::session`]): each layer's bytes
    /// go to `layer` as they are read (so a caller need hold one at a time), then the header,
    /// which comes first in the file, is returned once every layer's hash is known.
    pub async fn save_session(&mut self, model: &str, mut layer: impl FnMut(Vec<u8>)) -> Result<Vec<u8>> {
        use crate::session::{sha256_hex, SessionHeader};
        let mut h = SessionHeader::new(model, self.kv_shape(), self.cached.clone());
        for l in 0..h.n_layer {
            let bytes = self.backend.read_kv(&self.kv, l, self.cached.len()).await?;
            h.layers.push(sha256_hex(&bytes));
            layer(bytes);
        }
        Ok(h.encode())
    }

    /// Restore a session file of `size` bytes, read by ranges with `read(offset, len)`: the
    /// header is checked against this engine, then each layer against its hash before it is
    /// written. The cache forgets its tokens before the first layer is written, so a restore that
    /// fails half-way leaves no mixed cache. With `keep_held`, an engine whose cache already
    /// starts with the session's tokens reads only the header. Returns the session's token count
    /// and whether it was already held.
    pub async fn load_session<F, Fut>(&mut self, model: &str, size: u64, keep_held: bool, mut read: F) -> Result<(usize, bool)>
    where
        F: FnMut(u64, u64) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>>>,
    {
        use crate::session::{Expect, SessionHeader, LEAD};
        let expect = Expect { model, shape: self.kv_shape(), n_vocab: self.tokenizer.n_vocab() };
        let n = SessionHeader::header_len(&read(0, LEAD.min(size)).await?, size)?;
        let (h, mut at) = SessionHeader::parse(&read(LEAD, n).await?, size, expect)?;
        let tokens = h.tokens.len();
        if keep_held && self.cached.starts_with(&h.tokens) {
            return Ok((tokens, true));
        }
        // (`parse` checked the size and that the tokens fit this engine's context.)
        let len = h.layer_bytes().expect("parse checked the size");
        self.cached.clear();
        for l in 0..h.n_layer {
            let bytes = read(at, len).await?;
            h.check_layer(l, &bytes)?;
            self.backend.write_kv(&mut self.kv, l, tokens, &bytes)?;
            at += len;
        }
        self.cached = h.tokens;
        Ok((tokens, false))
    }

    /// The whole session file in one buffer: for native callers and tests (the package writes
    /// it layer by layer).
    pub async fn export_session(&mut self, model: &str) -> Result<Vec<u8>> {
        let mut layers = Vec::new();
        let mut out = self.save_session(model, |l| layers.push(l)).await?;
        layers.iter().for_each(|l| out.extend_from_slice(l));
        Ok(out)
    }

    /// Restore a session file held in one buffer; returns how many tokens the cache now holds.
    pub fn import_session(&mut self, file: &[u8], model: &str) -> Result<usize> {
        let read = |at: u64, len: u64| std::future::ready(Ok(file[at as usize..(at + len) as usize].to_vec()));
        crate::block_on(self.load_session(model, file.len() as u64, false, read)).map(|(n, _)| n)
    }

    /// Run `ids` after the tokens already cached and return logits (see [`Logits`]).
    /// Used for teacher-forced evaluation.
    pub async fn eval(&mut self, ids: &[u32], which: Logits) -> Result<Vec<f32>> {
        let pos0 = self.reserve(ids.len())?;
        let logits = self.model.forward(&mut self.backend, &mut self.kv, ids, pos0, which).await?;
        self.cached.extend_from_slice(ids);
        Ok(logits)
    }

    /// llama.cpp's context shift (its server's): the BOS token stays (where the cache starts with
    /// it), half of the other cached tokens, the oldest, leave, and the rest move down with their
    /// keys' rotary embedding turned back ([`crate::backend::Backend::kv_shift`]). Returns
    /// whether anything moved.
    pub fn shift_context(&mut self) -> Result<bool> {
        let n = self.cached.len();
        let bos = self.tokenizer.bos_id().filter(|_| self.tokenizer.add_bos());
        let keep = usize::from(bos.is_some() && self.cached.first().copied() == bos).min(self.n_ctx.saturating_sub(4));
        let left = n.saturating_sub(keep);
        let discard = (left / 2).min(left.saturating_sub(1));
        if discard == 0 {
            return Ok(false);
        }
        let shift = crate::backend::KvShift { keep, discard, n };
        self.model.kv_shift(&mut self.backend, &mut self.kv, shift)?;
        self.cached.drain(keep..keep + discard);
        Ok(true)
    }

    /// Run `ids` after the cached tokens into the KV cache only (nothing read back).
    fn fill_kv(&mut self, ids: &[u32]) -> Result<()> {
        let pos0 = self.reserve(ids.len())?;
        self.model.fill_kv(&mut self.backend, &mut self.kv, ids, pos0)?;
        self.cached.extend_from_slice(ids);
        Ok(())
    }

    /// Run `ids` after the cached tokens and read back the last token's logits, as little of
    /// them as `what` needs.
    async fn eval_last(&mut self, ids: &[u32], what: Readback) -> Result<ReadOut> {
        let pos0 = self.reserve(ids.len())?;
        let out = self.model.forward_last(&mut self.backend, &mut self.kv, ids, pos0, what).await?;
        self.cached.extend_from_slice(ids);
        Ok(out)
    }

    /// Run `ids` after the cached tokens and read back every token's logits, as little of each
    /// row as `what` needs (a speculative draft).
    async fn eval_rows(&mut self, ids: &[u32], what: Readback) -> Result<Vec<ReadOut>> {
        let pos0 = self.reserve(ids.len())?;
        let out = self.model.forward_rows(&mut self.backend, &mut self.kv, ids, pos0, what).await?;
        self.cached.extend_from_slice(ids);
        Ok(out)
    }

    /// The position of the next token, if `n` more fit in the context.
    fn reserve(&self, n: usize) -> Result<usize> {
        let pos0 = self.cached.len();
        if pos0 + n > self.n_ctx {
            return Err(Error::new(
                ErrorCode::ContextOverflow,
                format!(
                    "{n} tokens do not fit in the context of {} tokens ({pos0} already used); \
                     shorten the prompt or load with a larger context length",
                    self.n_ctx
                ),
            ));
        }
        Ok(pos0)
    }

    /// The embedding of `text`: the model's final hidden states (after the output norm) pooled as
    /// the file says (`{arch}.pooling_type`; the mean when it does not, as for chat models) and
    /// L2-normalized, with the number of tokens it took. The text is plain text (control-token
    /// spellings stay text), with BOS/EOS as the vocabulary wants. It runs from position 0, so
    /// the KV cache of a conversation is dropped.
    pub async fn embed(&mut self, text: &str) -> Result<(Vec<f32>, usize)> {
        let tok = self.tokenizer.clone();
        let mut ids = tok.encode(text, true, false);
        if tok.add_eos() {
            ids.extend(tok.eos_id());
        }
        if ids.is_empty() {
            return Err(Error::invalid_argument("the input to embed is empty"));
        }
        if ids.len() > self.n_ctx {
            return Err(Error::new(
                ErrorCode::ContextOverflow,
                format!("the input has {} tokens but the context holds {}; shorten it or load with a larger context length", ids.len(), self.n_ctx),
            ));
        }
        let n_embd = self.model.config.n_embd;
        let pooling = self.model.config.pooling;
        self.reset();
        let mut pooled = vec![0f64; n_embd];
        let chunks = ids.len().div_ceil(PREFILL_CHUNK);
        for (ci, chunk) in ids.chunks(PREFILL_CHUNK).enumerate() {
            let h = match self.eval(chunk, Logits::Hidden).await {
                Ok(h) => h,
                Err(e) => {
                    self.reset();
                    return Err(e);
                }
            };
            let rows: Vec<&[f32]> = h.chunks_exact(n_embd).collect();
            let take: &[&[f32]] = match pooling {
                Pooling::Mean => &rows,
                Pooling::Cls if ci == 0 => &rows[..1],
                Pooling::Last if ci + 1 == chunks => &rows[rows.len() - 1..],
                _ => &[],
            };
            for row in take {
                for (p, &v) in pooled.iter_mut().zip(row.iter()) {
                    *p += v as f64;
                }
            }
        }
        self.reset();
        let norm = pooled.iter().map(|v| v * v).sum::<f64>().sqrt();
        if !norm.is_finite() || norm == 0.0 {
            return Err(Error::unsupported_model("the model produced a zero or non-finite embedding (corrupt weights?)"));
        }
        Ok((pooled.iter().map(|v| (v / norm) as f32).collect(), ids.len()))
    }

    /// Tokenize a prompt as llama.cpp does (BOS per metadata, special tokens parsed).
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, true, true)
    }

    pub async fn generate(&mut self, prompt: &str, opts: &GenerateOptions, on_text: &mut dyn FnMut(Option<u32>, &str) -> bool) -> Result<Generation> {
        let ids = self.tokenize(prompt);
        self.generate_ids(&ids, opts, on_text).await
    }

    /// Generate from prompt token ids. `on_text(Some(id), new_text)` is called for every generated
    /// token with the text that became final (never a partial UTF-8 character, never a possible
    /// start of a stop string); returning `false` stops the generation (finish reason `Aborted`).
    /// A last `on_text(None, rest)` flushes text held back until the end, if any.
    pub async fn generate_ids(&mut self, prompt: &[u32], opts: &GenerateOptions, on_text: &mut dyn FnMut(Option<u32>, &str) -> bool) -> Result<Generation> {
        let mut g = self.begin(prompt, opts)?;
        while let Some(step) = self.step(&mut g).await? {
            let keep_going = match step {
                Step::Prefill { .. } => true,
                Step::Token { id, text, .. } => on_text(Some(id), &text),
                Step::Flush { text } => on_text(None, &text),
            };
            if !keep_going {
                g.abort();
            }
        }
        Ok(g.into_generation())
    }

    /// Start a generation: validate and find the cached prefix. Then call [`Engine::step`] until
    /// it returns `None`: it runs the rest of the prompt in chunks of [`PREFILL_CHUNK`] tokens,
    /// then generates token by token. A caller that needs to yield to its event loop, report
    /// progress or stop early does so between steps.
    pub fn begin(&mut self, prompt: &[u32], opts: &GenerateOptions) -> Result<Generating> {
        if prompt.is_empty() {
            return Err(Error::invalid_argument("the prompt is empty"));
        }
        crate::logits::check_token_ids(prompt, self.model.config.n_vocab)?;
        if prompt.len() >= self.n_ctx {
            return Err(Error::new(
                ErrorCode::ContextOverflow,
                format!(
                    "the prompt has {} tokens but the context holds {}; shorten it or load with a larger context length",
                    prompt.len(),
                    self.n_ctx
                ),
            ));
        }
        let sampler = Sampler::new(opts.sampling.clone())?;
        if opts.logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
            return Err(Error::invalid_argument(format!("top logprobs must be at most {MAX_TOP_LOGPROBS}")));
        }
        let constraint = match &opts.constraint {
            Some(spec) => Some(Constraint::new(self.vocab()?, spec)?),
            None => None,
        };

        // Reuse the cached prefix; at least the last prompt token is run to get its logits.
        let common = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count().min(prompt.len() - 1);
        self.cached.truncate(common);

        let timings = Timings { prefill_tokens: prompt.len() - common, ..Default::default() };
        Ok(Generating {
            opts: opts.clone(),
            sampler,
            logits: None,
            prefilled: common,
            t0: now_ms(),
            history: prompt.to_vec(),
            prompt_len: prompt.len(),
            detok: Detokenizer::new(self.tokenizer.clone()),
            stop: StopMatcher::new(&opts.stop),
            finish: None,
            flushed: false,
            timings,
            cached_tokens: common,
            constraint,
            pending: None,
            from_draft: false,
            // The clock decides, on the GPU too (asked for there: its batched rows may cost far
            // more than a decode pass on a real GPU, unmeasured); a GPU draft may then, at a
            // near-tie, change a token from run to run, a CPU draft never changes one.
            control: crate::speculate::Controller::new(self.backend.token_tile()),
            confident: false,
        })
    }

    /// The vocabulary for constrained decoding (built on first use: a trie of every token).
    fn vocab(&mut self) -> Result<&Vocab> {
        if self.vocab.is_none() {
            self.vocab = Some(Arc::new(Vocab::new(self.tokenizer.clone())?));
        }
        Ok(self.vocab.as_deref().expect("just built"))
    }

    /// What the sampler of `g` needs read back: every logit when a constraint masks them or
    /// logprobs are reported.
    fn readback(g: &Generating) -> Readback {
        if g.needs_all_logits() {
            Readback::Full
        } else {
            g.sampler.readback()
        }
    }

    /// The generation is over: draft tokens the model did not confirm leave the cache (it holds
    /// only tokens that are the conversation's), then the held-back text.
    fn finish_now(&mut self, g: &mut Generating) -> Option<Step> {
        if let Some(p) = g.pending.take() {
            self.cached.truncate(self.cached.len() - p.draft.len());
        }
        g.logits = None;
        g.flush()
    }

    /// Run `last` and a draft ([`crate::speculate::draft`]) in one batched pass and return
    /// `last`'s logits; the rows after each drafted token wait in `g.pending` for
    /// [`Engine::verify`]. On the CPU, after a draft that was not confirmed whole, the pass
    /// stops at the final hidden states and each row gets the output head only when the row
    /// before it is confirmed (a wrong draft costs no head work past its first wrong token); the
    /// GPU always runs the head on every row and selects on the device. `None` where nothing is
    /// drafted.
    async fn speculate(&mut self, g: &mut Generating, last: u32) -> Result<Option<ReadOut>> {
        let Some(spec) = g.opts.speculation else { return Ok(None) };
        let cpu = self.backend.name() == "cpu";
        if !spec.requested && (g.opts.sampling.temperature != 0.0 || !cpu) {
            return Ok(None);
        }
        // Room for the draft: the tokens still to generate after this one, and the context (with
        // context shift, up to the `n_ctx - 1` tokens at which it shifts: a draft never moves the
        // shift from where one-token decoding has it).
        let full = self.n_ctx - usize::from(g.opts.context_shift);
        let room = (g.opts.max_tokens - g.generated()).saturating_sub(1).min(full.saturating_sub(self.cached.len() + 1));
        let (mut draft, matched) = crate::speculate::draft(&g.history, spec, room);
        if spec.adaptive {
            draft.truncate(g.control.choose(draft.len(), matched));
        }
        if draft.is_empty() {
            return Ok(None);
        }
        g.control.pass_starts(draft.len() + 1, now_ms());
        let mut ids = Vec::with_capacity(draft.len() + 1);
        ids.push(last);
        ids.extend_from_slice(&draft);
        let what = Self::readback(g);
        let (first, after) = if g.confident || !cpu {
            let mut rows: VecDeque<ReadOut> = self.eval_rows(&ids, what).await?.into();
            (rows.pop_front().expect("one row per token"), After::Logits(rows))
        } else {
            let hidden = self.eval(&ids, Logits::Hidden).await?;
            let mut rows: VecDeque<Vec<f32>> = hidden.chunks_exact(self.model.config.n_embd).map(<[f32]>::to_vec).collect();
            let first = rows.pop_front().expect("one row per token");
            (self.model.head_row(&mut self.backend, &first, what).await?, After::Hidden(rows))
        };
        g.pending = Some(Pending { drafted: draft.len(), matched, draft: draft.into(), after });
        Ok(Some(first))
    }

    /// The token `id` the model chose: where a draft is pending, a match confirms its next token
    /// (the next step's logits are its hidden state through the head, no pass of its own), a
    /// mismatch drops the rest of the draft from the cache.
    async fn verify(&mut self, g: &mut Generating, id: u32) -> Result<()> {
        let what = Self::readback(g);
        let Some(p) = g.pending.as_mut() else { return Ok(()) };
        if p.draft.front() == Some(&id) {
            p.draft.pop_front();
            let next = match &mut p.after {
                After::Logits(rows) => rows.pop_front().expect("a row per drafted token"),
                After::Hidden(rows) => {
                    let hidden = rows.pop_front().expect("a row per drafted token");
                    self.model.head_row(&mut self.backend, &hidden, what).await?
                }
            };
            if p.draft.is_empty() {
                g.control.record(p.matched, p.drafted, p.drafted);
                g.pending = None;
                g.confident = true;
            }
            g.logits = Some(next);
            g.from_draft = true;
        } else {
            g.confident = false;
            let rejected = p.draft.len();
            g.control.record(p.matched, p.drafted, p.drafted - rejected);
            self.cached.truncate(self.cached.len() - rejected);
            g.pending = None;
        }
        Ok(())
    }

    /// Run the next prompt chunk, or sample one token and run it; `None` means the generation
    /// is over (see [`Generating::finish_reason`]).
    pub async fn step(&mut self, g: &mut Generating) -> Result<Option<Step>> {
        if g.finish.is_some() {
            return Ok(self.finish_now(g));
        }
        if g.prefilled < g.prompt_len {
            let end = (g.prefilled + PREFILL_CHUNK).min(g.prompt_len);
            let chunk = g.history[g.prefilled..end].to_vec();
            if end < g.prompt_len {
                self.fill_kv(&chunk)?;
            } else {
                g.logits = Some(self.eval_last(&chunk, Self::readback(g)).await?);
                g.timings.prefill_ms = now_ms() - g.t0;
                g.t0 = now_ms();
            }
            g.prefilled = end;
            return Ok(Some(Step::Prefill { done: end - g.cached_tokens, total: g.prompt_len - g.cached_tokens }));
        }
        let logits = match g.logits.take() {
            Some(l) => {
                if std::mem::take(&mut g.from_draft) {
                    g.timings.decode_tokens += 1;
                }
                l
            }
            None => {
                // The previous token still has to run (the first step uses the prompt's logits).
                if g.opts.context_shift && g.generated() < g.opts.max_tokens && self.cached.len() + 1 >= self.n_ctx && self.shift_context()? {
                    g.timings.context_shifts += 1;
                }
                if g.generated() == g.opts.max_tokens || self.cached.len() + 1 > self.n_ctx {
                    g.end(FinishReason::Length);
                    return Ok(self.finish_now(g));
                }
                let last = *g.history.last().expect("history holds the prompt");
                let out = match self.speculate(g, last).await? {
                    Some(first) => first,
                    None => {
                        g.control.pass_starts(1, now_ms());
                        self.eval_last(&[last], Self::readback(g)).await?
                    }
                };
                g.timings.decode_tokens += 1;
                g.timings.decode_passes += 1;
                out
            }
        };
        if g.generated() == g.opts.max_tokens {
            g.end(FinishReason::Length);
            return Ok(self.finish_now(g));
        }
        let mut logprob = None;
        let id = match (logits, g.needs_all_logits()) {
            (ReadOut::Full(mut logits), true) => {
                // Logprobs come from the raw distribution: before penalties and the mask.
                let raw = g.opts.logprobs.map(|n| (logits.clone(), n));
                let constraint = g.constraint.as_mut();
                let id = g.sampler.sample_masked(&mut logits, &g.history, |l| constraint.map_or(Ok(()), |c| c.mask(l)))?;
                logprob = raw.map(|(raw, n)| TokenLogprob::new(&raw, id, n));
                id
            }
            (out, _) => g.sampler.sample_out(out, &g.history)?,
        };
        self.verify(g, id).await?;
        let ends = g.constraint.as_ref().map_or(self.tokenizer.eog_ids().contains(&id), |c| c.is_end(id));
        if ends && (!g.opts.ignore_eos || g.constraint.is_some()) {
            g.end(FinishReason::Stop);
            return Ok(self.finish_now(g));
        }
        if let Some(c) = g.constraint.as_mut() {
            c.commit(id)?;
            if c.is_done() {
                g.end(FinishReason::Stop);
            }
        }
        g.history.push(id);
        let piece = g.detok.push(id);
        let (text, hit) = g.stop.push(&piece);
        if hit {
            g.end(FinishReason::Stop);
        }
        Ok(Some(Step::Token { id, text, logprob }))
    }
}

/// The most top logprobs a token may report (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A generated token's log-probability, and the most likely tokens' at its step.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
    /// The `n` most likely tokens, most likely first.
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprob {
    /// Token `id`'s log-probability and the top `n` under `logits` (finite: the sampler checked).
    pub fn new(logits: &[f32], id: u32, n: usize) -> TokenLogprob {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
        let lse = max as f64 + sum.ln();
        let lp = |l: f32| (l as f64 - lse) as f32;
        let top = if n == 0 { Vec::new() } else { crate::logits::top_k(logits, n).into_iter().map(|(i, l)| (i, lp(l))).collect() };
        TokenLogprob { id, logprob: lp(logits[id as usize]), top }
    }
}

/// Refuse a KV cache of `shape` whose `bytes` (as the backend allocates it, `None`: past a u64)
/// exceed `budget` before allocating it: `INVALID_ARGUMENT`, with the size and the largest
/// context that fits.
pub fn check_kv_budget(shape: KvShape, bytes: Option<u64>, budget: u64) -> Result<()> {
    if bytes.is_some_and(|b| b <= budget) {
        return Ok(());
    }
    let per_position = bytes.map(|b| b / shape.n_ctx.max(1) as u64).or(shape.bytes_per_position());
    let fits = per_position.map_or(0, |p| budget / p.max(1));
    let size = bytes.map_or("more than 2^64 bytes".to_string(), |b| format!("{} MiB", b.div_ceil(1 << 20)));
    let advice = if fits == 0 {
        "not even one position fits".to_string()
    } else {
        format!("the largest context that fits is {fits} tokens; load with a smaller context length")
    };
    Err(Error::invalid_argument(format!(
        "a context of {} tokens needs a key/value cache of {size}, more than the {} MiB this backend allows; {advice}",
        shape.n_ctx,
        budget >> 20
    )))
}

/// Prompt tokens run per [`Engine::step`] during prefill.
pub const PREFILL_CHUNK: usize = 128;

/// One step of a generation.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `done` of the `total` prompt tokens that were not cached have run.
    Prefill { done: usize, total: usize },
    /// A generated token and the text that became final with it (possibly empty), with its
    /// log-probability when asked for.
    Token { id: u32, text: String, logprob: Option<TokenLogprob> },
    /// The end: text held back until now (an incomplete stop string, a partial character).
    Flush { text: String },
}

/// A generation in progress (see [`Engine::begin`]).
pub struct Generating {
    opts: GenerateOptions,
    sampler: Sampler,
    /// Logits of the last run token, not yet sampled.
    logits: Option<ReadOut>,
    /// Prompt tokens in the KV cache.
    prefilled: usize,
    /// Start of the current phase (prefill, then decode).
    t0: f64,
    /// Prompt then generated ids.
    history: Vec<u32>,
    prompt_len: usize,
    detok: Detokenizer<Arc<Tokenizer>>,
    stop: StopMatcher,
    finish: Option<FinishReason>,
    flushed: bool,
    timings: Timings,
    cached_tokens: usize,
    constraint: Option<Constraint>,
    /// A draft being verified: its tokens not yet accepted, and the logits after each.
    pending: Option<Pending>,
    /// `logits` came from a verified draft row (a decoded token without a pass of its own).
    from_draft: bool,
    /// Whether and how far to draft (measured costs and acceptance of this generation).
    control: crate::speculate::Controller,
    /// The last draft was confirmed whole: the next one's pass runs the head on every row.
    confident: bool,
}

/// Draft tokens in the KV cache that the model has not confirmed yet, and the logits of the
/// batched pass after each of them.
struct Pending {
    draft: VecDeque<u32>,
    /// Tokens the draft had.
    drafted: usize,
    /// The n-gram length it matched on.
    matched: usize,
    /// What follows each drafted token still pending, in order.
    after: After,
}

/// After a confident draft (the last one was confirmed whole) the batched pass ran the output
/// head on every row; after any other, only the layers: each row gets the head when the one
/// before it is confirmed, so a wrong draft costs no head work past its first wrong token.
enum After {
    Logits(VecDeque<ReadOut>),
    Hidden(VecDeque<Vec<f32>>),
}

impl Generating {
    /// A constraint masks the logits or logprobs are reported: every logit is read back.
    fn needs_all_logits(&self) -> bool {
        self.constraint.is_some() || self.opts.logprobs.is_some()
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.history.len() - self.prompt_len
    }

    /// Stop at the next step (finish reason `Aborted`). The KV cache stays consistent: it holds
    /// exactly the tokens that were run.
    pub fn abort(&mut self) {
        if self.finish.is_none() {
            self.end(FinishReason::Aborted);
        }
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    fn end(&mut self, reason: FinishReason) {
        self.finish = Some(reason);
        if self.prefilled == self.prompt_len {
            self.timings.decode_ms = now_ms() - self.t0;
        }
    }

    /// The held-back text, once, after the generation ended (not after a stop string).
    fn flush(&mut self) -> Option<Step> {
        if self.flushed {
            return None;
        }
        self.flushed = true;
        if self.stop.is_done() {
            return None;
        }
        let tail = self.detok.finish();
        let (emit, _) = self.stop.push(&tail);
        let text = emit + &self.stop.flush();
        if text.is_empty() {
            None
        } else {
            Some(Step::Flush { text })
        }
    }

    pub fn into_generation(self) -> Generation {
        Generation {
            prompt_ids: self.history[..self.prompt_len].to_vec(),
            ids: self.history[self.prompt_len..].to_vec(),
            text: self.stop.into_text(),
            finish_reason: self.finish.unwrap_or(FinishReason::Aborted),
            timings: self.timings,
            cached_tokens: self.cached_tokens,
        }
    }
}

/// Finds stop strings in streamed text. Text that could still become a stop string is held back
/// until it cannot; text after a stop string is dropped.
pub struct StopMatcher {
    stops: Vec<String>,
    /// All final text so far.
    text: String,
    /// Bytes of `text` already emitted.
    emitted: usize,
    done: bool,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        StopMatcher { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), text: String::new(), emitted: 0, done: false }
    }

    /// Add text; returns (text safe to emit now, whether a stop string was found).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        if self.done {
            return (String::new(), true);
        }
        let search_from = self.emitted;
        self.text.push_str(piece);
        // Earliest stop string occurrence in the not-yet-emitted part (plus overlap before it).
        let window_start = floor_char_boundary(&self.text, search_from.saturating_sub(self.max_stop_len()));
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.text[window_start..].find(s.as_str()).map(|i| window_start + i))
            .min();
        if let Some(at) = hit {
            self.text.truncate(at);
            self.done = true;
            let out = self.text.get(self.emitted.min(at)..).unwrap_or("").to_string();
            self.emitted = self.text.len();
            return (out, true);
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        let safe = self.text.len() - crate::holdback::held_back(&self.text, &self.stops);
        let out = if safe > self.emitted { self.text[self.emitted..safe].to_string() } else { String::new() };
        self.emitted = self.emitted.max(safe);
        (out, false)
    }

    /// A stop string was found.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Emit whatever was held back (the generation ended without a stop string).
    pub fn flush(&mut self) -> String {
        let out = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        out
    }

    pub fn into_text(self) -> String {
        self.text
    }

    fn max_stop_len(&self) -> usize {
        self.stops.iter().map(|s| s.len()).max().unwrap_or(0)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut streamed = String::new();
        let mut hit = false;
        for p in pieces {
            let (out, h) = m.push(p);
            streamed += &out;
            if h {
                hit = true;
                break;
            }
        }
        if !hit {
            streamed += &m.flush();
        }
        (streamed, m.into_text(), hit)
    }

    #[test]
    fn stop_string_split_across_pieces_is_never_streamed() {
        let (streamed, text, hit) = run(&["\n\n"], &["Hello", "\n", "\nWorld"]);
        assert!(hit);
        assert_eq!(streamed, "Hello");
        assert_eq!(text, "Hello");
    }

    #[test]
    fn held_back_prefix_is_released_when_it_does_not_complete() {
        let (streamed, text, hit) = run(&["END"], &["ab", "EN", "x", "EN"]);
        assert!(!hit);
        assert_eq!(streamed, "abENxEN");
        assert_eq!(text, "abENxEN");
    }

    #[test]
    fn earliest_of_several_stop_strings_wins_and_multibyte_is_safe() {
        let (streamed, text, hit) = run(&["wörld", "ö"], &["héllo wö", "rld"]);
        assert!(hit);
        assert_eq!(text, "héllo w");
        assert_eq!(streamed, "héllo w");
    }
}
