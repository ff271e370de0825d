//! The one decoder forward pass, for every supported architecture, on any [`Backend`].
//!
//! ```text
//! x = embed(ids) * embed_scale                                   [n, n_embd]
//! per layer:
//!   h = rms_norm(x) ; q,k,v = h Wq, h Wk, h Wv (+bias) | split(h Wqkv)
//!   q,k = rms_norm_per_head(q,k) if qk-norm ; rope(q,k) ; q *= q_scale
//!   a = attention(q, kv-cache(k, v)) Wo ; a = rms_norm(a) if post-norms ; x = x + a
//!   h = rms_norm(x) ; f = (act(h Wgate) * h Wup) Wdown | fused gate+up ; post-norm ; x = x + f
//! logits = rms_norm(x) Wout (tied: token_embd) ; softcap if the model has one
//! ```
//! Tensor names are GGUF's, verbatim.

use std::sync::Arc;

use crate::backend::{AttnParams, Backend, QkPrep, RopeParams, TensorSource};
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::logits::{ReadOut, Readback};
use crate::model::config::{Activation, ModelConfig, RopeStyle};

enum Qkv<W> {
    Separate { q: W, k: W, v: W, bq: Option<W>, bk: Option<W>, bv: Option<W> },
    /// One `attn_qkv` (Phi-3), or q, k and v joined at load (`Backend::concat_rows`).
    Fused(W),
    /// q and k joined at load, v apart (a different format).
    FusedQk { qk: W, v: W },
}

enum Ffn<W> {
    Separate { gate: W, up: W },
    /// One `ffn_up` holding gate then up (Phi-3).
    FusedGateUp(W),
}

struct Layer<W> {
    attn_norm: W,
    qkv: Qkv<W>,
    q_norm: Option<W>,
    k_norm: Option<W>,
    wo: W,
    bo: Option<W>,
    attn_post_norm: Option<W>,
    ffn_norm: W,
    ffn: Ffn<W>,
    down: W,
    ffn_post_norm: Option<W>,
}

/// Model weights on a backend plus the config that drives the forward pass.
pub struct Model<B: Backend> {
    pub config: ModelConfig,
    tok_embd: B::Weight,
    output_norm: B::Weight,
    /// `None`: tied to `tok_embd`.
    output: Option<B::Weight>,
    rope_freqs: Option<B::Weight>,
    layers: Vec<Layer<B::Weight>>,
}

/// Which logits a forward pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only fill the KV cache (a prompt chunk before the last one): no output head; what the
    /// pass returns is not for reading ([`Model::fill_kv`]).
    KvOnly,
    /// Only for the last token: `[n_vocab]`.
    Last,
    /// For every token of the batch: `[n, n_vocab]` (teacher forcing, tests).
    All,
    /// For tokens `k..` of the batch: `[n - k, n_vocab]`.
    From(usize),
    /// No logits: every token's final hidden state after the output norm, `[n, n_embd]`
    /// (embeddings).
    Hidden,
}

struct Loader<'a, B: Backend, S: TensorSource> {
    backend: &'a mut B,
    gguf: &'a Gguf,
    file: &'a S,
}

impl<B: Backend, S: TensorSource> Loader<'_, B, S> {
    /// A tensor whose dims must equal `dims` (ggml order), if present.
    async fn opt(&mut self, name: &str, dims: &[usize]) -> Result<Option<B::Weight>> {
        let Some(info) = self.gguf.tensor(name) else { return Ok(None) };
        // Compared as u64: `as usize` would truncate a hostile dim on wasm32.
        if info.dims.len() != dims.len() || info.dims.iter().zip(dims).any(|(&d, &want)| d != want as u64) {
            return Err(Error::unsupported_model(format!(
                "tensor '{name}' has dims {:?}, expected {dims:?}",
                info.dims
            )));
        }
        let range = info.file_range(self.gguf.data_offset);
        if range.end > self.file.file_len() {
            return Err(Error::bad_gguf(format!("tensor '{name}' lies past the end of the file")));
        }
        self.backend.load_weight(info, self.file, range).await.map(Some)
    }
    async fn req(&mut self, name: &str, dims: &[usize]) -> Result<B::Weight> {
        self.opt(name, dims).await?.ok_or_else(|| {
            Error::unsupported_model(format!(
                "tensor '{name}' is missing (architecture {})",
                self.gguf.architecture().unwrap_or("?")
            ))
        })
    }
}

impl<B: Backend> Model<B> {
    /// Load every weight of a complete GGUF file held in memory.
    pub fn load(backend: &mut B, gguf: &Gguf, file: &Arc<Vec<u8>>) -> Result<Model<B>> {
        crate::block_on(Self::load_from(backend, gguf, file))
    }

    /// Load every weight, tensor by tensor, from `file` (whose header is `gguf`). Each tensor's
    /// bytes are handed to the backend and dropped unless the backend keeps them.
    pub async fn load_from<S: TensorSource>(backend: &mut B, gguf: &Gguf, file: &S) -> Result<Model<B>> {
        // Also refuses one part of a split model on its own.
        let cfg = ModelConfig::from_gguf(gguf)?;
        if gguf.tensors.iter().any(|t| t.name.contains("rope_factors_long")) {
            return Err(Error::unsupported_model("long-context RoPE factors (LongRoPE) are not supported"));
        }
        let mut ld = Loader { backend, gguf, file };
        let (e, ff, vocab) = (cfg.n_embd, cfg.n_ff, cfg.n_vocab);
        let (qd, kd, vd, hd) = (cfg.q_dim(), cfg.k_dim(), cfg.v_dim(), cfg.head_dim);
        let tok_embd = ld.req("token_embd.weight", &[e, vocab]).await?;
        let output_norm = ld.req("output_norm.weight", &[e]).await?;
        let output = ld.opt("output.weight", &[e, vocab]).await?;
        let rope_freqs = ld.opt("rope_freqs.weight", &[cfg.n_rot / 2]).await?;
        // `n_layer` was checked against the layers present in the file (`ModelConfig::from_gguf`).
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for il in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}");
            let qkv = if gguf.tensor(&n("attn_qkv.weight")).is_some() {
                Qkv::Fused(ld.req(&n("attn_qkv.weight"), &[e, qd.saturating_add(kd).saturating_add(vd)]).await?)
            } else {
                let q = ld.req(&n("attn_q.weight"), &[e, qd]).await?;
                let k = ld.req(&n("attn_k.weight"), &[e, kd]).await?;
                let v = ld.req(&n("attn_v.weight"), &[e, vd]).await?;
                let bq = ld.opt(&n("attn_q.bias"), &[qd]).await?;
                let bk = ld.opt(&n("attn_k.bias"), &[kd]).await?;
                let bv = ld.opt(&n("attn_v.bias"), &[vd]).await?;
                // Where the backend computes them faster as one weight (the GPU: one dispatch),
                // q, k and v become one, or q and k when v has another format.
                if bq.is_some() || bk.is_some() || bv.is_some() {
                    Qkv::Separate { q, k, v, bq, bk, bv }
                } else if let Some(w) = ld.backend.concat_rows(&[&q, &k, &v])? {
                    Qkv::Fused(w)
                } else if let Some(qk) = ld.backend.concat_rows(&[&q, &k])? {
                    Qkv::FusedQk { qk, v }
                } else {
                    Qkv::Separate { q, k, v, bq, bk, bv }
                }
            };
            let ffn = if gguf.tensor(&n("ffn_gate.weight")).is_some() {
                let gate = ld.req(&n("ffn_gate.weight"), &[e, ff]).await?;
                let up = ld.req(&n("ffn_up.weight"), &[e, ff]).await?;
                // Where the backend computes gate and up faster as one weight (the GPU: one
                // dispatch with the GLU), they become one, as Phi-3 stores them.
                match ld.backend.concat_rows(&[&gate, &up])? {
                    Some(gu) => Ffn::FusedGateUp(gu),
                    None => Ffn::Separate { gate, up },
                }
            } else {
                Ffn::FusedGateUp(ld.req(&n("ffn_up.weight"), &[e, ff.saturating_mul(2)]).await?)
            };
            let post = cfg.post_norms;
            layers.push(Layer {
                attn_norm: ld.req(&n("attn_norm.weight"), &[e]).await?,
                qkv,
                q_norm: ld.opt(&n("attn_q_norm.weight"), &[hd]).await?,
                k_norm: ld.opt(&n("attn_k_norm.weight"), &[hd]).await?,
                wo: ld.req(&n("attn_output.weight"), &[cfg.o_dim(), e]).await?,
                bo: ld.opt(&n("attn_output.bias"), &[e]).await?,
                attn_post_norm: if post { Some(ld.req(&n("post_attention_norm.weight"), &[e]).await?) } else { None },
                ffn_norm: ld.req(&n("ffn_norm.weight"), &[e]).await?,
                ffn,
                down: ld.req(&n("ffn_down.weight"), &[ff, e]).await?,
                ffn_post_norm: if post { Some(ld.req(&n("post_ffw_norm.weight"), &[e]).await?) } else { None },
            });
            if cfg.qk_norm && (layers[il].q_norm.is_none() || layers[il].k_norm.is_none())
            {
                return Err(Error::unsupported_model(format!("layer {il}: QK-norm weights are missing")));
            }
        }
        Ok(Model { config: cfg, tok_embd, output_norm, output, rope_freqs, layers })
    }

    /// Run `ids` at positions `pos0..pos0 + ids.len()`, appending their keys/values to `kv`, and
    /// read the requested logits back.
    pub async fn forward(&self, b: &mut B, kv: &mut B::Kv, ids: &[u32], pos0: usize, logits: Logits) -> Result<Vec<f32>> {
        let out = self.forward_act(b, kv, ids, pos0, logits)?;
        b.read(&out).await
    }

    /// Run `ids` into the KV cache only: no output head and no readback (on the GPU, the work is
    /// submitted and the next readback waits for it).
    pub fn fill_kv(&self, b: &mut B, kv: &mut B::Kv, ids: &[u32], pos0: usize) -> Result<()> {
        self.forward_act(b, kv, ids, pos0, Logits::KvOnly)?;
        b.submit()
    }

    /// [`Model::forward`] for the last token only, reading back only what `what` needs.
    pub async fn forward_last(&self, b: &mut B, kv: &mut B::Kv, ids: &[u32], pos0: usize, what: Readback) -> Result<ReadOut> {
        let out = self.forward_act(b, kv, ids, pos0, Logits::Last)?;
        b.read_logits(&out, what).await
    }

    /// Run `ids` and read every token's logits back, as little of each row as `what` needs (a
    /// speculative draft verified in one pass).
    pub async fn forward_rows(&self, b: &mut B, kv: &mut B::Kv, ids: &[u32], pos0: usize, what: Readback) -> Result<Vec<ReadOut>> {
        let out = self.forward_act(b, kv, ids, pos0, Logits::All)?;
        b.read_logits_rows(&out, self.config.n_vocab, what).await
    }

    /// The logits of one final hidden state (a row that [`Logits::Hidden`] read back), reading
    /// back only what `what` needs: speculation runs the output head row by row, only while a
    /// draft holds. The same arithmetic as the head of a forward pass for that row.
    pub async fn head_row(&self, b: &mut B, hidden: &[f32], what: Readback) -> Result<ReadOut> {
        let n = hidden.len();
        let bytes: Vec<u8> = hidden.iter().flat_map(|v| v.to_le_bytes()).collect();
        let info = crate::gguf::TensorInfo {
            name: "hidden".into(),
            dims: vec![n as u64, 1],
            ty: crate::quant::GgmlType::F32,
            offset: 0,
            n_bytes: (n * 4) as u64,
        };
        let w = b.weight(&info, crate::backend::TensorBytes::new(Arc::new(bytes), 0..n * 4))?;
        let h = b.get_rows(&w, &[0], 1.0)?;
        let out = self.head(b, &h)?;
        b.read_logits(&out, what).await
    }

    /// The output head of final hidden states `h`: the logits (soft-capped where the model caps
    /// them).
    fn head(&self, b: &mut B, h: &B::Act) -> Result<B::Act> {
        let mut out = b.linear(h, self.output.as_ref().unwrap_or(&self.tok_embd), None)?;
        if let Some(cap) = self.config.final_logit_softcap {
            b.softcap(&mut out, cap)?;
        }
        Ok(out)
    }

    /// Layer `il`'s rotary embedding for rows from position `pos0`.
    fn rope(&self, il: usize, pos0: usize) -> RopeParams {
        let c = &self.config;
        RopeParams {
            pos0,
            head_dim: c.head_dim,
            n_rot: c.n_rot,
            base: c.rope_base_for(il),
            freq_scale: c.rope_freq_scale,
            neox: c.rope_style == RopeStyle::Neox,
        }
    }

    /// A context shift of `kv` ([`crate::backend::Backend::kv_shift`]) with each layer's RoPE.
    pub fn kv_shift(&self, b: &mut B, kv: &mut B::Kv, s: crate::backend::KvShift) -> Result<()> {
        let rope: Vec<RopeParams> = (0..self.layers.len()).map(|il| self.rope(il, 0)).collect();
        b.kv_shift(kv, s, &rope, self.rope_freqs.as_ref())
    }

    /// The forward pass up to the logits, left on the backend.
    pub fn forward_act(&self, b: &mut B, kv: &mut B::Kv, ids: &[u32], pos0: usize, logits: Logits) -> Result<B::Act> {
        if ids.is_empty() {
            return Err(Error::invalid_argument("forward needs at least one token"));
        }
        let c = &self.config;
        let eps = c.norm_eps;
        let mut x = b.get_rows(&self.tok_embd, ids, c.embed_scale.unwrap_or(1.0))?;
        // `h`: the next block's normed input. Each block ends with one `add_norm` (residual add,
        // post-norm where the model has one, and the next norm: the next layer's attention norm,
        // after the last layer the output norm).
        let mut h = b.rms_norm(&x, self.layers.first().map_or(&self.output_norm, |l| &l.attn_norm), eps)?;
        for (il, l) in self.layers.iter().enumerate() {
            // Attention block.
            let (q, k, v) = match &l.qkv {
                Qkv::Separate { q, k, v, bq, bk, bv } => {
                    let mut parts = b.linear_many(&h, &[(q, bq.as_ref()), (k, bk.as_ref()), (v, bv.as_ref())])?.into_iter();
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some(q), Some(k), Some(v)) => (q, k, v),
                        _ => return Err(Error::internal("linear_many returned fewer than 3 products")),
                    }
                }
                Qkv::Fused(w) => {
                    let mut parts = b.linear_split(&h, w, &[c.q_dim(), c.k_dim(), c.v_dim()])?.into_iter();
                    (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
                }
                Qkv::FusedQk { qk, v } => {
                    let mut parts = b.linear_split(&h, qk, &[c.q_dim(), c.k_dim()])?.into_iter();
                    (parts.next().unwrap(), parts.next().unwrap(), b.linear(&h, v, None)?)
                }
            };
            let rope = self.rope(il, pos0);
            let attn = AttnParams {
                layer: il,
                pos0,
                n_head: c.n_head,
                n_head_kv: c.n_head_kv,
                head_dim: c.head_dim,
                head_dim_v: c.head_dim_v,
                window: c.window(il),
                scale: c.kq_scale,
            };
            let prep = QkPrep {
                q_norm: l.q_norm.as_ref(),
                k_norm: l.k_norm.as_ref(),
                eps,
                rope,
                freq_factors: self.rope_freqs.as_ref(),
                q_scale: c.q_scale,
            };
            let q = b.attn_prep(kv, q, k, &v, prep, attn)?;
            let a = b.attend(kv, &q, attn)?;
            let a = b.linear(&a, &l.wo, l.bo.as_ref())?;
            (x, h) = b.add_norm(&a, l.attn_post_norm.as_ref(), &x, &l.ffn_norm, eps)?;

            // Feed-forward block.
            let gelu = c.activation == Activation::Gelu;
            let g = match &l.ffn {
                Ffn::Separate { gate, up } => b.linear_gate_up(&h, gate, up, gelu)?,
                Ffn::FusedGateUp(w) => b.linear_glu(&h, w, c.n_ff, gelu)?,
            };
            let f = b.linear(&g, &l.down, None)?;
            let next_norm = self.layers.get(il + 1).map_or(&self.output_norm, |n| &n.attn_norm);
            (x, h) = b.add_norm(&f, l.ffn_post_norm.as_ref(), &x, next_norm, eps)?;
        }
        // The norm is per row: selecting rows after it is selecting them before.
        match logits {
            Logits::KvOnly => return Ok(x),
            // (One row is its own last row: no copy, which would also split a GPU compute pass.)
            Logits::Last if ids.len() > 1 => h = b.rows_from(&h, ids.len() - 1)?,
            Logits::From(k) if k > 0 => h = b.rows_from(&h, k.min(ids.len() - 1))?,
            _ => {}
        }
        if logits == Logits::Hidden {
            return Ok(h);
        }
        self.head(b, &h)
    }
}
