//! The CPU backend: scalar reference ops ([`ops`]) and the quantized matrix products of
//! [`crate::quant`] (SIMD128 in wasm, SSE2 natively).
//!
//! Every quantized weight (Q4_0..Q8_0, Q2_K..Q6_K) is repacked as it loads, in pieces, into the
//! layout of [`crate::quant::packed`] (4-row groups, f32 scales, i8 quants) and its GGUF bytes are
//! dropped; F32/F16/BF16 weights stay in GGUF layout, shared with the buffer they were read into.
//! The KV cache ([`kv`]) holds f16 values (llama.cpp's default) or q8_0 blocks.
//!
//! Large matrix products are split by rows over the threads of [`pool`]: natively std threads,
//! in the threaded wasm build Web Workers on the module's shared memory; otherwise (the plain wasm
//! builds) everything runs on the calling thread. So are the passes between them (norms, sums,
//! RoPE, widening cached rows: `for_row_runs`) and attention (a long prompt's by query rows and
//! heads; a decoding step's by cached positions, then value columns: `attend_one_f16`), so the
//! other threads do not wait for them.

pub mod kv;
pub mod ops;
pub mod pool;

pub use kv::CpuKv;
// The f16 cache's kernels, a softmax's exponentials, SwiGLU and GeGLU: vector code where the target has it,
// else their scalar forms (bit for bit the same results).
#[cfg(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64"))]
use crate::quant::packed::arch::{attn_scores_f16, attn_sums_f16, exp_sub, gelu_mul, silu_mul, widen_f16};
#[cfg(not(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64")))]
use {
    crate::quant::scalar::{exp_sub, gelu_mul, silu_mul},
    ops::{attn_scores_f16, attn_sums_f16, widen_f16},
};

use kv::KvRows;
use std::ops::Range;
use std::sync::{Mutex, OnceLock};

use crate::backend::{AttnParams, Backend, KvShape, KvShift, KvType, QkPrep, RopeParams, TensorBytes, TensorSource, KV_BLOCK};
use crate::error::{Error, Result};
use crate::gguf::TensorInfo;
use crate::logits::{self, ReadOut, Readback};
use crate::quant::packed::{self, PackedActs, PackedWeight};
use crate::quant::{self, GgmlType, QuantizedActs};

/// A weight tensor: `n_rows` rows of `n_cols` elements.
pub struct CpuWeight {
    pub ty: GgmlType,
    pub n_rows: usize,
    pub n_cols: usize,
    data: WeightData,
}

enum WeightData {
    /// GGUF block layout, shared with the buffer it was read into.
    Gguf(TensorBytes),
    /// F32 tensors (norm weights, biases, small F32 matrices), decoded once at load.
    F32(TensorBytes, Vec<f32>),
    /// Repacked for the CPU kernels ([`quant::packed`]).
    Packed(PackedWeight),
}

impl CpuWeight {
    fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.n_cols).expect("validated at load")
    }
    /// The weight as f32 values; only for small F32 tensors (norms, biases).
    fn values(&self) -> Result<&[f32]> {
        match &self.data {
            WeightData::F32(_, v) => Ok(v),
            _ => Err(Error::unsupported_model(format!("a norm/bias tensor must be F32, got {}", self.ty))),
        }
    }
}

/// Multiply-adds below which a product is not worth splitting over another thread (waking a
/// parked worker and collecting its band costs some microseconds).
const MIN_MACS_PER_THREAD: usize = 1 << 18;

/// Bands per thread in a split attention or activation quantization: smaller bands even out
/// threads that run at different speeds (another process on a core).
const TASKS_PER_THREAD: usize = 4;

/// Matrix products: each band is `1 / (GUIDED * threads)` of the work left ([`bands`]).
const GUIDED: usize = 2;

/// Multiply-adds below which a product's band is not cut smaller (a few microseconds of work:
/// a band's own cost, taking it and writing its results, stays small beside it).
const MIN_MACS_PER_BAND: usize = 1 << 15;

/// Logits below which selecting from a row is not worth splitting over another thread.
const MIN_LOGITS_PER_THREAD: usize = 1 << 15;

/// Multiply-adds of attention below which it is not split over another thread: lower than for
/// matrix products, because decoding's attention (one query row, a few heads, a short
/// context) runs alone between two products, with the other threads waiting for it.
const MIN_ATTN_MACS_PER_THREAD: usize = 1 << 16;

/// Values below which a pass over rows (a norm, a sum, RoPE, widening the cached keys) is not
/// split over another thread.
const MIN_VALUES_PER_TASK: usize = 1 << 13;

/// Multiply-adds of one task of a decoding step's attention (its scores, its weighted sums).
const MIN_ATTN_MACS_PER_TASK: usize = 1 << 14;

/// Probabilities of one task of a decoding step's softmax (an `exp` each: a few microseconds).
const MIN_SOFTMAX_PER_TASK: usize = 1 << 8;

/// Bytes of GGUF data read and repacked at a time while a packable weight loads.
const LOAD_PIECE: usize = 8 << 20;

/// Activations: row-major `[rows, cols]`.
#[derive(Clone, Debug)]
pub struct CpuAct {
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl CpuAct {
    pub fn new(rows: usize, cols: usize) -> Self {
        CpuAct { data: vec![0.0; rows * cols], rows, cols }
    }
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

#[derive(Default)]
pub struct CpuBackend {
    threads: usize,
    rope_table: Vec<(f32, f32)>,
    /// Scratch: one layer's visible keys and values as f32.
    kv_f32: (Vec<f32>, Vec<f32>),
}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend { threads: default_threads(), ..Default::default() }
    }
    /// Use up to `n` threads for matrix products (natively they start here; in wasm the
    /// package's JS starts them, and a plain build has only the calling thread).
    pub fn with_threads(n: usize) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        pool::ensure_threads(n);
        CpuBackend { threads: n.max(1), ..Default::default() }
    }
    /// Threads matrix products run on.
    pub fn threads(&self) -> usize {
        self.threads.min(pool::threads())
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn default_threads() -> usize {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    pool::ensure_threads(n);
    n
}
#[cfg(target_arch = "wasm32")]
fn default_threads() -> usize {
    pool::threads()
}

/// `f(first row, rows)` over `out`, rows of `cols` values, in runs of whole rows on the pool's
/// threads when there are enough values (long prompts; the cached keys of a long context): the
/// passes between two matrix products, which the other threads would otherwise wait for.
fn for_row_runs(threads: usize, out: &mut [f32], cols: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) -> Result<()> {
    for_row_runs_of(threads, out, cols, MIN_VALUES_PER_TASK, f)
}

/// [`for_row_runs`] with runs of at least `min_values` values, of any element type.
fn for_row_runs_of<T: Send>(threads: usize, out: &mut [T], cols: usize, min_values: usize, f: &(dyn Fn(usize, &mut [T]) + Sync)) -> Result<()> {
    let rows = out.len().checked_div(cols).unwrap_or(0);
    let n_tasks = (out.len() / min_values.max(1)).min(threads * TASKS_PER_THREAD).min(rows);
    if threads <= 1 || n_tasks <= 1 {
        f(0, out);
        return Ok(());
    }
    let per = rows.div_ceil(n_tasks);
    let runs: Vec<Mutex<&mut [T]>> = out.chunks_mut(per * cols).map(Mutex::new).collect();
    pool::run(runs.len(), &|i| f(i * per, &mut runs[i].lock().unwrap_or_else(|e| e.into_inner())))
        .map_err(|_| Error::internal("a pass over rows panicked on a worker thread"))
}

fn shape_err(what: &str, a: usize, b: usize) -> Error {
    Error::internal(format!("{what}: shape mismatch ({a} vs {b})"))
}

/// `gate = act(gate) * up`, element by element (the GLU of `Backend::glu` and of the fused
/// gate/up products).
fn glu_in_place(gate: &mut [f32], up: &[f32], gelu: bool) {
    if gelu {
        gelu_mul(gate, up);
    } else {
        silu_mul(gate, up);
    }
}

/// `y += bias` on every row.
fn add_bias(y: &mut CpuAct, bias: Option<&CpuWeight>) -> Result<()> {
    let Some(b) = bias else { return Ok(()) };
    let bv = b.values()?;
    if bv.len() != y.cols {
        return Err(shape_err("bias", bv.len(), y.cols));
    }
    for row in y.data.chunks_exact_mut(y.cols) {
        row.iter_mut().zip(bv).for_each(|(y, b)| *y += b);
    }
    Ok(())
}

/// One query row over an f16 cache (decoding), bit for bit [`ops::attend_head`] for every
/// head, split over the pool's threads (on one, [`attend_row_f16`]): first the scores, a run
/// of positions per task, each key row widened once (by the thread that reads it) for every
/// head of its group; then, after each head's softmax, the weighted sums, a run of value
/// columns of one kv head per task, each value widened once for the heads that read it and
/// summed over the positions in order. Nothing of the cache is copied, and no thread reads
/// what another one widened (for every token, widening a long context's cache took longer
/// than attending to it).
#[allow(clippy::too_many_arguments)]
fn attend_one_f16(threads: usize, keys: &[u16], values: &[u16], k_dim: usize, v_dim: usize, q: &[f32], p: AttnParams, first: usize, out: &mut [f32]) -> Result<()> {
    if threads <= 1 {
        attend_row_f16(keys, values, k_dim, v_dim, q, p, first, &mut RowScratch::default(), out);
        return Ok(());
    }
    let (hd, dv, n_head) = (p.head_dim, p.head_dim_v, p.n_head);
    let group = n_head / p.n_head_kv;
    let n_pos = p.pos0 + 1 - first;
    // llama.cpp multiplies Q with the f16 K cache in f16 precision.
    let qh: Vec<f32> = q.iter().map(|&x| ops::round_f16(x)).collect();
    let mut scores = vec![0.0f32; n_pos * n_head];
    for_row_runs_of(threads, &mut scores, n_head, MIN_ATTN_MACS_PER_TASK / hd.max(1), &|j0, rows| {
        score_positions(keys, k_dim, &qh, p, first + j0, rows);
    })?;
    // A head per task where there are enough positions (each takes an exp, which costs more
    // than the other steps' multiply-adds).
    let mut probs = vec![0.0f32; n_head * n_pos];
    for_row_runs_of(threads, &mut probs, n_pos, MIN_SOFTMAX_PER_TASK, &|h0, rows| probs_of(&scores, n_head, h0, rows))?;
    // Weighted sums by runs of one kv head's value columns: each task sums its columns for the
    // heads of the group, `acc[hh * n + c]`, each value widened once; copied into place after.
    // Runs of whole 8-column vectors where the head has them.
    let min_cols = (MIN_ATTN_MACS_PER_TASK / (n_pos * group).max(1)).max(1);
    let per = match threads {
        0 | 1 => dv.max(1),
        t => dv.div_ceil((t * TASKS_PER_THREAD).div_ceil(p.n_head_kv)).max(min_cols).next_multiple_of(8).min(dv.max(1)),
    };
    let runs: Vec<(usize, usize)> = (0..p.n_head_kv).flat_map(|g| (0..dv).step_by(per).map(move |c| (g, c))).collect();
    let sums: Vec<OnceLock<Vec<f32>>> = runs.iter().map(|_| OnceLock::new()).collect();
    let run = |i: usize| {
        let (g, col) = runs[i];
        let n = per.min(dv - col);
        let mut acc = vec![0.0f32; group * n];
        attn_sums_f16(&probs[g * group * n_pos..], n_pos, &values[first * v_dim + g * dv + col..], v_dim, n, &mut acc);
        let _ = sums[i].set(acc);
    };
    if threads <= 1 || runs.len() == 1 {
        (0..runs.len()).for_each(run);
    } else {
        pool::run(runs.len(), &run).map_err(|_| Error::internal("attention panicked on a worker thread"))?;
    }
    for (&(g, col), acc) in runs.iter().zip(sums) {
        let acc = acc.into_inner().ok_or_else(|| Error::internal("an attention task did not run"))?;
        let n = acc.len() / group.max(1);
        for (hh, a) in acc.chunks_exact(n.max(1)).enumerate() {
            let at = (g * group + hh) * dv + col;
            out[at..at + n].copy_from_slice(a);
        }
    }
    Ok(())
}

/// Attention scores of the cached positions `at..` (one a row of `rows`, `n_head` scores each,
/// position-major: `rows[j * n_head + h]`) for the query `qh` (rounded to f16: llama.cpp
/// multiplies Q with the f16 K cache in f16 precision), each key row widened once for every
/// head of its group.
fn score_positions(keys: &[u16], k_dim: usize, qh: &[f32], p: AttnParams, at: usize, rows: &mut [f32]) {
    let hd = p.head_dim;
    let group = p.n_head / p.n_head_kv;
    for (j, row) in rows.chunks_exact_mut(p.n_head).enumerate() {
        let at = (at + j) * k_dim;
        for (g, s) in row.chunks_exact_mut(group).enumerate() {
            attn_scores_f16(&qh[g * group * hd..], hd, &keys[at + g * hd..at + (g + 1) * hd], p.scale, s);
        }
    }
}

/// The probabilities of the heads `h0..` (one a row of `rows`, head-major) from position-major
/// `scores` of `n_head` heads: each head's softmax, rounded to f16 as llama.cpp multiplies
/// them with V.
fn probs_of(scores: &[f32], n_head: usize, h0: usize, rows: &mut [f32]) {
    let n_pos = scores.len() / n_head.max(1);
    for (h, ph) in (h0..).zip(rows.chunks_exact_mut(n_pos.max(1))) {
        ph.iter_mut().zip(scores.iter().skip(h).step_by(n_head)).for_each(|(d, &s)| *d = s);
        ops::softmax_by(ph, exp_sub);
        ph.iter_mut().for_each(|x| *x = ops::round_f16(*x));
    }
}

/// A thread's scratch for [`attend_row_f16`], reused from row to row.
#[derive(Default)]
struct RowScratch {
    qh: Vec<f32>,
    scores: Vec<f32>,
    probs: Vec<f32>,
}

/// One query row over an f16 cache on the calling thread: [`attend_one_f16`]'s steps with the
/// same kernels in the same order (so the same results, bit for bit), each kv head's weighted
/// sums straight into `out`.
#[allow(clippy::too_many_arguments)]
fn attend_row_f16(keys: &[u16], values: &[u16], k_dim: usize, v_dim: usize, q: &[f32], p: AttnParams, first: usize, s: &mut RowScratch, out: &mut [f32]) {
    let (dv, n_head) = (p.head_dim_v, p.n_head);
    let group = n_head / p.n_head_kv;
    let n_pos = p.pos0 + 1 - first;
    s.qh.clear();
    s.qh.extend(q.iter().map(|&x| ops::round_f16(x)));
    s.scores.resize(n_pos * n_head, 0.0);
    score_positions(keys, k_dim, &s.qh, p, first, &mut s.scores);
    s.probs.resize(n_head * n_pos, 0.0);
    probs_of(&s.scores, n_head, 0, &mut s.probs);
    for (g, o) in out.chunks_exact_mut(group * dv).enumerate().take(p.n_head_kv) {
        attn_sums_f16(&s.probs[g * group * n_pos..], n_pos, &values[first * v_dim + g * dv..], v_dim, dv, o);
    }
}

/// The checks every attention op shares: rows that fit the context, a layer of the cache, heads
/// that group evenly.
fn check_attn(kv: &CpuKv, n: usize, p: AttnParams) -> Result<()> {
    if p.pos0 + n > kv.n_ctx {
        return Err(Error::new(
            crate::ErrorCode::ContextOverflow,
            format!("position {} exceeds the context length {}", p.pos0 + n, kv.n_ctx),
        ));
    }
    if p.layer >= kv.k.len() || p.n_head_kv == 0 || p.n_head % p.n_head_kv != 0 || p.head_dim == 0 {
        return Err(shape_err("attention heads", p.n_head, p.n_head_kv));
    }
    if kv.ty == KvType::Q8_0 && (p.head_dim % KV_BLOCK != 0 || p.head_dim_v % KV_BLOCK != 0) {
        return Err(shape_err("q8_0 cache head size", p.head_dim, KV_BLOCK));
    }
    Ok(())
}

/// Activations quantized once for all rows of a weight, in the form its kernel reads.
enum LinearActs {
    Gguf(Vec<QuantizedActs>),
    Packed(Vec<PackedActs>),
}

/// Rows of activations below which quantizing them is not worth another thread.
const MIN_ACT_ROWS_PER_TASK: usize = 4;

impl LinearActs {
    /// What the activations for `w` depend on: the block type its kernel multiplies with, and
    /// whether the kernel is the packed one. Weights with equal keys share one quantization.
    fn key(w: &CpuWeight) -> (GgmlType, bool) {
        (w.ty.vec_dot_type(), matches!(w.data, WeightData::Packed(_)))
    }

    /// The rows of `x` quantized for `w`; rows are independent, so a long prompt's are split over
    /// the threads.
    fn new(w: &CpuWeight, x: &CpuAct, threads: usize) -> Result<Self> {
        let packed = matches!(w.data, WeightData::Packed(_));
        let n_tasks = if threads > 1 { (x.rows / MIN_ACT_ROWS_PER_TASK).min(threads * TASKS_PER_THREAD).max(1) } else { 1 };
        let per = x.rows.div_ceil(n_tasks).max(1);
        let n_tasks = x.rows.div_ceil(per);
        let chunks: Vec<OnceLock<Result<LinearActs>>> = (0..n_tasks).map(|_| OnceLock::new()).collect();
        let chunk = |i: usize| {
            let q = (i * per..((i + 1) * per).min(x.rows)).map(|t| quant::quantize_acts(w.ty, x.row(t)));
            let acts = if packed {
                q.map(|a| PackedActs::new(&a)).collect::<Result<_>>().map(LinearActs::Packed)
            } else {
                Ok(LinearActs::Gguf(q.collect()))
            };
            let _ = chunks[i].set(acts);
        };
        if n_tasks == 1 {
            chunk(0);
        } else {
            pool::run(n_tasks, &chunk).map_err(|_| Error::internal("quantizing activations panicked on a worker thread"))?;
        }
        let mut out = if packed { LinearActs::Packed(Vec::with_capacity(x.rows)) } else { LinearActs::Gguf(Vec::with_capacity(x.rows)) };
        for c in chunks {
            match (&mut out, c.into_inner().ok_or_else(|| Error::internal("an activation chunk did not run"))??) {
                (LinearActs::Packed(all), LinearActs::Packed(part)) => all.extend(part),
                (LinearActs::Gguf(all), LinearActs::Gguf(part)) => all.extend(part),
                _ => return Err(Error::internal("activation chunks of two layouts")),
            }
        }
        Ok(out)
    }
}

/// `band[t * n + i] = dot(w row r0 + i, x_t)` for the `n` weight rows starting at `r0`: one
/// matrix product over that band, so each weight row is read once for every token.
fn linear_band(w: &CpuWeight, acts: &LinearActs, r0: usize, n: usize, band: &mut [f32]) -> Result<()> {
    match (&w.data, acts) {
        (WeightData::Packed(p), LinearActs::Packed(a)) => p.matmul_band(a, r0, n, band),
        (WeightData::Gguf(b) | WeightData::F32(b, _), LinearActs::Gguf(a)) => {
            let rb = w.row_bytes();
            quant::matmul(w.ty, &b.as_slice()[r0 * rb..(r0 + n) * rb], n, w.n_cols, a, band)
        }
        _ => Err(Error::internal("activations quantized for another weight layout")),
    }
}

/// One output of [`CpuBackend::products`]: `x @ w^T`, or a gated FFN's `act(x @ gate^T) * (x @
/// up^T)` with the GLU taken by the task that computed the band.
#[derive(Clone, Copy)]
enum Product<'a> {
    Linear(&'a CpuWeight),
    Glu { gate: &'a CpuWeight, up: &'a CpuWeight, gelu: bool },
}

impl<'a> Product<'a> {
    fn weights(self) -> impl Iterator<Item = &'a CpuWeight> {
        let (a, b) = match self {
            Product::Linear(w) => (w, None),
            Product::Glu { gate, up, .. } => (gate, Some(up)),
        };
        std::iter::once(a).chain(b)
    }
    /// Output columns.
    fn rows(self) -> usize {
        match self {
            Product::Linear(w) | Product::Glu { gate: w, .. } => w.n_rows,
        }
    }
    /// Multiply-adds per input row.
    fn macs(self) -> usize {
        self.weights().map(|w| w.n_rows.saturating_mul(w.n_cols)).fold(0, usize::saturating_add)
    }
}

/// The bands `(product, first row, rows)` of one [`CpuBackend::products`] job, in the order the
/// threads take them ("guided" scheduling): each band is a share `1 / (GUIDED * threads)` of the
/// work still left after it (whole row groups, at least [`MIN_MACS_PER_BAND`]), so the first bands
/// are large (few per product) and the last ones small, and a thread that falls behind near the
/// end (another process or the page's own work took its core) holds the others up by one small
/// band, not by an equal share of the product. One band per product on one thread.
///
/// With `even` (one token: decoding) the job is cut in `threads` equal shares instead, each a
/// band, or a few where it spans products. One token's kernel streams a band's rows from
/// [`packed::STREAMS`] places at once, and every band start waits on memory for them: 16 bands of
/// a 2048 x 640 Q5_0 product read from DRAM took 1.26x one band's time on one thread, and guided
/// bands made each thread's share of a decoded token's layer products 1.3-1.5x slower than on
/// one thread (1.05-1.15x in equal shares). Decoding waits on memory more than on a thread that
/// falls behind: in Chromium, 2 threads, Gemma 3 decoded 6% faster in equal shares, and as fast
/// with another process busy a fifth of the time (prefill, bound by arithmetic, was 9% slower
/// in equal shares there, so it keeps guided bands).
fn bands(rows_of: &[usize], macs: &[usize], total: usize, threads: usize, even: bool) -> Vec<(usize, usize, usize)> {
    let mut bands = Vec::new();
    let mut left = total;
    let share = total.div_ceil(threads).max(1); // with `even`
    for (i, &rows) in rows_of.iter().enumerate() {
        if threads == 1 {
            if rows > 0 {
                bands.push((i, 0, rows));
            }
            continue;
        }
        let per_row = (macs[i] / rows.max(1)).max(1);
        let mut r0 = 0;
        while r0 < rows {
            let n = if even {
                // What is left of the current share (it may end inside the next product).
                let done = total - left;
                let to_end = (done / share + 1) * share - done;
                (to_end.div_ceil(per_row)).next_multiple_of(packed::ROWS).min(rows - r0)
            } else {
                let want = (left / (GUIDED * threads)).max(MIN_MACS_PER_BAND);
                (want / per_row).next_multiple_of(packed::ROWS).max(packed::ROWS).min(rows - r0)
            };
            bands.push((i, r0, n));
            r0 += n;
            left = left.saturating_sub(n * per_row);
        }
    }
    bands
}

/// The plain steps the CPU composes its `add_norm` and `attn_prep` of (the GPU runs each of those
/// in one pass); tests hold the GPU's fused passes to them.
impl CpuBackend {
    /// The matrix products `ps` of one input, as one job on the pool's threads: every product is
    /// cut into bands of whole row groups (the packed kernels' unit), large first and small last
    /// ([`bands`]), and the threads take bands in order until none are left, so one wake-up and one join serve q, k and v (or
    /// gate, up and their GLU) where each used to need its own. Each row's dot products are the
    /// same whatever the bands: the results do not depend on the thread count.
    fn products(&self, x: &CpuAct, ps: &[Product<'_>]) -> Result<Vec<CpuAct>> {
        for p in ps {
            if let Some(w) = p.weights().find(|w| w.n_cols != x.cols || w.n_rows != p.rows()) {
                return Err(shape_err("linear", x.cols, w.n_cols));
            }
        }
        let threads = self.threads();
        // Activations quantized once per form the weights' kernels read.
        let mut keys = Vec::new();
        let mut acts = Vec::new();
        let mut acts_of = Vec::new(); // per product: the acts of its first and last weight
        for p in ps {
            let mut ix = [0; 2];
            for (j, w) in p.weights().enumerate() {
                let key = LinearActs::key(w);
                ix[j] = match keys.iter().position(|k| *k == key) {
                    Some(i) => i,
                    None => {
                        keys.push(key);
                        acts.push(LinearActs::new(w, x, threads)?);
                        acts.len() - 1
                    }
                };
                ix[1] = ix[j];
            }
            acts_of.push(ix);
        }
        let macs: Vec<usize> = ps.iter().map(|p| x.rows.saturating_mul(p.macs())).collect();
        let total = macs.iter().fold(0usize, |a, &m| a.saturating_add(m));
        let threads = threads.min(total / MIN_MACS_PER_THREAD).max(1);
        let rows: Vec<usize> = ps.iter().map(|p| p.rows()).collect();
        let bands = bands(&rows, &macs, total, threads, x.rows == 1);
        // Band `b` into `y` (`[rows, n]`).
        let compute = |b: usize, y: &mut [f32]| -> Result<()> {
            let (i, r0, n) = bands[b];
            let [a0, a1] = acts_of[i];
            match ps[i] {
                Product::Linear(w) => linear_band(w, &acts[a0], r0, n, y),
                Product::Glu { gate, up, gelu } => {
                    let mut u = vec![0.0f32; x.rows * n];
                    linear_band(gate, &acts[a0], r0, n, y)?;
                    linear_band(up, &acts[a1], r0, n, &mut u)?;
                    glu_in_place(y, &u, gelu);
                    Ok(())
                }
            }
        };
        let run = |n_bands: usize, task: &(dyn Fn(usize) + Sync)| -> Result<()> {
            if threads == 1 {
                (0..n_bands).for_each(task);
                Ok(())
            } else {
                pool::run(n_bands, task).map_err(|_| Error::internal("a matrix product panicked on a worker thread"))
            }
        };
        if x.rows == 1 {
            let mut out: Vec<CpuAct> = ps.iter().map(|p| CpuAct::new(1, p.rows())).collect();
            // One token (decoding): each band is a piece of its output, written in place.
            let mut rest: Vec<&mut [f32]> = out.iter_mut().map(|o| o.data.as_mut_slice()).collect();
            let mut pieces = Vec::with_capacity(bands.len());
            for &(i, _, n) in &bands {
                let (piece, tail) = std::mem::take(&mut rest[i]).split_at_mut(n);
                rest[i] = tail;
                pieces.push(Mutex::new(piece));
            }
            let results: Vec<OnceLock<Result<()>>> = bands.iter().map(|_| OnceLock::new()).collect();
            run(bands.len(), &|b| {
                let mut y = pieces[b].lock().unwrap_or_else(|e| e.into_inner());
                let _ = results[b].set(compute(b, &mut y));
            })?;
            for r in results {
                r.into_inner().ok_or_else(|| Error::internal("a matrix product band did not run"))??;
            }
            return Ok(out);
        }
        // Several tokens: a band is `[rows, n]`, strided in the output; each task fills its own
        // buffer, copied into place after.
        let mut out: Vec<CpuAct> = ps.iter().map(|p| CpuAct { data: Vec::new(), rows: x.rows, cols: p.rows() }).collect();
        let results: Vec<OnceLock<Result<Vec<f32>>>> = bands.iter().map(|_| OnceLock::new()).collect();
        run(bands.len(), &|b| {
            let mut y = vec![0.0f32; x.rows * bands[b].2];
            let _ = results[b].set(compute(b, &mut y).map(|_| y));
        })?;
        for ((i, r0, n), y) in bands.into_iter().zip(results) {
            let y = y.into_inner().ok_or_else(|| Error::internal("a matrix product band did not run"))??;
            let o = &mut out[i];
            if n == o.cols {
                o.data = y; // the whole product in one band: already in place
                continue;
            }
            if o.data.is_empty() {
                o.data = vec![0.0; x.rows * o.cols];
            }
            for t in 0..x.rows {
                o.data[t * o.cols + r0..t * o.cols + r0 + n].copy_from_slice(&y[t * n..(t + 1) * n]);
            }
        }
        // A product of no rows had no band.
        out.iter_mut().filter(|o| o.data.is_empty()).for_each(|o| o.data = vec![0.0; o.rows * o.cols]);
        Ok(out)
    }

    pub fn rope(&mut self, x: &mut CpuAct, p: RopeParams, freq_factors: Option<&CpuWeight>) -> Result<()> {
        let ff = freq_factors.map(|w| w.values()).transpose()?;
        if x.cols % p.head_dim != 0 || ff.is_some_and(|f| f.len() < p.n_rot / 2) {
            return Err(shape_err("rope", x.cols, p.head_dim));
        }
        let cols = x.cols;
        for_row_runs(self.threads(), &mut x.data, cols, &|r0, rows| {
            let mut table = Vec::with_capacity(p.n_rot / 2);
            for (r, row) in rows.chunks_exact_mut(cols).enumerate() {
                ops::rope_table((p.pos0 + r0 + r) as i64, p.n_rot, p.base, p.freq_scale, ff, &mut table);
                for head in row.chunks_exact_mut(p.head_dim) {
                    ops::rope_head(head, &table, p.neox);
                }
            }
        })
    }

    pub fn scale(&mut self, x: &mut CpuAct, s: f32) -> Result<()> {
        x.data.iter_mut().for_each(|v| *v *= s);
        Ok(())
    }

    pub fn store_kv(&mut self, kv: &mut CpuKv, k: &CpuAct, v: &CpuAct, p: AttnParams) -> Result<()> {
        let n = k.rows;
        check_attn(kv, n, p)?;
        if k.cols != kv.k_dim || v.cols != kv.v_dim || v.rows != n {
            return Err(shape_err("store_kv", k.cols, kv.k_dim));
        }
        let threads = self.threads();
        kv.k[p.layer].store_rows(threads, p.pos0 * kv.k_dim, &k.data, kv.k_dim)?;
        kv.v[p.layer].store_rows(threads, p.pos0 * kv.v_dim, &v.data, kv.v_dim)
    }

    pub fn add(&mut self, a: &CpuAct, b: &CpuAct) -> Result<CpuAct> {
        if a.data.len() != b.data.len() {
            return Err(shape_err("add", a.data.len(), b.data.len()));
        }
        let mut out = CpuAct::new(a.rows, a.cols);
        let cols = a.cols;
        for_row_runs(self.threads(), &mut out.data, cols, &|r0, rows| {
            let (a, b) = (&a.data[r0 * cols..], &b.data[r0 * cols..]);
            rows.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (x, y))| *o = x + y);
        })?;
        Ok(out)
    }

    /// `rms_norm(x, w) + res` (post-norm then residual, Gemma).
    pub fn rms_norm_add(&mut self, x: &CpuAct, w: &CpuWeight, eps: f32, res: &CpuAct) -> Result<CpuAct> {
        let n = self.rms_norm(x, w, eps)?;
        self.add(&n, res)
    }
}

impl Backend for CpuBackend {
    fn kv_shift(&mut self, kv: &mut CpuKv, s: KvShift, rope: &[RopeParams], freq_factors: Option<&CpuWeight>) -> Result<()> {
        s.check(kv.shape(), rope)?;
        let ff = freq_factors.map(|w| w.values()).transpose()?;
        if ff.is_some_and(|f| rope.iter().any(|r| f.len() < r.n_rot / 2)) {
            return Err(Error::internal("rope freq factors shorter than n_rot / 2"));
        }
        // Each moved key row widened to f32, turned back, and stored again in the cache's type
        // (llama.cpp's shift of a quantized cache: cast to f32, rope, copy back).
        let kd = kv.k_dim;
        let mut row = Vec::with_capacity(kd);
        for (l, r) in rope.iter().enumerate() {
            ops::rope_table(-(s.discard as i64), r.n_rot, r.base, r.freq_scale, ff, &mut self.rope_table);
            for dst in s.keep..s.n - s.discard {
                let src = dst + s.discard;
                row.clear();
                kv.k[l].widen(src * kd..(src + 1) * kd, &mut row);
                for head in row.chunks_exact_mut(r.head_dim) {
                    ops::rope_head(head, &self.rope_table, r.neox);
                }
                kv.k[l].store_rows(1, dst * kd, &row, kd)?;
            }
            kv.move_values(l, s.keep + s.discard, s.n, s.keep);
        }
        Ok(())
    }
    fn token_tile(&self) -> usize {
        crate::quant::packed::TOKEN_TILE
    }
    async fn read_kv(&mut self, kv: &CpuKv, layer: usize, n: usize) -> Result<Vec<u8>> {
        let (k, v) = crate::backend::kv_span(kv.shape(), layer, n, None)?;
        Ok(kv.read(layer, n, k + v))
    }

    fn write_kv(&mut self, kv: &mut CpuKv, layer: usize, n: usize, bytes: &[u8]) -> Result<()> {
        let (k, _) = crate::backend::kv_span(kv.shape(), layer, n, Some(bytes.len()))?;
        kv.write(layer, bytes, k);
        Ok(())
    }

    fn add_norm(&mut self, t: &CpuAct, post: Option<&CpuWeight>, res: &CpuAct, w: &CpuWeight, eps: f32) -> Result<(CpuAct, CpuAct)> {
        let x = match post {
            Some(p) => self.rms_norm_add(t, p, eps, res)?,
            None => self.add(t, res)?,
        };
        let h = self.rms_norm(&x, w, eps)?;
        Ok((x, h))
    }

    fn attn_prep(&mut self, kv: &mut CpuKv, q: CpuAct, k: CpuAct, v: &CpuAct, prep: QkPrep<'_, CpuWeight>, p: AttnParams) -> Result<CpuAct> {
        let (mut q, mut k) = (q, k);
        if let Some(w) = prep.q_norm {
            q = self.rms_norm(&q, w, prep.eps)?;
        }
        if let Some(w) = prep.k_norm {
            k = self.rms_norm(&k, w, prep.eps)?;
        }
        self.rope(&mut q, prep.rope, prep.freq_factors)?;
        self.rope(&mut k, prep.rope, prep.freq_factors)?;
        if let Some(s) = prep.q_scale {
            self.scale(&mut q, s)?;
        }
        self.store_kv(kv, &k, v, p)?;
        Ok(q)
    }

    type Weight = CpuWeight;
    type Act = CpuAct;
    type Kv = CpuKv;

    fn name(&self) -> &'static str {
        "cpu"
    }

    /// Packable weights are read in pieces of about [`LOAD_PIECE`] bytes (whole 4-row groups) and
    /// repacked piece by piece, so a large tensor (Gemma's 178 MB embedding) is never in memory
    /// twice; the rest through [`Self::weight`].
    async fn load_weight<S: TensorSource>(&mut self, info: &TensorInfo, src: &S, range: Range<u64>) -> Result<CpuWeight> {
        if !packed::is_packable(info.ty) {
            let bytes = src.read(range).await?;
            return self.weight(info, bytes);
        }
        let rb = super::checked_row_bytes(info, range.end - range.start)? as u64;
        let (n_rows, n_cols) = (info.n_rows(), info.n_cols());
        let mut w = PackedWeight::zeroed(info.ty, n_rows, n_cols)?;
        let rows_per_piece = ((LOAD_PIECE as u64 / rb.max(1)) as usize / packed::ROWS).max(1) * packed::ROWS;
        let mut r0 = 0;
        while r0 < n_rows {
            let n = rows_per_piece.min(n_rows - r0);
            let piece = src.read(range.start + r0 as u64 * rb..range.start + (r0 + n) as u64 * rb).await?;
            w.fill_rows(r0, piece.as_slice())?;
            r0 += n;
        }
        Ok(CpuWeight { ty: info.ty, n_rows, n_cols, data: WeightData::Packed(w) })
    }

    fn weight(&mut self, info: &TensorInfo, bytes: TensorBytes) -> Result<CpuWeight> {
        let (n_rows, n_cols) = (info.n_rows(), info.n_cols());
        super::checked_row_bytes(info, bytes.range.len() as u64)?;
        let data = if info.ty == GgmlType::F32 {
            let v = bytes.as_slice().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            WeightData::F32(bytes, v)
        } else if packed::is_packable(info.ty) {
            // The GGUF bytes are dropped here: with a per-tensor source, memory does not double.
            WeightData::Packed(PackedWeight::new(info.ty, bytes.as_slice(), n_rows, n_cols)?)
        } else {
            WeightData::Gguf(bytes)
        };
        Ok(CpuWeight { ty: info.ty, n_rows, n_cols, data })
    }

    /// Allocated fallibly ([`CpuKv::new`]); [`crate::engine::Engine`] checks the size against
    /// [`Backend::kv_budget`] first.
    fn kv_cache(&mut self, shape: KvShape) -> Result<CpuKv> {
        CpuKv::new(shape)
    }

    fn get_rows(&mut self, w: &CpuWeight, ids: &[u32], scale: f32) -> Result<CpuAct> {
        crate::logits::check_token_ids(ids, w.n_rows)?;
        let mut out = CpuAct::new(ids.len(), w.n_cols);
        let (rb, cols) = (w.row_bytes(), w.n_cols);
        let failed = OnceLock::new();
        // A prompt's rows on the pool's threads.
        for_row_runs(self.threads(), &mut out.data, cols, &|r0, rows| {
            for (&id, row) in ids[r0..].iter().zip(rows.chunks_exact_mut(cols)) {
                let id = id as usize;
                let done = match &w.data {
                    WeightData::Packed(p) => p.dequantize_row(id, row),
                    WeightData::Gguf(b) | WeightData::F32(b, _) => quant::dequantize_row(w.ty, &b.as_slice()[id * rb..(id + 1) * rb], row),
                };
                if let Err(e) = done {
                    let _ = failed.set(e);
                    return;
                }
                if scale != 1.0 {
                    row.iter_mut().for_each(|v| *v *= scale);
                }
            }
        })?;
        match failed.into_inner() {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn rms_norm(&mut self, x: &CpuAct, w: &CpuWeight, eps: f32) -> Result<CpuAct> {
        let wv = w.values()?;
        if x.cols % wv.len() != 0 {
            return Err(shape_err("rms_norm", x.cols, wv.len()));
        }
        let mut out = CpuAct::new(x.rows, x.cols);
        let cols = x.cols;
        for_row_runs(self.threads(), &mut out.data, cols, &|r0, rows| {
            ops::rms_norm(&x.data[r0 * cols..r0 * cols + rows.len()], wv, eps, rows);
        })?;
        Ok(out)
    }

    fn linear(&mut self, x: &CpuAct, w: &CpuWeight, bias: Option<&CpuWeight>) -> Result<CpuAct> {
        let mut out = self.products(x, &[Product::Linear(w)])?;
        let mut y = out.pop().ok_or_else(|| Error::internal("a matrix product went missing"))?;
        add_bias(&mut y, bias)?;
        Ok(y)
    }

    fn linear_many(&mut self, x: &CpuAct, ws: &[(&CpuWeight, Option<&CpuWeight>)]) -> Result<Vec<CpuAct>> {
        let ps: Vec<Product<'_>> = ws.iter().map(|&(w, _)| Product::Linear(w)).collect();
        let mut out = self.products(x, &ps)?;
        for (y, &(_, b)) in out.iter_mut().zip(ws) {
            add_bias(y, b)?;
        }
        Ok(out)
    }

    fn linear_gate_up(&mut self, x: &CpuAct, gate: &CpuWeight, up: &CpuWeight, gelu: bool) -> Result<CpuAct> {
        let mut out = self.products(x, &[Product::Glu { gate, up, gelu }])?;
        out.pop().ok_or_else(|| Error::internal("a matrix product went missing"))
    }

    fn split_cols(&mut self, x: &CpuAct, widths: &[usize]) -> Result<Vec<CpuAct>> {
        if widths.iter().sum::<usize>() != x.cols {
            return Err(shape_err("split_cols", widths.iter().sum(), x.cols));
        }
        let mut outs: Vec<CpuAct> = widths.iter().map(|&w| CpuAct::new(x.rows, w)).collect();
        for r in 0..x.rows {
            let mut c = 0;
            for o in outs.iter_mut() {
                let w = o.cols;
                o.data[r * w..(r + 1) * w].copy_from_slice(&x.data[r * x.cols + c..r * x.cols + c + w]);
                c += w;
            }
        }
        Ok(outs)
    }




    fn attend(&mut self, kv: &CpuKv, q: &CpuAct, p: AttnParams) -> Result<CpuAct> {
        let n = q.rows;
        check_attn(kv, n, p)?;
        let q_dim = p.n_head.checked_mul(p.head_dim);
        let o_dim = p.n_head.checked_mul(p.head_dim_v);
        if Some(q.cols) != q_dim || o_dim.is_none() {
            return Err(shape_err("attention", q.cols, q_dim.unwrap_or(usize::MAX)));
        }
        let group = p.n_head / p.n_head_kv;
        let mut out = CpuAct::new(n, o_dim.unwrap_or(0));
        // The visible cache rows as f32, converted once for every head and query row of this call
        // (exact: f16 -> f32 loses nothing). A q8_0 cache's keys stay blocks: q is quantized as
        // llama.cpp's flash attention quantizes it and multiplied in integers.
        let first = p.window.map_or(0, |w| (p.pos0 + 1).saturating_sub(w));
        let last = p.pos0 + n;
        if let (1, Some(keys), Some(values)) = (n, kv.k[p.layer].f16(), kv.v[p.layer].f16()) {
            attend_one_f16(self.threads(), keys, values, kv.k_dim, kv.v_dim, q.row(0), p, first, &mut out.data)?;
            return Ok(out);
        }
        let threads = self.threads();
        // Widened in runs of rows on the pool's threads (decoding at a long context converts the
        // whole visible cache of every layer for every token); the scratch only grows, so it is
        // not cleared for each call.
        let widen = |rows: &KvRows, dim: usize, scratch: &mut Vec<f32>| -> Result<()> {
            let len = (last - first) * dim;
            if scratch.len() < len {
                scratch.resize(len, 0.0);
            }
            for_row_runs(threads, &mut scratch[..len], dim, &|r0, out| {
                let at = (first + r0) * dim;
                rows.widen_into(at..at + out.len(), out);
            })
        };
        let kq = kv.k[p.layer].blocks().map(|b| &b[first * kv.k_dim / KV_BLOCK..last * kv.k_dim / KV_BLOCK]);
        if kq.is_none() {
            widen(&kv.k[p.layer], kv.k_dim, &mut self.kv_f32.0)?;
        }
        widen(&kv.v[p.layer], kv.v_dim, &mut self.kv_f32.1)?;
        let (kf, vf) = (&self.kv_f32.0[..], &self.kv_f32.1[..]);
        // One item per (query row, head), in the order of their outputs in `out`; split over the
        // pool's threads in contiguous runs of items when the product is large (long prompts).
        let items = n * p.n_head;
        let macs = items.saturating_mul(last - first).saturating_mul(p.head_dim + p.head_dim_v);
        let n_tasks = match threads.min(macs / MIN_ATTN_MACS_PER_THREAD) {
            0 | 1 => 1,
            t => (t * TASKS_PER_THREAD).min(items),
        };
        let per = items.div_ceil(n_tasks).max(1);
        let dv = p.head_dim_v;
        let chunks: Vec<Mutex<&mut [f32]>> = out.data.chunks_mut(per * dv).map(Mutex::new).collect();
        pool::run(chunks.len(), &|t| {
            // Later query rows see more positions (causal): the threads take the heaviest runs
            // first, so the last ones taken are the lightest (the last run alone was a quarter
            // of a 128-token prompt's attention, which the other thread waited out).
            let t = chunks.len() - 1 - t;
            let mut o = chunks[t].lock().unwrap_or_else(|e| e.into_inner());
            let mut qh = vec![0.0f32; p.head_dim];
            let mut qb = vec![quant::BlockQ8_0::default(); p.head_dim / KV_BLOCK];
            let mut scores = Vec::new();
            for (i, o) in o.chunks_mut(dv).enumerate() {
                let (r, h) = ((t * per + i) / p.n_head, (t * per + i) % p.n_head);
                let pos = p.pos0 + r;
                let start = p.window.map_or(0, |w| (pos + 1).saturating_sub(w)) - first;
                let g = h / group;
                let qs = &q.row(r)[h * p.head_dim..(h + 1) * p.head_dim];
                if let Some(kq) = kq {
                    let kb = kv.k_dim / KV_BLOCK;
                    kv::quantize_q8_0(qs, &mut qb);
                    ops::attend_head_q8_0(
                        &qb,
                        &kq[start * kb..],
                        &vf[start * kv.v_dim..],
                        kb,
                        kv.v_dim,
                        g * p.head_dim / KV_BLOCK,
                        g * dv,
                        pos + 1 - first - start,
                        p.scale,
                        &mut scores,
                        o,
                    );
                    continue;
                }
                // llama.cpp multiplies Q with the f16 K cache in f16 precision.
                for (d, s) in qh.iter_mut().zip(qs) {
                    *d = ops::round_f16(*s);
                }
                ops::attend_head(
                    &qh,
                    &kf[start * kv.k_dim..],
                    &vf[start * kv.v_dim..],
                    kv.k_dim,
                    kv.v_dim,
                    g * p.head_dim,
                    g * dv,
                    pos + 1 - first - start,
                    p.scale,
                    &mut scores,
                    o,
                );
            }
        })
        .map_err(|_| Error::internal("attention panicked on a worker thread"))?;
        Ok(out)
    }

    fn glu(&mut self, gate: &CpuAct, up: &CpuAct, gelu: bool) -> Result<CpuAct> {
        if gate.data.len() != up.data.len() {
            return Err(shape_err("glu", gate.cols, up.cols));
        }
        let mut data = gate.data.clone();
        glu_in_place(&mut data, &up.data, gelu);
        Ok(CpuAct { data, rows: gate.rows, cols: gate.cols })
    }


    fn rows_from(&mut self, x: &CpuAct, start: usize) -> Result<CpuAct> {
        if start >= x.rows {
            return Err(shape_err("rows_from", start, x.rows));
        }
        Ok(CpuAct { data: x.data[start * x.cols..].to_vec(), rows: x.rows - start, cols: x.cols })
    }

    fn softcap(&mut self, x: &mut CpuAct, cap: f32) -> Result<()> {
        x.data.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        Ok(())
    }

    async fn read(&mut self, x: &CpuAct) -> Result<Vec<f32>> {
        Ok(x.data.clone())
    }

    /// Selected from the logits in place: no copy of a 262k-entry row per token. A long row's
    /// top k (greedy decoding's argmax too) is taken in pieces on the pool's threads.
    async fn read_logits(&mut self, x: &CpuAct, what: Readback) -> Result<ReadOut> {
        let k = match what {
            Readback::Argmax => 1,
            Readback::TopK(k) if k <= logits::SMALL_K => k,
            _ => return Ok(what.select_from(&x.data)),
        };
        let n = x.data.len();
        let pieces = self.threads().min(n / MIN_LOGITS_PER_THREAD).max(1);
        if pieces == 1 {
            return Ok(what.select_from(&x.data));
        }
        let per = n.div_ceil(pieces);
        let tops: Vec<OnceLock<Vec<(u32, f32)>>> = (0..pieces).map(|_| OnceLock::new()).collect();
        pool::run(pieces, &|i| {
            let start = i * per;
            let mut top = logits::top_k(&x.data[start..(start + per).min(n)], k);
            top.iter_mut().for_each(|c| c.0 += start as u32);
            let _ = tops[i].set(top);
        })
        .map_err(|_| Error::internal("a logits selection panicked on a worker thread"))?;
        Ok(ReadOut::Candidates(logits::top_k_of_pieces(tops.into_iter().map(|t| t.into_inner().unwrap_or_default()), k)))
    }

    async fn read_logits_rows(&mut self, x: &CpuAct, n_vocab: usize, what: Readback) -> Result<Vec<ReadOut>> {
        Ok(what.select_rows(&x.data, n_vocab))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guided bands cover every row of every product once, in order, each starting on a row
    /// group, for row counts that do and do not fill their last group; they shrink towards the end.
    #[test]
    fn bands_cover_every_row_once() {
        for (threads, even) in [1, 2, 3, 8].into_iter().flat_map(|t| [(t, false), (t, true)]) {
            for rows in [vec![1], vec![6, 7], vec![262_144], vec![1024, 256, 256], vec![3, 0, 4096, 5], vec![2048, 2048]] {
                let macs: Vec<usize> = rows.iter().map(|r| r * 640).collect();
                let total = macs.iter().sum();
                let b = bands(&rows, &macs, total, threads, even);
                for (i, &n) in rows.iter().enumerate() {
                    let mine: Vec<_> = b.iter().filter(|x| x.0 == i).collect();
                    let mut next = 0;
                    for &&(_, r0, len) in &mine {
                        assert!(r0 == next && r0 % packed::ROWS == 0 && len > 0, "{threads} threads, {rows:?}: {mine:?}");
                        next += len;
                    }
                    assert_eq!(next, n, "{threads} threads, {rows:?}: {mine:?}");
                    if threads == 1 {
                        assert!(mine.len() <= 1);
                    }
                }
                if even {
                    // Equal shares: at most one band per share and product.
                    assert!(b.len() <= threads + rows.len() - 1, "{threads} threads, {rows:?}: {b:?}");
                    if threads > 1 && rows == [262_144] {
                        let share = 262_144 / threads;
                        assert!(b.len() == threads && b.iter().all(|x| x.2.abs_diff(share) <= packed::ROWS * threads), "{threads} threads: {b:?}");
                    }
                    if threads == 2 && rows == [2048, 2048] {
                        assert_eq!(b, [(0, 0, 2048), (1, 0, 2048)]);
                    }
                } else if threads > 1 && rows == [262_144] {
                    let (first, last) = (b[0].2, b[b.len() - 1].2);
                    assert!(first > 16 * last && b.len() < 16 * threads, "{threads} threads: {} bands, {first} .. {last} rows", b.len());
                }
            }
        }
    }

    /// A long row's selection taken in pieces on threads equals the one-pass selection: ties
    /// across piece boundaries (to the lower id), NaNs and infinities, k from 1 to `SMALL_K`.
    #[test]
    fn split_logits_selection_equals_one_pass() {
        let n = 100_003;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut data: Vec<f32> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 1000) as f32 / 100.0
            })
            .collect();
        // The best value three times, on both sides of every piece boundary of 2 and 3 threads.
        for i in [n / 3 + 1, n / 2 + 1, 7] {
            data[i] = 50.0;
        }
        data[n - 1] = f32::INFINITY;
        data[n / 2 - 1] = f32::NAN;
        data[10] = -f32::NAN;
        for threads in [1, 2, 3] {
            let mut b = CpuBackend::with_threads(threads);
            let x = CpuAct { data: data.clone(), rows: 1, cols: n };
            for what in [Readback::Argmax, Readback::TopK(1), Readback::TopK(7), Readback::TopK(logits::SMALL_K)] {
                let bits = |r: ReadOut| match r {
                    ReadOut::Candidates(c) => c.into_iter().map(|(i, l)| (i, l.to_bits())).collect::<Vec<_>>(),
                    ReadOut::Full(_) => panic!("a full row for {what:?}"),
                };
                let got = crate::block_on(b.read_logits(&x, what)).unwrap();
                assert_eq!(bits(got), bits(what.select_from(&data)), "{threads} threads, {what:?}");
            }
        }
    }

    /// The f16 cache's vector kernels (widening; decoding's attention) equal their scalar forms in
    /// `ops` bit for bit:
    /// 1 to 9 heads (chunks of 4 and the rest), row lengths with and without a tail past the
    /// last 8 values, and f16 values of every kind (zeros of both signs, subnormals, the largest
    /// finite, infinities, NaN; a NaN result is any NaN: which one an operation on NaNs or
    /// infinities yields depends on the order of its operands, which the compiler may swap).
    #[cfg(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64"))]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn attention_kernels_match_their_scalar_forms() {
        use crate::quant::packed::arch;
        let mut seed = 0x2545_f491u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let special = [0x0000u16, 0x8000, 0x0001, 0x83ff, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e01, 0x3c00];
        let bits = |v: &[f32]| v.iter().map(|x| if x.is_nan() { f32::NAN.to_bits() } else { x.to_bits() }).collect::<Vec<_>>();
        for hd in [3usize, 8, 13, 64, 256] {
            for heads in 1..=9 {
                let n_pos = 1 + next() as usize % 40;
                let stride = hd + 5;
                let f16 = |i: usize, r: u32| if i % 17 == 3 { special[r as usize % special.len()] } else { quant::f32_to_f16((r as f32 / u32::MAX as f32) * 6.0 - 3.0) };
                let kv: Vec<u16> = (0..n_pos * stride).map(|i| f16(i, next())).collect();
                let q: Vec<f32> = (0..heads * hd).map(|_| ops::round_f16((next() as f32 / u32::MAX as f32) * 2.0 - 1.0)).collect();
                let (mut got, mut want) = (vec![f32::NAN; kv.len()], vec![0.0f32; kv.len()]);
                arch::widen_f16(&kv, &mut got);
                ops::widen_f16(&kv, &mut want);
                // Widening is exact, NaN payloads included.
                assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "widening {} values", kv.len());
                let (mut got, mut want) = (vec![0.0f32; heads], vec![0.0f32; heads]);
                arch::attn_scores_f16(&q, hd, &kv[..hd], 0.3, &mut got);
                ops::attn_scores_f16(&q, hd, &kv[..hd], 0.3, &mut want);
                assert_eq!(bits(&got), bits(&want), "scores: {heads} heads of {hd}");
                let probs: Vec<f32> = (0..heads * n_pos).map(|_| ops::round_f16(next() as f32 / u32::MAX as f32)).collect();
                let (mut got, mut want) = (vec![f32::NAN; heads * hd], vec![f32::NAN; heads * hd]);
                arch::attn_sums_f16(&probs, n_pos, &kv, stride, hd, &mut got);
                ops::attn_sums_f16(&probs, n_pos, &kv, stride, hd, &mut want);
                assert_eq!(bits(&got), bits(&want), "sums: {heads} heads of {hd}, {n_pos} positions");
            }
        }
    }

    /// A softmax's exponentials and SwiGLU in vector form ([`arch::exp_sub`], [`arch::silu_mul`])
    /// equal their scalar forms bit for bit, for lengths with and without a tail past the last 4
    /// values and every kind of input: ordinary ones, both sides of the underflow and overflow
    /// bounds, zeros, infinities, NaN.
    #[cfg(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64"))]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn softmax_and_swiglu_match_their_scalar_forms() {
        use crate::quant::packed::arch;
        use crate::quant::scalar::exp_consts::{HI, LO};
        let mut rng = crate::quant::random::Rng::new(0x9e37_79b9);
        let below = |x: f32| f32::from_bits(x.to_bits() + 1);
        let special = [0.0f32, -0.0, LO, below(LO), HI, 88.7, 1e9, -1e9, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e-30, -1e-30];
        let bits = |v: &[f32]| v.iter().map(|x| if x.is_nan() { f32::NAN.to_bits() } else { x.to_bits() }).collect::<Vec<_>>();
        for len in [1usize, 3, 4, 7, 64, 257, 1000] {
            for max in [0.0f32, 3.5, -20.0] {
                let x: Vec<f32> = (0..len)
                    .map(|i| if i % 11 == 5 { special[rng.below(special.len())] } else { rng.uniform() * 100.0 - 20.0 })
                    .collect();
                let (mut got, mut want) = (x.clone(), x.clone());
                arch::exp_sub(&mut got, max);
                crate::quant::scalar::exp_sub(&mut want, max);
                assert_eq!(bits(&got), bits(&want), "{len} values less {max}");
                let up: Vec<f32> = x.iter().rev().map(|v| v * 0.5 + max).collect();
                let (mut got, mut want) = (x.clone(), x.clone());
                arch::silu_mul(&mut got, &up);
                crate::quant::scalar::silu_mul(&mut want, &up);
                assert_eq!(bits(&got), bits(&want), "SwiGLU of {len} values");
            }
        }
    }

    /// GeGLU in vector form ([`arch::gelu_mul`]: the inputs' f16 bits computed 4 at a time) equals
    /// its scalar form bit for bit on every input that rounds differently: each f16 value's own f32
    /// value and, between each two neighbouring f16 values, the midpoint (a tie, to even) and the
    /// f32 values just below and above it, normal and subnormal, both signs; and the bounds (±10,
    /// just inside), zeros, infinities, NaN.
    #[cfg(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64"))]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn geglu_matches_its_scalar_form_at_every_f16_rounding_boundary() {
        use crate::quant::packed::arch;
        let step = |x: f32, d: i32| f32::from_bits((x.to_bits() as i32 + d) as u32);
        let mut x = vec![0.0f32, -0.0, 10.0, -10.0, step(10.0, -1), step(-10.0, -1), 1e6, -1e6, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
        for h in 0..0x7bffu16 {
            let (a, b) = (quant::f16_to_f32(h), quant::f16_to_f32(h + 1));
            if b >= 10.0 {
                break;
            }
            let mid = (a + b) / 2.0;
            for v in [a, mid, step(mid, -1), step(mid, 1)] {
                x.extend([v, -v]);
            }
        }
        let bits = |v: &[f32]| v.iter().map(|x| if x.is_nan() { f32::NAN.to_bits() } else { x.to_bits() }).collect::<Vec<_>>();
        // Every value through each of the 4 lanes and the scalar tail.
        for shift in 0..5 {
            let g: Vec<f32> = x[shift..].to_vec();
            let up: Vec<f32> = (0..g.len()).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
            let (mut got, mut want) = (g.clone(), g.clone());
            arch::gelu_mul(&mut got, &up);
            crate::quant::scalar::gelu_mul(&mut want, &up);
            assert_eq!(bits(&got), bits(&want), "GeGLU of {} values from the {shift}th", g.len());
        }
    }

    /// Decoding's attention ([`attend_one_f16`]: scores by runs of positions, sums by runs of
    /// value columns; on one thread [`attend_row_f16`]) equals [`ops::attend_head`] over the
    /// widened cache bit for bit, on one thread and split over the pool's, with grouped heads, a
    /// window, and contexts short and long enough to split.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn decoding_attention_matches_attend_head_bit_for_bit() {
        #[cfg(not(target_arch = "wasm32"))]
        pool::ensure_threads(3);
        let mut seed = 0x9e37_79b9u32;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed as f32 / u32::MAX as f32) * 4.0 - 2.0
        };
        for (n_head, n_head_kv, hd, pos0, window) in [(4, 1, 64, 0, None), (4, 2, 32, 700, None), (6, 3, 16, 300, Some(100)), (2, 2, 48, 1500, None)] {
            let (k_dim, v_dim) = (n_head_kv * hd, n_head_kv * hd);
            let n_ctx = pos0 + 1;
            let keys: Vec<u16> = (0..n_ctx * k_dim).map(|_| quant::f32_to_f16(rnd())).collect();
            let values: Vec<u16> = (0..n_ctx * v_dim).map(|_| quant::f32_to_f16(rnd())).collect();
            let q: Vec<f32> = (0..n_head * hd).map(|_| rnd()).collect();
            let p = AttnParams { layer: 0, pos0, n_head, n_head_kv, head_dim: hd, head_dim_v: hd, window, scale: 0.125 };
            let first = window.map_or(0, |w: usize| (pos0 + 1).saturating_sub(w));
            let kf: Vec<f32> = keys[first * k_dim..].iter().map(|&h| quant::f16_to_f32(h)).collect();
            let vf: Vec<f32> = values[first * v_dim..].iter().map(|&h| quant::f16_to_f32(h)).collect();
            let mut want = vec![0.0f32; n_head * hd];
            let mut scores = Vec::new();
            for (h, o) in want.chunks_exact_mut(hd).enumerate() {
                let g = h / (n_head / n_head_kv);
                let qh: Vec<f32> = q[h * hd..(h + 1) * hd].iter().map(|&x| ops::round_f16(x)).collect();
                ops::attend_head(&qh, &kf, &vf, k_dim, v_dim, g * hd, g * hd, pos0 + 1 - first, p.scale, &mut scores, o);
            }
            for threads in [1, 2, 3] {
                let mut got = vec![f32::NAN; n_head * hd];
                attend_one_f16(threads, &keys, &values, k_dim, v_dim, &q, p, first, &mut got).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{n_head}/{n_head_kv} heads, position {pos0}, {threads} threads");
            }
        }
    }
}
