//! Preflight: what loading a model would take, known before its download. From the GGUF header
//! (the whole header where it is at hand; else the metadata in the file's first bytes) and the
//! device: the model's shape, the KV cache at a context length, whether both fit, and its speed,
//! estimated by timing the model's own products on the backend that would run it.
//!
//! ```text
//! Shape::from_gguf(header) | Shape::from_metadata(prefix, file size)   exact | inferred types
//! estimate(backend, shape) -> Estimate { decode, prefill tokens/s }     a short timed run
//! fits_cpu(file, kv) / fits_gpu(shape, kv, limits) -> MemoryFit
//! ```
//!
//! The estimate: one layer's products are built from random rows of their types (at most
//! [`ROWS_CAP`] rows each, the time scaled by the rest), in as many copies as it takes to stream
//! more than [`STREAM_BYTES`] (a cache's worth; at most the model's layer count), and timed after
//! [`WARMUP`] untimed runs: a decode pass runs each copy's products on one row (one read at the
//! end: a GPU runs them as one submit), a prefill runs each product once on [`PREFILL_ROWS`] rows.
//! The head is timed on its first rows and taken no faster than the layers streamed memory. A
//! decoded token costs every layer plus the head, a prompt token the layers only (the head runs
//! for the last), times [`DECODE_OVERHEAD`] or [`PREFILL_OVERHEAD`] for what is not a product
//! (norms, attention at a short context, sampling). Without tensor infos (a remote model read only as far as its first bytes)
//! every product gets the type `general.file_type` names, or the type whose bits per weight come
//! nearest the file's.

use std::sync::Arc;

use crate::backend::{Backend, KvShape, TensorBytes};
use crate::engine::now_ms;
use crate::error::{Error, Result};
use crate::gguf::{Gguf, MetadataPrefix, TensorInfo, Value};
use crate::model::ModelConfig;
use crate::quant::random::{random_row, Rng};
use crate::quant::GgmlType;

/// Rows of a product built for the estimate, at most.
pub const ROWS_CAP: usize = 4096;
/// Rows of the timed prefill product.
pub const PREFILL_ROWS: usize = 64;
/// Untimed runs of each product first.
pub const WARMUP: usize = 3;
/// Bytes of weights a timed decode pass streams through: more than a CPU's last-level cache or a
/// GPU's L2 holds, so the pass runs at memory speed as a model's decode does.
pub const STREAM_BYTES: usize = 64 << 20;
/// Head products per timed batch.
pub const DECODE_REPS: usize = 8;
/// What a decoded token costs beyond its products: nothing to add, calibrated on both real
/// models natively and in wasm (a decode pass streamed cold from memory, as the estimate times it,
/// is a little slower than a model's, whose norms and attention hide under that).
pub const DECODE_OVERHEAD: f64 = 1.0;
/// The same for a prompt token (the products are nearly all of a prefill).
pub const PREFILL_OVERHEAD: f64 = 1.05;

/// One weight product of the model: `count` of them per token.
#[derive(Clone, Debug, PartialEq)]
pub struct Product {
    pub name: String,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub count: usize,
    /// The output head: a prefill runs it for its last token only.
    pub head: bool,
}

/// What the header says about the model's size.
#[derive(Clone, Debug)]
pub struct Shape {
    pub architecture: String,
    pub n_layer: usize,
    pub k_dim: usize,
    pub v_dim: usize,
    pub n_ctx_train: usize,
    pub products: Vec<Product>,
    /// Bytes per tensor type (exact), or the whole file under the type inferred.
    pub quantization: Vec<(String, u64)>,
    /// From the tensor infos (true) or inferred from the metadata (false).
    pub exact: bool,
}

impl Shape {
    /// From a whole header: the products of layer 0 and the output head, as stored.
    pub fn from_gguf(g: &Gguf) -> Result<Shape> {
        let c = ModelConfig::from_gguf(g)?;
        let product = |t: &TensorInfo, count: usize| Product { name: t.name.clone(), ty: t.ty, rows: t.n_rows(), cols: t.n_cols(), count, head: false };
        let mut products: Vec<Product> =
            g.tensors.iter().filter(|t| t.dims.len() == 2 && t.name.starts_with("blk.0.")).map(|t| product(t, c.n_layer)).collect();
        let head = g.tensor("output.weight").or_else(|| g.tensor("token_embd.weight"));
        products.extend(head.map(|t| Product { head: true, ..product(t, 1) }));
        let mut quantization: Vec<(String, u64)> = Vec::new();
        for t in &g.tensors {
            match quantization.iter_mut().find(|(n, _)| n == t.ty.name()) {
                Some(q) => q.1 += t.n_bytes,
                None => quantization.push((t.ty.name().to_owned(), t.n_bytes)),
            }
        }
        quantization.sort_by(|a, b| b.1.cmp(&a.1));
        Ok(Shape {
            architecture: g.architecture().unwrap_or_default().to_owned(),
            n_layer: c.n_layer,
            k_dim: c.k_dim(),
            v_dim: c.v_dim(),
            n_ctx_train: c.n_ctx_train,
            products,
            quantization,
            exact: true,
        })
    }

    /// From the metadata in a prefix of a file of `file_size` bytes: the products a decoder of
    /// these sizes has, of the type inferred (see the module docs).
    pub fn from_metadata(m: &MetadataPrefix, file_size: u64) -> Result<Shape> {
        let arch = match m.get("general.architecture") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err(Error::bad_gguf("general.architecture is not among the file's first metadata entries")),
        };
        let num = |key: &str| -> Option<usize> {
            let v = m.get(&format!("{arch}.{key}"))?;
            let n = match v {
                // Per-layer values (some architectures): the largest.
                Value::Array(a) => a.to_i64s()?.into_iter().max()? as u64,
                v => v.as_u64()?,
            };
            usize::try_from(n).ok().filter(|&n| n > 0 && n < 1 << 24)
        };
        let need = |key: &str| num(key).ok_or_else(|| Error::bad_gguf(format!("{arch}.{key} is missing or out of range in the file's first metadata")));
        let n_layer = need("block_count")?;
        let n_embd = need("embedding_length")?;
        let n_ff = need("feed_forward_length")?;
        let n_head = need("attention.head_count")?;
        let n_head_kv = num("attention.head_count_kv").unwrap_or(n_head);
        let head_dim = num("attention.key_length").unwrap_or(n_embd / n_head);
        let head_dim_v = num("attention.value_length").unwrap_or(head_dim);
        let n_vocab = num("vocab_size")
            .or_else(|| match m.get("tokenizer.ggml.tokens") {
                Some(Value::Array(a)) => Some(a.len()),
                _ => m.cut_array.as_ref().filter(|(k, _)| k == "tokenizer.ggml.tokens").and_then(|(_, n)| usize::try_from(*n).ok()),
            })
            .ok_or_else(|| Error::bad_gguf("the vocabulary's size is not among the file's first metadata entries"))?;
        let n_ctx_train = num("context_length").unwrap_or(4096);
        let (q, k, v) = (n_head * head_dim, n_head_kv * head_dim, n_head_kv * head_dim_v);
        let dims = [("attn_q", q, n_embd), ("attn_k", k, n_embd), ("attn_v", v, n_embd), ("attn_output", n_embd, n_head * head_dim_v),
            ("ffn_gate", n_ff, n_embd), ("ffn_up", n_ff, n_embd), ("ffn_down", n_embd, n_ff)];
        let layer_params: u64 = dims.iter().map(|&(_, r, c)| (r * c) as u64).sum();
        let params = layer_params * n_layer as u64 + (n_vocab * n_embd) as u64;
        let ty = m
            .get("general.file_type")
            .and_then(Value::as_u64)
            .and_then(file_type)
            .unwrap_or_else(|| nearest_type(file_size as f64 * 8.0 / params.max(1) as f64));
        let mut products: Vec<Product> =
            dims.iter().map(|&(name, rows, cols)| Product { name: format!("blk.0.{name}.weight"), ty, rows, cols, count: n_layer, head: false }).collect();
        products.push(Product { name: "output.weight".into(), ty, rows: n_vocab, cols: n_embd, count: 1, head: true });
        Ok(Shape {
            architecture: arch,
            n_layer,
            k_dim: k,
            v_dim: v,
            n_ctx_train,
            products,
            quantization: vec![(ty.name().to_owned(), file_size)],
            exact: false,
        })
    }

    /// The f16 KV cache at `n_ctx` positions.
    pub fn kv_shape(&self, n_ctx: usize) -> KvShape {
        KvShape { n_layer: self.n_layer, k_dim: self.k_dim, v_dim: self.v_dim, n_ctx, ty: Default::default() }
    }

    /// The context an engine loaded with `requested` gets (as [`crate::engine::Engine`] picks it).
    pub fn context_length(&self, requested: Option<usize>) -> usize {
        requested.unwrap_or(4096).min(self.n_ctx_train).max(1)
    }
}

/// The tensor type of most weights for llama.cpp's `general.file_type` (its `LLAMA_FTYPE_*`).
fn file_type(id: u64) -> Option<GgmlType> {
    let name = match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11..=13 => "Q3_K",
        14 | 15 => "Q4_K",
        16 | 17 => "Q5_K",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    };
    GgmlType::ALL.into_iter().find(|t| t.name() == name)
}

/// The common weight type whose bits per weight come nearest `bpw`.
fn nearest_type(bpw: f64) -> GgmlType {
    let candidates = [GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::F16, GgmlType::F32];
    let bits = |t: GgmlType| (t.type_size() * 8) as f64 / t.block_size() as f64;
    candidates.into_iter().min_by(|a, b| (bits(*a) - bpw).abs().total_cmp(&(bits(*b) - bpw).abs())).expect("candidates")
}

/// Estimated speeds on a backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Estimate {
    pub decode_tokens_per_second: f64,
    pub prefill_tokens_per_second: f64,
    /// How long the timed run took.
    pub ms: f64,
}

/// Time the model's products on `b` (see the module docs).
pub async fn estimate<B: Backend>(b: &mut B, shape: &Shape) -> Result<Estimate> {
    let t0 = now_ms();
    let mut rng = Rng::new(0x5eed);
    let layer: Vec<&Product> = shape.products.iter().filter(|p| !p.head).collect();
    let n_layer = layer.iter().map(|p| p.count).max().unwrap_or(1).max(1);
    // One layer's products as bytes (rows capped), and the factor back to their true size.
    let mut built = Vec::new();
    for p in &layer {
        let rows = p.rows.clamp(1, ROWS_CAP);
        built.push((p, rows, random_bytes(p.ty, rows, p.cols, &mut rng)?));
    }
    let capped: usize = built.iter().map(|(_, _, b)| b.len()).sum();
    let full: f64 = layer.iter().map(|p| p.ty.row_bytes(p.cols).unwrap_or(0) as f64 * p.rows as f64).sum();
    let scale = if capped > 0 { full / capped as f64 } else { 1.0 };
    // Enough copies of the layer that a pass streams more than a last-level cache holds, as a
    // decoded token streams every layer's weights from memory (at most the model's own layers).
    let copies = (STREAM_BYTES / capped.max(1)).clamp(1, n_layer);
    let mut weights = Vec::new();
    for _ in 0..copies {
        let mut ws = Vec::new();
        for (p, rows, bytes) in &built {
            ws.push(weight(b, p.ty, *rows, p.cols, bytes.clone())?);
        }
        weights.push(ws);
    }
    let mut acts: Vec<(usize, B::Act, B::Act)> = Vec::new();
    for p in &shape.products {
        if !acts.iter().any(|a| a.0 == p.cols) {
            let x = weight(b, GgmlType::F32, PREFILL_ROWS, p.cols, random_bytes(GgmlType::F32, PREFILL_ROWS, p.cols, &mut rng)?)?;
            let one = b.get_rows(&x, &[0], 1.0)?;
            let many = b.get_rows(&x, &(0..PREFILL_ROWS as u32).collect::<Vec<_>>(), 1.0)?;
            acts.push((p.cols, one, many));
        }
    }
    let act = |cols: usize, many: bool| acts.iter().find(|a| a.0 == cols).map(|a| if many { &a.2 } else { &a.1 }).expect("an activation per width");
    // Warm-up: first-use costs (pipelines, packing, a fresh wasm module's baseline tier) are not
    // the model's speed.
    for _ in 0..WARMUP {
        for ((p, _, _), w) in built.iter().zip(&weights[0]) {
            let y = b.linear(act(p.cols, false), w, None)?;
            b.read(&y).await?;
            let y = b.linear(act(p.cols, true), w, None)?;
            b.read(&y).await?;
        }
    }
    // Decode: passes over every copy, each product once per copy, one read at the end.
    let mut layer_ms = f64::INFINITY;
    for _ in 0..2 {
        let t = now_ms();
        let mut last = None;
        for ws in &weights {
            for ((p, _, _), w) in built.iter().zip(ws) {
                last = Some(b.linear(act(p.cols, false), w, None)?);
            }
        }
        if let Some(y) = &last {
            b.read(y).await?;
        }
        layer_ms = layer_ms.min((now_ms() - t) / copies as f64 * scale);
    }
    let bytes_per_ms = full / layer_ms.max(1e-6);
    // Prefill: each product once on a full batch of rows (compute, not memory, bounds it).
    let mut prefill_ms = 0.0;
    for ((p, _, _), w) in built.iter().zip(&weights[0]) {
        let t = now_ms();
        let y = b.linear(act(p.cols, true), w, None)?;
        b.read(&y).await?;
        prefill_ms += (now_ms() - t) / PREFILL_ROWS as f64 * (p.rows as f64 / p.rows.clamp(1, ROWS_CAP) as f64) * p.count as f64;
    }
    // The head: timed on its first rows, and no faster than the layers stream memory.
    let mut head_ms = 0.0;
    for h in shape.products.iter().filter(|p| p.head) {
        let rows = h.rows.clamp(1, ROWS_CAP);
        let w = weight(b, h.ty, rows, h.cols, random_bytes(h.ty, rows, h.cols, &mut rng)?)?;
        let y = b.linear(act(h.cols, false), &w, None)?;
        b.read(&y).await?;
        let t = now_ms();
        let mut y = b.linear(act(h.cols, false), &w, None)?;
        for _ in 1..DECODE_REPS {
            y = b.linear(act(h.cols, false), &w, None)?;
        }
        b.read(&y).await?;
        let timed = (now_ms() - t) / DECODE_REPS as f64 * (h.rows as f64 / rows as f64);
        let streamed = h.ty.row_bytes(h.cols).unwrap_or(0) as f64 * h.rows as f64 / bytes_per_ms;
        head_ms += timed.max(streamed) * h.count as f64;
    }
    let decode_ms = layer_ms * n_layer as f64 + head_ms;
    let per_s = |ms: f64, overhead: f64| if ms > 0.0 { 1000.0 / (ms * overhead) } else { f64::INFINITY };
    Ok(Estimate {
        decode_tokens_per_second: per_s(decode_ms, DECODE_OVERHEAD),
        prefill_tokens_per_second: per_s(prefill_ms, PREFILL_OVERHEAD),
        ms: now_ms() - t0,
    })
}

/// Random rows of `ty`, as bytes.
fn random_bytes(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Result<Vec<u8>> {
    if cols % ty.block_size() != 0 {
        return Err(Error::unsupported_model(format!("rows of {cols} values do not divide into {} blocks", ty.name())));
    }
    Ok(if ty == GgmlType::F32 {
        rng.acts(rows * cols, 1.0).iter().flat_map(|v| v.to_le_bytes()).collect()
    } else {
        (0..rows).flat_map(|_| random_row(ty, cols, rng)).collect()
    })
}

/// A weight of `bytes` on `b`.
fn weight<B: Backend>(b: &mut B, ty: GgmlType, rows: usize, cols: usize, bytes: Vec<u8>) -> Result<B::Weight> {
    let n = bytes.len();
    let info = TensorInfo { name: "preflight".into(), dims: vec![cols as u64, rows as u64], ty, offset: 0, n_bytes: n as u64 };
    b.weight(&info, TensorBytes::new(Arc::new(bytes), 0..n))
}

/// Whether a model fits where it would run, and why not.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryFit {
    pub fits: bool,
    pub reason: String,
}

/// The CPU backend in wasm32 holds the weights (about the file's size once packed) and the KV
/// cache in one 4 GiB address space, with some room for the rest (activations, the vocabulary).
pub fn fits_cpu(file_bytes: u64, kv_bytes: u64) -> MemoryFit {
    const SPACE: u64 = 4 << 30;
    const ROOM: u64 = 256 << 20;
    let need = file_bytes.saturating_add(kv_bytes).saturating_add(ROOM);
    let mib = |b: u64| b >> 20;
    if need <= SPACE {
        MemoryFit { fits: true, reason: format!("about {} MiB of WebAssembly's 4096 MiB (weights, KV cache, working memory)", mib(need)) }
    } else {
        MemoryFit {
            fits: false,
            reason: format!("needs about {} MiB, more than WebAssembly's 4096 MiB: use a smaller model, quantization or context", mib(need)),
        }
    }
}

/// The GPU backend needs each KV layer and each weight's rows within one storage binding, and the
/// cache within its budget (WebGPU does not say how much memory the device has).
pub fn fits_gpu(shape: &Shape, kv: KvShape, binding_limit: u64, kv_budget: u64) -> MemoryFit {
    let widest = crate::backend::gpu::kv_row_bytes(kv.ty, kv.k_dim.max(kv.v_dim)).saturating_mul(kv.n_ctx as u64);
    let kv_bytes = crate::backend::gpu::kv_cache_bytes(kv).unwrap_or(u64::MAX);
    if widest > binding_limit {
        return MemoryFit {
            fits: false,
            reason: format!("a KV layer of {} MiB exceeds the GPU's {} MiB binding limit: use a smaller context", widest >> 20, binding_limit >> 20),
        };
    }
    if kv_bytes > kv_budget {
        return MemoryFit { fits: false, reason: format!("the KV cache of {} MiB exceeds the GPU budget of {} MiB", kv_bytes >> 20, kv_budget >> 20) };
    }
    if let Some(p) = shape.products.iter().find(|p| p.ty.row_bytes(p.cols).is_none_or(|r| r as u64 > binding_limit)) {
        return MemoryFit { fits: false, reason: format!("a row of {} exceeds the GPU's binding limit", p.name) };
    }
    MemoryFit { fits: true, reason: format!("every buffer within the GPU's {} MiB binding limit (its memory size is not known to the page)", binding_limit >> 20) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_types_and_bits_per_weight_pick_a_type() {
        assert_eq!(file_type(15), Some(GgmlType::Q4_K));
        assert_eq!(file_type(7), Some(GgmlType::Q8_0));
        assert_eq!(file_type(99), None);
        assert_eq!(nearest_type(4.6), GgmlType::Q4_0);
        assert_eq!(nearest_type(7.9), GgmlType::Q8_0);
        assert_eq!(nearest_type(15.0), GgmlType::F16);
    }

    #[test]
    fn memory_fit_says_why() {
        assert!(fits_cpu(100 << 20, 10 << 20).fits);
        let no = fits_cpu(4000 << 20, 200 << 20);
        assert!(!no.fits && no.reason.contains("4096 MiB"), "{}", no.reason);
    }
}
