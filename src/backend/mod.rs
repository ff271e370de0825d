//! Compute backends. The decoder ([`crate::model`]) is written once against [`Backend`]; each
//! backend implements the ops. One op = one trait method = one CPU function in `backend::cpu::ops`
//! (and, for the GPU backend, one `.wgsl` file of the same name).
//!
//! Activations are row-major `[rows, cols]` f32 matrices: one row per token of the batch (or, for
//! per-head ops, `cols` spans all heads and the op works on `head_dim`-wide chunks).
//!
//! What the sampler asks to read back ([`Readback`], [`ReadOut`]) and its host-side selection live
//! in [`crate::logits`], below both this module and [`crate::sampling`]. A KV cache is sized by a
//! [`KvShape`] (from [`crate::model::ModelConfig::kv_shape`]): backends never import the model.

use std::ops::Range;
use std::sync::Arc;

use crate::error::Result;
use crate::gguf::TensorInfo;
use crate::logits::{ReadOut, Readback};

pub mod cpu;
pub mod gpu;

/// Bytes of one tensor, shared with the buffer they came from (no copy for in-memory models).
#[derive(Clone)]
pub struct TensorBytes {
    pub buf: Arc<Vec<u8>>,
    pub range: Range<usize>,
}

impl TensorBytes {
    pub fn new(buf: Arc<Vec<u8>>, range: Range<usize>) -> Self {
        assert!(range.end <= buf.len());
        TensorBytes { buf, range }
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

/// Where weight bytes come from while a model loads: the whole file in memory, bytes held by the
/// caller (JS), or browser storage. Each tensor is read on its own (or in pieces, see
/// [`Backend::load_weight`]), so a source never has to be in wasm memory as a whole.
#[allow(async_fn_in_trait)] // used generically, on one thread
pub trait TensorSource {
    /// Size of the whole file in bytes.
    fn file_len(&self) -> u64;
    /// The bytes of `range` (one tensor's data, or a piece of it), checked to lie within the file.
    async fn read(&self, range: Range<u64>) -> Result<TensorBytes>;
}

impl TensorSource for Arc<Vec<u8>> {
    fn file_len(&self) -> u64 {
        self.len() as u64
    }
    async fn read(&self, range: Range<u64>) -> Result<TensorBytes> {
        Ok(TensorBytes::new(self.clone(), range.start as usize..range.end as usize))
    }
}

/// Bytes per row of `info`, after checking that `len` bytes hold exactly its rows (every backend's
/// `weight` starts with this).
pub fn checked_row_bytes(info: &TensorInfo, len: u64) -> Result<usize> {
    let row_bytes = info.ty.row_bytes(info.n_cols());
    let expect = row_bytes.and_then(|rb| rb.checked_mul(info.n_rows()));
    if expect.map(|e| e as u64) != Some(len) {
        return Err(crate::error::Error::bad_gguf(format!(
            "tensor '{}': {len} bytes for {:?} {} (expected {:?})",
            info.name, info.dims, info.ty, expect
        )));
    }
    Ok(row_bytes.expect("checked above"))
}

/// How a KV cache stores keys and values: llama.cpp's `--cache-type-k` / `--cache-type-v`, the
/// same type for both. `F16` is llama.cpp's default; `Q8_0` stores blocks of 32 values as one
/// f16 scale and 32 i8 (34 bytes, 0.53x f16's), quantized as llama.cpp's `quantize_row_q8_0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    #[default]
    F16,
    Q8_0,
}

/// Values per block of a q8_0 cache row.
pub const KV_BLOCK: usize = 32;

impl KvType {
    pub fn parse(s: &str) -> Result<KvType> {
        match s {
            "f16" => Ok(KvType::F16),
            "q8_0" => Ok(KvType::Q8_0),
            _ => Err(crate::error::Error::invalid_argument(format!("kvCache must be \"f16\" or \"q8_0\"; got {s:?}"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }
    /// The session file's code for this type (f16 is 0, as every file before the type existed).
    pub fn code(self) -> u32 {
        match self {
            KvType::F16 => 0,
            KvType::Q8_0 => 1,
        }
    }
    pub fn from_code(c: u32) -> Option<KvType> {
        [KvType::F16, KvType::Q8_0].into_iter().find(|t| t.code() == c)
    }
    /// Bytes of `dim` cached values (one position of one layer's keys or values) in the layout
    /// of the CPU cache and of a saved session: f16 pairs, or q8_0 blocks (f16 scale, 32 i8);
    /// `None` if it overflows or `dim` is not whole blocks.
    pub fn row_bytes(self, dim: usize) -> Option<usize> {
        match self {
            KvType::F16 => dim.checked_mul(2),
            KvType::Q8_0 if dim % KV_BLOCK == 0 => (dim / KV_BLOCK).checked_mul(2 + KV_BLOCK),
            KvType::Q8_0 => None,
        }
    }
}

/// The size of a key/value cache: what a backend needs to allocate one (see
/// [`crate::model::ModelConfig::kv_shape`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvShape {
    pub n_layer: usize,
    /// Key width per position: `n_head_kv * head_dim`.
    pub k_dim: usize,
    /// Value width per position: `n_head_kv * head_dim_v`.
    pub v_dim: usize,
    /// Positions per layer.
    pub n_ctx: usize,
    pub ty: KvType,
}

impl KvShape {
    /// The same cache holding values of type `ty`.
    pub fn with_type(self, ty: KvType) -> KvShape {
        KvShape { ty, ..self }
    }
    /// Bytes of one position's keys and values in one layer ([`KvType::row_bytes`]).
    pub fn position_bytes(&self) -> Option<usize> {
        self.ty.row_bytes(self.k_dim)?.checked_add(self.ty.row_bytes(self.v_dim)?)
    }
    /// Bytes of one position over every layer, keys and values; `None` if that overflows a u64
    /// (or a width is not whole q8_0 blocks).
    pub fn bytes_per_position(&self) -> Option<u64> {
        (self.n_layer as u64).checked_mul(self.position_bytes()? as u64)
    }
    /// Bytes of the whole cache: `n_layer * n_ctx * (row_bytes(k_dim) + row_bytes(v_dim))`, checked.
    pub fn bytes(&self) -> Option<u64> {
        self.bytes_per_position()?.checked_mul(self.n_ctx as u64)
    }
    /// An error unless a position's keys and values are whole blocks of the cache type (what a
    /// backend checks before it allocates one).
    pub fn check_rows(&self) -> Result<()> {
        if self.ty.row_bytes(self.k_dim).is_none() || self.ty.row_bytes(self.v_dim).is_none() {
            return Err(crate::error::Error::invalid_argument(format!(
                "a {} cache needs rows of whole {KV_BLOCK}-value blocks; keys are {} wide, values {}",
                self.ty.name(),
                self.k_dim,
                self.v_dim
            )));
        }
        Ok(())
    }
    /// An error unless every head's keys and values are whole blocks of the cache type (q8_0:
    /// `head_dim` and `head_dim_v` multiples of 32, as llama.cpp requires).
    pub fn check_heads(&self, head_dim: usize, head_dim_v: usize) -> Result<()> {
        if self.ty == KvType::Q8_0 && (head_dim % KV_BLOCK != 0 || head_dim_v % KV_BLOCK != 0) {
            return Err(crate::error::Error::invalid_argument(format!(
                "kvCache \"q8_0\" needs head sizes that are multiples of {KV_BLOCK}; this model's are {head_dim} (keys) and {head_dim_v} (values): use \"f16\""
            )));
        }
        Ok(())
    }
}

/// The bytes of keys and of values that positions `0..n` of one layer hold in the portable layout
/// ([`KvType::row_bytes`]): checks `layer` and `n` against the cache's shape and, when writing,
/// `bytes` against their size.
pub fn kv_span(shape: KvShape, layer: usize, n: usize, bytes: Option<usize>) -> Result<(usize, usize)> {
    let rows = |dim| shape.ty.row_bytes(dim).and_then(|b| b.checked_mul(n));
    let (k, v) = match (rows(shape.k_dim), rows(shape.v_dim)) {
        (Some(k), Some(v)) if layer < shape.n_layer && n <= shape.n_ctx => (k, v),
        _ => return Err(crate::error::Error::internal(format!("KV layer {layer} / {n} positions outside a cache of {shape:?}"))),
    };
    if bytes.is_some_and(|b| Some(b) != k.checked_add(v)) {
        return Err(crate::error::Error::internal(format!("KV layer bytes: {} for {n} positions", bytes.unwrap_or(0))));
    }
    Ok((k, v))
}

/// The most bytes of KV cache [`crate::engine::Engine`] lets a CPU backend allocate. In wasm32 the
/// cache shares a 4 GiB address space with the weights (and the bytes path's copy of the file).
#[cfg(target_arch = "wasm32")]
pub const CPU_KV_BUDGET: u64 = 2 << 30;
/// The most bytes of KV cache [`crate::engine::Engine`] lets a CPU backend allocate natively.
#[cfg(not(target_arch = "wasm32"))]
pub const CPU_KV_BUDGET: u64 = 16 << 30;

/// Where attention runs for one layer.
#[derive(Clone, Copy, Debug)]
pub struct AttnParams {
    pub layer: usize,
    /// Position of the first row of the batch.
    pub pos0: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    /// Keys older than `window` positions are not visible.
    pub window: Option<usize>,
    /// Scores are `scale * q.k` (llama.cpp's `kq_scale`).
    pub scale: f32,
}

#[derive(Clone, Copy, Debug)]
pub struct RopeParams {
    pub pos0: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub base: f32,
    pub freq_scale: f32,
    pub neox: bool,
}

/// A context shift (llama.cpp's): the cached positions `keep..keep + discard` leave the cache and
/// `keep + discard..n` move down by `discard` ([`Backend::kv_shift`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvShift {
    pub keep: usize,
    pub discard: usize,
    pub n: usize,
}

impl KvShift {
    /// Checks against the cache: `keep + discard <= n <= n_ctx`, `discard > 0`, one RoPE per layer
    /// whose heads tile the key width.
    pub fn check(self, shape: KvShape, rope: &[RopeParams]) -> Result<()> {
        let fits = self.discard > 0 && self.keep.checked_add(self.discard).is_some_and(|e| e <= self.n) && self.n <= shape.n_ctx;
        let heads = rope.len() == shape.n_layer && rope.iter().all(|r| r.head_dim > 0 && shape.k_dim % r.head_dim == 0 && r.n_rot <= r.head_dim && r.n_rot % 2 == 0);
        if fits && heads {
            Ok(())
        } else {
            Err(crate::error::Error::internal(format!("context shift {self:?} of a cache of {shape:?} with {} layers' RoPE", rope.len())))
        }
    }
}

/// `base^(-2/n_rot)`, the ratio between successive RoPE angles, as one f32 expression that every
/// backend computes the same way (the GPU's uniform and the CPU's `rope_table`).
pub fn rope_theta_scale(base: f32, n_rot: usize) -> f32 {
    base.powf(-2.0 / n_rot as f32)
}

/// What [`Backend::attn_prep`] does to q and k before they are attended / stored.
#[derive(Clone, Copy)]
pub struct QkPrep<'a, W> {
    /// Per-head RMS norm weights (`head_dim` wide), where the model has them.
    pub q_norm: Option<&'a W>,
    pub k_norm: Option<&'a W>,
    pub eps: f32,
    pub rope: RopeParams,
    pub freq_factors: Option<&'a W>,
    pub q_scale: Option<f32>,
}

#[allow(async_fn_in_trait)] // backends are used generically, never as `dyn`, and run on one thread
pub trait Backend {
    /// A weight tensor in GGUF block layout.
    type Weight;
    /// An activation matrix.
    type Act;
    /// The key/value cache of every layer.
    type Kv;

    fn name(&self) -> &'static str;
    fn weight(&mut self, info: &TensorInfo, bytes: TensorBytes) -> Result<Self::Weight>;
    /// A weight read from `src` at `range`. The default reads the tensor in one piece and keeps it
    /// (the CPU: each tensor lands in its final place, the file is never held twice); the GPU
    /// uploads it in bounded pieces so wasm memory never holds a whole large tensor.
    async fn load_weight<S: TensorSource>(&mut self, info: &TensorInfo, src: &S, range: Range<u64>) -> Result<Self::Weight> {
        let bytes = src.read(range).await?;
        self.weight(info, bytes)
    }
    /// Allocate the KV cache; a cache that cannot be allocated is an error, never an abort.
    fn kv_cache(&mut self, shape: KvShape) -> Result<Self::Kv>;
    /// Keys then values of positions `0..n` of layer `layer` of the cache in the portable layout
    /// of the cache's type ([`kv_span`]: little-endian f16 bit patterns, or q8_0 blocks; the
    /// layout of a saved session, [`crate::session`]).
    async fn read_kv(&mut self, kv: &Self::Kv, layer: usize, n: usize) -> Result<Vec<u8>>;
    /// Write what [`Backend::read_kv`] read into positions `0..n` of layer `layer`.
    fn write_kv(&mut self, kv: &mut Self::Kv, layer: usize, n: usize, bytes: &[u8]) -> Result<()>;
    /// A context shift ([`KvShift`]) in every layer: the moved keys' rotary embedding turned back
    /// by `discard` positions (`rope[layer]`, and `freq_factors`, as the forward pass applies them;
    /// `pos0` unused), rounded to f16 again as llama.cpp's shift does; values move unchanged.
    fn kv_shift(&mut self, kv: &mut Self::Kv, s: KvShift, rope: &[RopeParams], freq_factors: Option<&Self::Weight>) -> Result<()>;
    /// Bytes this backend allocates for a cache of `shape` (the CPU: [`KvShape::bytes`]; the GPU
    /// keeps q8_0 scales as f32); `None` if it overflows.
    fn kv_bytes(&self, shape: KvShape) -> Option<u64> {
        shape.bytes()
    }
    /// The largest KV cache, in bytes, this backend accepts; [`crate::engine::Engine`] refuses a
    /// context length whose cache is larger before allocating anything.
    fn kv_budget(&self) -> u64 {
        CPU_KV_BUDGET
    }

    /// Rows of the embedding table for `ids`, times `scale`: `[ids.len(), n_embd]`.
    fn get_rows(&mut self, w: &Self::Weight, ids: &[u32], scale: f32) -> Result<Self::Act>;
    /// RMSNorm of each `w.len()`-wide chunk of every row, times `w`.
    fn rms_norm(&mut self, x: &Self::Act, w: &Self::Weight, eps: f32) -> Result<Self::Act>;
    /// The end of a block: the residual stream `x = res + t` (with `post`, a post-norm:
    /// `res + rms_norm(t, post)`), then the next block's input `h = rms_norm(x, w)`. Returns
    /// `(x, h)` (the CPU composes it of plain steps, the GPU runs one pass).
    fn add_norm(&mut self, t: &Self::Act, post: Option<&Self::Weight>, res: &Self::Act, w: &Self::Weight, eps: f32) -> Result<(Self::Act, Self::Act)>;
    /// `act(x @ gate^T) * (x @ up^T)` for a gated FFN's gate and up as two weights: `[rows,
    /// gate.n_rows]`. The CPU computes both and the GLU in one parallel step.
    fn linear_gate_up(&mut self, x: &Self::Act, gate: &Self::Weight, up: &Self::Weight, gelu: bool) -> Result<Self::Act> {
        let (g, u) = (self.linear(x, gate, None)?, self.linear(x, up, None)?);
        self.glu(&g, &u, gelu)
    }
    /// `x @ w^T (+ bias)` for several weights of one input (q, k and v kept apart), in order. The
    /// CPU computes them in one parallel step: one wake-up and one join of its threads instead of
    /// one per weight, and the small ones (k, v) no longer run on one thread.
    fn linear_many(&mut self, x: &Self::Act, ws: &[(&Self::Weight, Option<&Self::Weight>)]) -> Result<Vec<Self::Act>> {
        ws.iter().map(|&(w, b)| self.linear(x, w, b)).collect()
    }
    /// `act(x @ gate^T) * (x @ up^T)` for a weight holding a gated FFN's `n_ff` gate rows then
    /// its `n_ff` up rows: `[rows, n_ff]`; a backend may do it in one pass.
    fn linear_glu(&mut self, x: &Self::Act, w: &Self::Weight, n_ff: usize, gelu: bool) -> Result<Self::Act> {
        let gu = self.linear(x, w, None)?;
        let parts = self.split_cols(&gu, &[n_ff, n_ff])?;
        self.glu(&parts[0], &parts[1], gelu)
    }
    /// One weight holding the rows of `ws` in order, where this backend computes faster with
    /// them together (the GPU: q, k and v, or a gated FFN's gate and up, in one dispatch); `None`
    /// where it does not, and the weights stay as they are.
    fn concat_rows(&mut self, _ws: &[&Self::Weight]) -> Result<Option<Self::Weight>> {
        Ok(None)
    }
    /// `x @ w^T` with its columns split into pieces of `widths` (q, k and v of one joined
    /// weight); a backend may write the pieces directly.
    fn linear_split(&mut self, x: &Self::Act, w: &Self::Weight, widths: &[usize]) -> Result<Vec<Self::Act>> {
        let y = self.linear(x, w, None)?;
        self.split_cols(&y, widths)
    }
    /// `x @ w^T (+ bias)`: `[rows, w.n_rows]`.
    fn linear(&mut self, x: &Self::Act, w: &Self::Weight, bias: Option<&Self::Weight>) -> Result<Self::Act>;
    /// Split columns into consecutive pieces of the given widths (fused qkv / gate+up weights).
    fn split_cols(&mut self, x: &Self::Act, widths: &[usize]) -> Result<Vec<Self::Act>>;
    /// Causal (optionally windowed) attention of q over layer `p.layer` of the cache, whose
    /// positions up to `p.pos0 + rows` are stored: `[rows, n_head * head_dim_v]`.
    fn attend(&mut self, kv: &Self::Kv, q: &Self::Act, p: AttnParams) -> Result<Self::Act>;
    /// Attention's inputs made ready: per-head RMS norms of q and k (where the model has them),
    /// the rotary embedding, `q *= q_scale`, then k and v stored in the cache. Returns q for
    /// [`Backend::attend`] (the CPU composes it of plain steps, the GPU runs one pass).
    fn attn_prep(&mut self, kv: &mut Self::Kv, q: Self::Act, k: Self::Act, v: &Self::Act, prep: QkPrep<'_, Self::Weight>, p: AttnParams) -> Result<Self::Act>;
    /// `act(gate) * up`.
    fn glu(&mut self, gate: &Self::Act, up: &Self::Act, gelu: bool) -> Result<Self::Act>;
    /// Rows `start..` only: `[rows - start, cols]`.
    fn rows_from(&mut self, x: &Self::Act, start: usize) -> Result<Self::Act>;
    /// `cap * tanh(x / cap)`, in place.
    fn softcap(&mut self, x: &mut Self::Act, cap: f32) -> Result<()>;
    /// Copy an activation back to the host, row-major. Asynchronous because a GPU readback is
    /// (WebGPU's `mapAsync`); the CPU backend's future is ready at once.
    async fn read(&mut self, x: &Self::Act) -> Result<Vec<f32>>;
    /// Read one row of logits back, as little of it as `what` needs. The default reads the whole
    /// row and selects on the host; a GPU backend selects on the device.
    async fn read_logits(&mut self, x: &Self::Act, what: Readback) -> Result<ReadOut> {
        let logits = self.read(x).await?;
        Ok(what.select(logits))
    }
    /// [`Backend::read_logits`] of every row of `x` (`[rows, n_vocab]`), in order: a
    /// speculative draft's rows. The default reads them all and selects on the host.
    async fn read_logits_rows(&mut self, x: &Self::Act, n_vocab: usize, what: Readback) -> Result<Vec<ReadOut>> {
        Ok(what.select_rows(&self.read(x).await?, n_vocab))
    }
    /// Tokens a batched matmul multiplies together for little more than the cost of fewer (the
    /// CPU kernels' token tile): a speculative pass is sized to a multiple of it. 1: no such
    /// step.
    fn token_tile(&self) -> usize {
        1
    }
    /// Start what was recorded so far without reading anything back (a prompt chunk that only
    /// fills the KV cache). The CPU backend computes as it goes: nothing to do.
    fn submit(&mut self) -> Result<()> {
        Ok(())
    }
    /// Work counters (GPU dispatches and submits); zeros where a backend does not count.
    fn stats(&self) -> BackendStats {
        BackendStats::default()
    }
}

/// Cumulative work counters of a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendStats {
    pub dispatches: u64,
    pub submits: u64,
    /// Compute passes encoded (GPU: one per submit unless a copy comes between dispatches).
    pub compute_passes: u64,
    /// GPU objects created: buffers, bind groups, pipelines (none per token in steady state).
    pub buffers_created: u64,
    pub bind_groups_created: u64,
    pub pipelines_created: u64,
}
