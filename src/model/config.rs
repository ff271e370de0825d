//! `ModelConfig`: everything the one decoder needs to know about an architecture, read from GGUF.
//!
//! Architectures differ only by these fields (STYLE.md, practice 10). The per-architecture facts
//! mirror llama.cpp's `llama_model::load_hparams` and its graph builders (`src/models/*.cpp`):
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
//! [`ModelConfig::kv_shape`] gives the backends the size of a KV cache ([`KvShape`]), so that
//! [`crate::backend`] never depends on this module.

use crate::backend::KvShape;
use crate::error::{Error, Result};
use crate::gguf::Gguf;

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
        Some(match name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "phi3" => Arch::Phi3,
            "gemma3" => Arch::Gemma3,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Phi3 => "phi3",
            Arch::Gemma3 => "gemma3",
        }
    }
}

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
}

fn key_u(g: &Gguf, arch: &str, key: &str) -> Option<usize> {
    g.get_u64(&format!("{arch}.{key}")).map(|v| v as usize)
}

fn required(g: &Gguf, arch: &str, key: &str) -> Result<usize> {
    key_u(g, arch, key).ok_or_else(|| {
        Error::unsupported_model(format!("metadata key '{arch}.{key}' is missing or not an integer"))
    })
}

impl ModelConfig {
    pub fn from_gguf(g: &Gguf) -> Result<ModelConfig> {
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
        let n_embd = required(g, a, "embedding_length")?;
        let n_layer = required(g, a, "block_count")?;
        let n_head = required(g, a, "attention.head_count")?;
        let n_head_kv = key_u(g, a, "attention.head_count_kv").unwrap_or(n_head);
        let n_ff = required(g, a, "feed_forward_length")?;
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 || n_layer == 0 || n_embd == 0 {
            return Err(Error::unsupported_model(format!(
                "inconsistent head counts: n_head {n_head}, n_head_kv {n_head_kv}, n_layer {n_layer}"
            )));
        }
        let head_dim = key_u(g, a, "attention.key_length").unwrap_or(n_embd / n_head);
        let head_dim_v = key_u(g, a, "attention.value_length").unwrap_or(head_dim);
        let n_rot = key_u(g, a, "rope.dimension_count").unwrap_or(head_dim);
        if head_dim == 0 || n_rot > head_dim || n_rot % 2 != 0 {
            return Err(Error::unsupported_model(format!("bad rope dims: n_rot {n_rot}, head_dim {head_dim}")));
        }
        let n_vocab = match g.tensor("token_embd.weight") {
            Some(t) if t.dims.len() == 2 && t.dims[0] as usize == n_embd => t.dims[1] as usize,
            Some(t) => {
                return Err(Error::unsupported_model(format!(
                    "token_embd.weight has dims {:?}, expected [{n_embd}, n_vocab]",
                    t.dims
                )))
            }
            None => return Err(Error::unsupported_model("tensor 'token_embd.weight' is missing")),
        };
        let n_ctx_train = key_u(g, a, "context_length").unwrap_or(4096);
        let norm_eps = g
            .get_f32(&format!("{a}.attention.layer_norm_rms_epsilon"))
            .ok_or_else(|| Error::unsupported_model(format!("'{a}.attention.layer_norm_rms_epsilon' is missing")))?;
        let rope_base = g.get_f32(&format!("{a}.rope.freq_base")).unwrap_or(10000.0);

        let mut rope_freq_scale = 1.0;
        if let Some(kind) = g.get_str(&format!("{a}.rope.scaling.type")) {
            let factor = g.get_f32(&format!("{a}.rope.scaling.factor")).unwrap_or(1.0);
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

        let qk_norm = matches!(arch, Arch::Qwen3 | Arch::Gemma3);
        let (rope_style, activation, post_norms) = match arch {
            Arch::Llama => (RopeStyle::Normal, Activation::Silu, false),
            Arch::Qwen2 | Arch::Qwen3 | Arch::Phi3 => (RopeStyle::Neox, Activation::Silu, false),
            Arch::Gemma3 => (RopeStyle::Neox, Activation::Gelu, true),
        };

        let mut sliding_window = None;
        let mut swa_layers = vec![false; n_layer];
        let mut rope_base_swa = rope_base;
        let mut embed_scale = None;
        let mut q_scale = None;
        let mut kq_scale = 1.0 / (head_dim as f32).sqrt();
        if arch == Arch::Phi3 {
            q_scale = Some(kq_scale);
            kq_scale = 1.0;
        }
        if arch == Arch::Gemma3 {
            embed_scale = Some((n_embd as f32).sqrt());
            // llama.cpp: the 27B model scales by 1/sqrt(n_embd / n_head) instead of 1/sqrt(head_dim).
            q_scale = Some(if n_layer == 62 {
                1.0 / ((n_embd / n_head) as f32).sqrt()
            } else {
                1.0 / (head_dim as f32).sqrt()
            });
            kq_scale = 1.0;
            // Gemma 3: 5 sliding-window layers, then one global layer; local RoPE base 10k.
            let window = required(g, a, "attention.sliding_window")?;
            sliding_window = Some(window);
            let pattern = key_u(g, a, "attention.sliding_window_pattern").unwrap_or(6);
            for (il, swa) in swa_layers.iter_mut().enumerate() {
                *swa = pattern == 0 || il % pattern < pattern - 1;
            }
            rope_base_swa = 10000.0;
        }
        let final_logit_softcap = g
            .get_f32(&format!("{a}.final_logit_softcapping"))
            .filter(|&c| c > 0.0);

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
        })
    }

    /// Query width: n_head * head_dim.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
    /// Key width: n_head_kv * head_dim.
    pub fn k_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
    /// Value width: n_head_kv * head_dim_v.
    pub fn v_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }
    /// The key/value cache a backend allocates for `n_ctx` positions.
    pub fn kv_shape(&self, n_ctx: usize) -> KvShape {
        KvShape { n_layer: self.n_layer, k_dim: self.k_dim(), v_dim: self.v_dim(), n_ctx }
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
