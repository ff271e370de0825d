//! `ModelConfig`: everything the one decoder needs to know about an architecture, read from GGUF.
//!
//! Architectures differ only by these fields (one config-driven decoder, no file per model). The
//! per-architecture facts are one table, [`ARCHES`]; they mirror llama.cpp's `llama_model::load_hparams` and its graph builders (`src/models/*.cpp`):
//!
//! | arch   | rope  | act  | qk-norm | post-norms | emb scale   | biases  | fused          | swa            |
//! |--------|-------|------|---------|------------|-------------|---------|----------------|----------------|
//! | llama  | norm  | silu | -       | -          | -           | opt.    | -              | -              |
//! | qwen2  | neox  | silu | -       | -          | -           | q,k,v   | -              | -              |
//! | qwen3  | neox  | silu | yes     | -          | -           | -       | -              | -              |
//! | phi3   | neox  | silu | -       | -          | -           | -       | qkv, gate+up   | off (as llama.cpp) |
//! | gemma3 | neox  | gelu | yes     | yes        | sqrt(n_embd)| -       | -              | 5 of 6 layers  |
//!
//! Biases, QK-norm weights and a separate output head are detected from the tensors present, as
//! llama.cpp treats them as optional.
//!
//! [`ModelConfig::from_gguf`] is where hostile metadata stops: every integer is converted without
//! truncation (wasm32's usize is 32 bits), `block_count` must match the layers in the file, counts
//! are >= 1, dimension products are checked and compared with the first layer's tensors, and the
//! floats every logit depends on are finite and positive (`BAD_GGUF` for a corrupt value,
//! `UNSUPPORTED_MODEL` for a consistent file we cannot run).
//!
//! [`ModelConfig::kv_shape`] gives the backends the size of a KV cache ([`KvShape`]), so that
//! [`crate::backend`] never depends on this module.

use crate::backend::KvShape;
use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Phi3,
    Gemma3,
}

impl Arch {
    pub const SUPPORTED: &'static str = "llama, qwen2, qwen3, phi3, gemma3";

    pub fn from_name(name: &str) -> Option<Arch> {
        ARCHES.iter().find(|f| f.name == name).map(|f| f.arch)
    }
    pub fn name(self) -> &'static str {
        self.facts().name
    }
    /// This architecture's row of [`ARCHES`].
    pub fn facts(self) -> &'static ArchFacts {
        ARCHES.iter().find(|f| f.arch == self).expect("every architecture has a row in ARCHES")
    }
}

/// How an architecture scales attention: the scores by `1/sqrt(head_dim)`, or the query before
/// the product (and then not the scores).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryScale {
    /// The scores, by `1/sqrt(head_dim)`.
    Scores,
    /// The query, by `1/sqrt(head_dim)` (llama.cpp's Phi-3 graph).
    Query,
    /// The query, by `1/sqrt(head_dim)`, except the 62-layer (27B) model's, by
    /// `1/sqrt(n_embd / n_head)` (llama.cpp's Gemma 3 rule).
    Gemma3Query,
}

/// What an architecture is beyond its GGUF hyperparameters, as llama.cpp's `load_hparams` and
/// graph builders have it. One row per architecture in [`ARCHES`]: a new architecture whose
/// tensors are named as these are adds a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchFacts {
    pub arch: Arch,
    /// `general.architecture`.
    pub name: &'static str,
    pub rope_style: RopeStyle,
    pub activation: Activation,
    /// Per-head RMS norms of q and k before RoPE.
    pub qk_norm: bool,
    /// Norms after the attention and feed-forward blocks, before the residual add.
    pub post_norms: bool,
    /// The token embedding is scaled by `sqrt(n_embd)`.
    pub embed_scale: bool,
    pub query_scale: QueryScale,
    /// Sliding-window attention on all layers but every `attention.sliding_window_pattern`-th
    /// (default 6), with a local RoPE base of 10,000.
    pub sliding_window: bool,
}

pub const ARCHES: &[ArchFacts] = &[
    ArchFacts { arch: Arch::Llama, name: "llama", rope_style: RopeStyle::Normal, activation: Activation::Silu, qk_norm: false, post_norms: false, embed_scale: false, query_scale: QueryScale::Scores, sliding_window: false },
    ArchFacts { arch: Arch::Qwen2, name: "qwen2", rope_style: RopeStyle::Neox, activation: Activation::Silu, qk_norm: false, post_norms: false, embed_scale: false, query_scale: QueryScale::Scores, sliding_window: false },
    ArchFacts { arch: Arch::Qwen3, name: "qwen3", rope_style: RopeStyle::Neox, activation: Activation::Silu, qk_norm: true, post_norms: false, embed_scale: false, query_scale: QueryScale::Scores, sliding_window: false },
    // Phi-3's sliding window is off, as llama.cpp runs it.
    ArchFacts { arch: Arch::Phi3, name: "phi3", rope_style: RopeStyle::Neox, activation: Activation::Silu, qk_norm: false, post_norms: false, embed_scale: false, query_scale: QueryScale::Query, sliding_window: false },
    ArchFacts { arch: Arch::Gemma3, name: "gemma3", rope_style: RopeStyle::Neox, activation: Activation::Gelu, qk_norm: true, post_norms: true, embed_scale: true, query_scale: QueryScale::Gemma3Query, sliding_window: true },
];

/// How RoPE pairs dimensions: `Normal` rotates (2i, 2i+1) (llama), `Neox` rotates (i, i + n_rot/2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    Normal,
    Neox,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: silu(gate) * up.
    Silu,
    /// GeGLU with the tanh approximation of GELU: gelu(gate) * up.
    Gelu,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Per-head dimension of queries and keys.
    pub head_dim: usize,
    /// Per-head dimension of values.
    pub head_dim_v: usize,
    pub n_ff: usize,
    /// Context length the model was trained for.
    pub n_ctx_train: usize,
    pub norm_eps: f32,
    pub rope_style: RopeStyle,
    /// Number of leading dimensions of each head that RoPE rotates.
    pub n_rot: usize,
    /// RoPE base for global-attention layers.
    pub rope_base: f32,
    /// RoPE base for sliding-window layers (Gemma 3 uses 10k locally, 1M globally).
    pub rope_base_swa: f32,
    /// Linear RoPE scaling: positions are multiplied by this (1 / scaling factor).
    pub rope_freq_scale: f32,
    pub activation: Activation,
    /// Multiply token embeddings by this (Gemma: sqrt(n_embd)).
    pub embed_scale: Option<f32>,
    /// Multiply queries by this after RoPE (Gemma, Phi-3 scale Q; llama.cpp then uses kq_scale 1).
    pub q_scale: Option<f32>,
    /// Scale of the attention scores q.k (1/sqrt(head_dim) where Q is not pre-scaled).
    pub kq_scale: f32,
    /// RMSNorm after attention and after the FFN (Gemma 2/3).
    pub post_norms: bool,
    /// RMSNorm of q and k per head before RoPE (the weights must be present).
    pub qk_norm: bool,
    /// Sliding-window size in tokens (a query at p sees keys at p - window + 1 ..= p).
    pub sliding_window: Option<usize>,
    /// Per layer: does it use the sliding window?
    pub swa_layers: Vec<bool>,
    /// Final logits = cap * tanh(logits / cap).
    pub final_logit_softcap: Option<f32>,
    /// How embeddings pool the tokens' hidden states (`{arch}.pooling_type`).
    pub pooling: Pooling,
}

/// Embedding pooling, as llama.cpp's `pooling_type` metadata numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the tokens (1; also the choice when the file does not say, as for chat
    /// models).
    Mean,
    /// The first token's state (2).
    Cls,
    /// The last token's state (3).
    Last,
}

impl Pooling {
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Last => "last",
        }
    }
}

/// A metadata integer `{arch}.{key}`; `None` when absent. Never truncated: a value that does not
/// fit in `usize` (above 2^32 - 1 on wasm32) is an error, as is a value of the wrong type.
fn key_u(g: &Gguf, arch: &str, key: &str) -> Result<Option<usize>> {
    let name = format!("{arch}.{key}");
    let Some(value) = g.get(&name) else { return Ok(None) };
    match value.as_u64() {
        Some(v) => usize::try_from(v).map(Some).map_err(|_| {
            Error::bad_gguf(format!("metadata key '{name}' is {v}, more than this platform can address"))
        }),
        None if matches!(value, Value::Array(_)) => {
            Err(Error::unsupported_model(format!("metadata key '{name}' is an array (per-layer values are not supported)")))
        }
        None => Err(Error::bad_gguf(format!("metadata key '{name}' must be a non-negative integer, got {}", value.summary(8)))),
    }
}

fn required(g: &Gguf, arch: &str, key: &str) -> Result<usize> {
    key_u(g, arch, key)?.ok_or_else(|| {
        Error::unsupported_model(format!("metadata key '{arch}.{key}' is missing or not an integer"))
    })
}

/// A count read from `{arch}.{key}` (or defaulted) that must be at least 1.
fn count(arch: &str, key: &str, value: usize) -> Result<usize> {
    if value == 0 {
        return Err(Error::bad_gguf(format!("metadata key '{arch}.{key}' is 0; it must be at least 1")));
    }
    Ok(value)
}

/// A float `{arch}.{key}`, if present, which must be finite and > 0 (a NaN epsilon or RoPE base
/// would make every logit NaN).
fn key_pos_f32(g: &Gguf, arch: &str, key: &str) -> Result<Option<f32>> {
    let name = format!("{arch}.{key}");
    match g.get(&name) {
        None => Ok(None),
        Some(value) => match value.as_f32() {
            Some(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
            _ => Err(Error::bad_gguf(format!(
                "metadata key '{name}' must be a finite number > 0, got {}",
                value.summary(8)
            ))),
        },
    }
}

/// `a * b`, or an error naming the metadata keys whose product overflows.
fn checked_mul(what: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| Error::bad_gguf(format!("{what} = {a} x {b} overflows; the metadata is corrupt")))
}

/// How many of the layers `0..n_layer` have their `blk.N.attn_norm.weight` (every supported
/// architecture has one per layer). No allocation: names are parsed in place.
fn layers_present(g: &Gguf, n_layer: usize) -> usize {
    g.tensors
        .iter()
        .filter_map(|t| t.name.strip_prefix("blk.")?.strip_suffix(".attn_norm.weight"))
        // Canonical decimal only, so "blk.01" cannot count layer 1 twice.
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (*n == "0" || !n.starts_with('0')))
        .filter_map(|n| n.parse::<usize>().ok())
        .filter(|&i| i < n_layer)
        .count()
}

impl ModelConfig {
    /// Read and validate the config. Every value that later sizes an allocation or indexes a
    /// buffer is checked here, before anything is allocated: integers are converted without
    /// truncation, counts are at least 1, `block_count` layers must exist in the file, products
    /// of dimensions are computed with checked arithmetic, and floats that reach every logit
    /// (epsilon, RoPE base and scaling, softcap) are finite and positive. The decoder then checks
    /// every tensor's dims against these values.
    pub fn from_gguf(g: &Gguf) -> Result<ModelConfig> {
        if g.split_count() > 1 {
            // One part of a split model on its own (the parts together: `Gguf::merge_split`).
            return Err(Error::unsupported_model(format!(
                "this file is part {} of a model split into {} GGUF files; load all the parts together, in order",
                g.get_u64(crate::gguf::SPLIT_NO).map_or(1, |n| n.saturating_add(1)),
                g.split_count()
            )));
        }
        let arch_name = g
            .architecture()
            .ok_or_else(|| Error::unsupported_model("metadata key 'general.architecture' is missing"))?;
        let arch = Arch::from_name(arch_name).ok_or_else(|| {
            Error::unsupported_model(format!(
                "architecture '{arch_name}' is not supported (supported: {})",
                Arch::SUPPORTED
            ))
        })?;
        let a = arch_name;
        let n_embd = count(a, "embedding_length", required(g, a, "embedding_length")?)?;
        let n_layer = count(a, "block_count", required(g, a, "block_count")?)?;
        let present = layers_present(g, n_layer);
        if present != n_layer {
            return Err(Error::bad_gguf(format!(
                "metadata key '{a}.block_count' is {n_layer} but the file holds {present} such layers \
                 (tensors blk.N.attn_norm.weight)"
            )));
        }
        let n_head = count(a, "attention.head_count", required(g, a, "attention.head_count")?)?;
        let n_head_kv = count(a, "attention.head_count_kv", key_u(g, a, "attention.head_count_kv")?.unwrap_or(n_head))?;
        let n_ff = count(a, "feed_forward_length", required(g, a, "feed_forward_length")?)?;
        if n_head % n_head_kv != 0 {
            return Err(Error::unsupported_model(format!(
                "inconsistent head counts: n_head {n_head} is not a multiple of n_head_kv {n_head_kv}"
            )));
        }
        let head_dim = key_u(g, a, "attention.key_length")?.unwrap_or(n_embd / n_head);
        let head_dim_v = key_u(g, a, "attention.value_length")?.unwrap_or(head_dim);
        let n_rot = key_u(g, a, "rope.dimension_count")?.unwrap_or(head_dim);
        if head_dim == 0 || head_dim_v == 0 || n_rot > head_dim || n_rot % 2 != 0 {
            return Err(Error::unsupported_model(format!(
                "bad head dims: n_rot {n_rot}, head_dim {head_dim}, head_dim_v {head_dim_v}"
            )));
        }
        // Every width the decoder derives, checked once here (on wasm32 65536 x 65536 wraps to 0).
        let q_dim = checked_mul(&format!("'{a}.attention.head_count' x '{a}.attention.key_length'"), n_head, head_dim)?;
        let k_dim = checked_mul(&format!("'{a}.attention.head_count_kv' x '{a}.attention.key_length'"), n_head_kv, head_dim)?;
        let v_dim =
            checked_mul(&format!("'{a}.attention.head_count_kv' x '{a}.attention.value_length'"), n_head_kv, head_dim_v)?;
        let o_dim = checked_mul(&format!("'{a}.attention.head_count' x '{a}.attention.value_length'"), n_head, head_dim_v)?;
        checked_mul(&format!("2 x '{a}.feed_forward_length'"), 2, n_ff)?;
        let qkv_dim = q_dim.checked_add(k_dim).and_then(|s| s.checked_add(v_dim)).ok_or_else(|| {
            Error::bad_gguf(format!("the fused q+k+v width {q_dim} + {k_dim} + {v_dim} overflows; the metadata is corrupt"))
        })?;
        let n_vocab = match g.tensor("token_embd.weight") {
            Some(t) if t.dims.len() == 2 && t.dims[0] == n_embd as u64 => usize::try_from(t.dims[1])
                .ok()
                .filter(|&v| v > 0 && v.checked_mul(n_embd).is_some())
                .ok_or_else(|| Error::unsupported_model(format!("token_embd.weight has dims {:?}: bad vocabulary size", t.dims)))?,
            Some(t) => {
                return Err(Error::unsupported_model(format!(
                    "token_embd.weight has dims {:?}, expected [{n_embd}, n_vocab]",
                    t.dims
                )))
            }
            None => return Err(Error::unsupported_model("tensor 'token_embd.weight' is missing")),
        };
        // The first layer's projections must have the widths just computed, so that nothing sized
        // from them (the KV cache is sized before any weight is read) trusts the metadata alone.
        // The decoder checks every tensor of every layer the same way when it loads them.
        let expect: Vec<(&str, [usize; 2])> = if g.tensor("blk.0.attn_qkv.weight").is_some() {
            vec![("attn_qkv", [n_embd, qkv_dim]), ("attn_output", [o_dim, n_embd])]
        } else {
            vec![("attn_q", [n_embd, q_dim]), ("attn_k", [n_embd, k_dim]), ("attn_v", [n_embd, v_dim]), ("attn_output", [o_dim, n_embd])]
        };
        for (name, dims) in expect {
            let name = format!("blk.0.{name}.weight");
            match g.tensor(&name) {
                Some(t) if t.dims.len() == 2 && t.dims[0] == dims[0] as u64 && t.dims[1] == dims[1] as u64 => {}
                Some(t) => {
                    return Err(Error::unsupported_model(format!(
                        "tensor '{name}' has dims {:?} but the metadata (heads, head and embedding sizes) gives {dims:?}",
                        t.dims
                    )))
                }
                None => return Err(Error::unsupported_model(format!("tensor '{name}' is missing (architecture {a})"))),
            }
        }
        let n_ctx_train = count(a, "context_length", key_u(g, a, "context_length")?.unwrap_or(4096))?;
        let norm_eps = key_pos_f32(g, a, "attention.layer_norm_rms_epsilon")?
            .ok_or_else(|| Error::unsupported_model(format!("'{a}.attention.layer_norm_rms_epsilon' is missing")))?;
        let rope_base = key_pos_f32(g, a, "rope.freq_base")?.unwrap_or(10000.0);

        let mut rope_freq_scale = 1.0;
        if let Some(kind) = g.get_str(&format!("{a}.rope.scaling.type")) {
            let key = format!("{a}.rope.scaling.factor");
            // 0 means "no scaling" (as llama.cpp reads it); otherwise finite and > 0, with a
            // finite reciprocal (a subnormal factor would make every position infinite).
            let factor = match g.get(&key).map(|v| (v.as_f32(), v)) {
                None => 1.0,
                Some((Some(f), _)) if f == 0.0 || (f.is_finite() && f > 0.0 && (1.0 / f).is_finite()) => f,
                Some((_, v)) => {
                    return Err(Error::bad_gguf(format!("metadata key '{key}' must be 0 (no scaling) or a finite number > 0 with a finite reciprocal, got {}", v.summary(8))))
                }
            };
            match kind {
                "none" => {}
                "linear" if factor > 0.0 => rope_freq_scale = 1.0 / factor,
                _ if factor == 1.0 || factor == 0.0 => {}
                other => {
                    return Err(Error::unsupported_model(format!(
                        "RoPE scaling '{other}' (factor {factor}) is not supported"
                    )))
                }
            }
        }

        let facts = arch.facts();
        let (rope_style, activation, post_norms, qk_norm) = (facts.rope_style, facts.activation, facts.post_norms, facts.qk_norm);
        let embed_scale = facts.embed_scale.then(|| (n_embd as f32).sqrt());
        let inv_sqrt_head = 1.0 / (head_dim as f32).sqrt();
        let (q_scale, kq_scale) = match facts.query_scale {
            QueryScale::Scores => (None, inv_sqrt_head),
            QueryScale::Query => (Some(inv_sqrt_head), 1.0),
            QueryScale::Gemma3Query if n_layer == 62 => (Some(1.0 / ((n_embd / n_head) as f32).sqrt()), 1.0),
            QueryScale::Gemma3Query => (Some(inv_sqrt_head), 1.0),
        };
        let mut sliding_window = None;
        let mut swa_layers = vec![false; n_layer];
        let mut rope_base_swa = rope_base;
        if facts.sliding_window {
            let window = count(a, "attention.sliding_window", required(g, a, "attention.sliding_window")?)?;
            sliding_window = Some(window);
            let pattern = key_u(g, a, "attention.sliding_window_pattern")?.unwrap_or(6);
            for (il, swa) in swa_layers.iter_mut().enumerate() {
                *swa = pattern == 0 || il % pattern < pattern - 1;
            }
            rope_base_swa = 10000.0;
        }
        // 0 means "no softcap"; NaN, infinite or negative would turn every logit into NaN.
        let softcap_key = format!("{a}.final_logit_softcapping");
        let final_logit_softcap = match g.get(&softcap_key) {
            None => None,
            Some(v) => match v.as_f32() {
                Some(c) if c == 0.0 => None,
                Some(c) if c.is_finite() && c > 0.0 => Some(c),
                _ => {
                    return Err(Error::bad_gguf(format!(
                        "metadata key '{softcap_key}' must be a finite number > 0, got {}",
                        v.summary(8)
                    )))
                }
            },
        };

        let pooling = match key_u(g, a, "pooling_type")? {
            None | Some(0) | Some(1) => Pooling::Mean,
            Some(2) => Pooling::Cls,
            Some(3) => Pooling::Last,
            Some(p) => return Err(Error::unsupported_model(format!("pooling type {p} (4 is reranking) is not supported"))),
        };

        Ok(ModelConfig {
            arch,
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_ff,
            n_ctx_train,
            norm_eps,
            rope_style,
            n_rot,
            rope_base,
            rope_base_swa,
            rope_freq_scale,
            activation,
            embed_scale,
            q_scale,
            kq_scale,
            post_norms,
            qk_norm,
            sliding_window,
            swa_layers,
            final_logit_softcap,
            pooling,
        })
    }

    // The widths below cannot overflow for a config from `from_gguf` (checked there); they
    // saturate so that a config built by hand fails the tensor shape checks instead of wrapping.

    /// Query width: n_head * head_dim.
    pub fn q_dim(&self) -> usize {
        self.n_head.saturating_mul(self.head_dim)
    }
    /// Key width: n_head_kv * head_dim.
    pub fn k_dim(&self) -> usize {
        self.n_head_kv.saturating_mul(self.head_dim)
    }
    /// Value width: n_head_kv * head_dim_v.
    pub fn v_dim(&self) -> usize {
        self.n_head_kv.saturating_mul(self.head_dim_v)
    }
    /// Width of the attention output before `attn_output`: n_head * head_dim_v.
    pub fn o_dim(&self) -> usize {
        self.n_head.saturating_mul(self.head_dim_v)
    }
    /// The key/value cache a backend allocates for `n_ctx` positions, in f16 (another type:
    /// [`KvShape::with_type`]).
    pub fn kv_shape(&self, n_ctx: usize) -> KvShape {
        KvShape { n_layer: self.n_layer, k_dim: self.k_dim(), v_dim: self.v_dim(), n_ctx, ty: Default::default() }
    }
    /// The sliding window of layer `il`, if it uses one.
    pub fn window(&self, il: usize) -> Option<usize> {
        if self.swa_layers[il] {
            self.sliding_window
        } else {
            None
        }
    }
    pub fn rope_base_for(&self, il: usize) -> f32 {
        if self.swa_layers[il] {
            self.rope_base_swa
        } else {
            self.rope_base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_has_one_row_and_is_listed() {
        for a in [Arch::Llama, Arch::Qwen2, Arch::Qwen3, Arch::Phi3, Arch::Gemma3] {
            assert_eq!(ARCHES.iter().filter(|f| f.arch == a).count(), 1, "{a:?}");
            assert_eq!(Arch::from_name(a.name()), Some(a));
        }
        let listed: Vec<&str> = Arch::SUPPORTED.split(", ").collect();
        assert_eq!(listed, ARCHES.iter().map(|f| f.name).collect::<Vec<_>>());
    }
}
