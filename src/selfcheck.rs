//! The GPU's self-check, run before a model runs on an adapter: every op variant the model uses,
//! on small deterministic inputs, on the GPU and by the CPU reference, compared by NMSE with the
//! test suite's tolerances ([`TOLERANCE`], which `tests/gpu_ops.rs` uses too). Some GPU, driver
//! and browser combinations compute wrong results; a GPU that fails runs none of the model:
//! [`crate::load`] falls back to the CPU and says why. The verdict is remembered per adapter,
//! driver and model shape for the life of the module (a page or a Worker), so it runs once.
//!
//! No model weights are involved: weights of each format the model uses are random rows, and the
//! shapes are the model's (head sizes, rotary width, norms) at a few rows, so the check takes
//! milliseconds on a real GPU. Then [`check_layer`] multiplies one real layer of the model, its
//! own weights at full size, against an exact reference: what goes wrong only at the model's own
//! sizes (large dispatch grids, long rows) passes the small shapes but not this.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backend::gpu::{ops, GpuAct, GpuBackend, GpuWeight};
use crate::backend::cpu::{CpuAct, CpuBackend};
use crate::backend::{AttnParams, Backend, KvType, QkPrep, RopeParams, TensorBytes, TensorSource};
use crate::gguf::{Gguf, TensorInfo};
use crate::engine::now_ms;
use crate::model::{ModelConfig, RopeStyle};
use crate::quant::random::{random_row, Rng};
use crate::quant::{self, GgmlType};

/// The one tolerance table (NMSE of the GPU against the CPU reference). Why each value:
/// - exact-math ops (lookup, copies, norm, soft cap, gelu's f16 table) differ from the CPU
///   only by f32 rounding order and exp ulps: 1e-10 .. 1e-8;
/// - rope (qk_prep's rotation): WGSL's sin and cos need only be within 2^-11 of the truth on [-pi, pi],
///   and adapters differ (measured 2.7e-9 on SwiftShader, below 1e-9 on lavapipe); a wrong
///   rotation gives about 1: 1e-6;
/// - `linear` vs the f32 product of the dequantized weights: f32 summation order only: 1e-9;
/// - `linear` vs the CPU op is checked per output against the quantized-dot error budget of
///   `quant::random` (the CPU quantizes activations to Q8 as llama.cpp does; the GPU does not);
/// - except decode of Q8_0 weights, where the GPU quantizes the activation row to Q8 too
///   (`quantize_q8`) and sums integers as the CPU does: vs the CPU op, f32 rounding of the
///   per-block scale products and their order only: 1e-10 (vs the exact product: the budget);
/// - `quantize_q8` vs the CPU's `quantize_acts` (dequantized values): a quant may differ by one
///   where `x / d` rounds differently in the last bit: 1e-12;
/// - attention: f16-rounded probabilities can round differently when the two softmax sums
///   differ in the last bit; past 256 positions the GPU normalizes each chunk's probabilities
///   before rounding them (measured up to 1.1e-7): 1e-6;
/// - `attention_q8` (over a q8_0 cache): the query, keys and values are quantized to 8 bits on
///   each backend, and a value the two compute apart in its last bits (RoPE's sin and cos above)
///   now and then lands across a rounding boundary and moves by a whole quant step (amax / 127 of
///   its block) instead of an ulp: measured 1.4e-6 on SwiftShader (SmolLM2's heads), below 1e-12
///   on lavapipe; a broken kernel is near 1: 1e-4;
/// - `add_norm` vs the CPU's add / rms_norm_add then rms_norm: as rms_norm: 1e-10;
/// - `linear_glu` vs the GPU's two products and `glu`: the same arithmetic: 1e-12.
pub const TOLERANCE: &[(&str, f64)] = &[
    ("get_rows", 1e-12),
    ("rms_norm", 1e-10),
    ("add_norm", 1e-10),
    ("linear_glu", 1e-12),
    ("rope", 1e-6),
    ("softcap", 1e-10),
    ("glu_gelu", 1e-8),
    ("glu_silu", 1e-10),
    ("split_cols", 1e-14),
    ("rows_from", 1e-14),
    ("linear_f32ref", 1e-9),
    ("linear_split", 1e-9),
    ("linear_q8acts", 1e-10),
    ("quantize_q8", 1e-12),
    ("attention", 1e-6),
    ("attention_q8", 1e-4),
];

/// The tolerance named `name` in [`TOLERANCE`].
pub fn tolerance(name: &str) -> f64 {
    TOLERANCE.iter().find(|(n, _)| *n == name).map(|t| t.1).unwrap_or_else(|| panic!("no tolerance for {name}"))
}

/// NMSE of `got` against `want` (non-finite values count as a failure: infinity).
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() || got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        num += (g as f64 - w as f64).powi(2);
        den += (w as f64).powi(2);
    }
    if den > 0.0 {
        num / den
    } else {
        num
    }
}

/// What a model asks of the GPU: the formats of its products and its embedding table, and its
/// config (head sizes, rotary style, norms, activation).
pub struct Needs {
    pub product_types: Vec<GgmlType>,
    pub embedding_type: GgmlType,
    pub config: ModelConfig,
    pub rope_freqs: bool,
}

impl Needs {
    fn key(&self) -> String {
        let c = &self.config;
        format!(
            "{:?} {:?} h{}/{} d{}/{} rot{} {:?} qk{} post{} q{:?} {:?} soft{:?} ff{} embd{}",
            self.product_types, self.embedding_type, c.n_head, c.n_head_kv, c.head_dim, c.head_dim_v, c.n_rot,
            c.rope_style, c.qk_norm, c.post_norms, c.q_scale, c.activation, c.final_logit_softcap, self.rope_freqs, c.n_embd
        )
    }
}

/// Ok(milliseconds) or the failure.
type Verdict = std::result::Result<f64, String>;

/// Verdicts so far: (adapter and driver, what was checked) -> [`Verdict`].
static VERDICTS: Mutex<Option<HashMap<(String, String), Verdict>>> = Mutex::new(None);

/// The verdict remembered for `key` (none when a fault is injected: those runs always run).
fn recall(key: &(String, String), inject_fault: bool) -> Option<Verdict> {
    if inject_fault {
        return None;
    }
    VERDICTS.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).get(key).cloned()
}

/// Remember `verdict` for `key`, unless a fault was injected or the device failed during the run
/// (lost, out of memory: that says nothing of its results; the next device is checked afresh).
fn remember(gpu: &GpuBackend, key: (String, String), verdict: &Verdict, inject_fault: bool) {
    if !inject_fault && gpu.ctx.check().is_ok() {
        VERDICTS.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).insert(key, verdict.clone());
    }
}

/// Run the self-check for `needs` on `gpu` (or recall its verdict): Ok(what passed, e.g. "passed
/// (12 ms)"), or the first op that failed and by how much. `inject_fault` corrupts one GPU result
/// (tests of the fallback path).
pub async fn check(gpu: &mut GpuBackend, needs: &Needs, inject_fault: bool) -> std::result::Result<String, String> {
    let key = (gpu.ctx.identity(), needs.key());
    if let Some(v) = recall(&key, inject_fault) {
        return v.map(|ms| format!("passed on this adapter before ({ms:.0} ms)"));
    }
    let t0 = now_ms();
    let mut c = Checker { gpu, cpu: CpuBackend::with_threads(1), rng: Rng::new(0x5e1f), fault: inject_fault };
    let verdict = match c.run(needs).await {
        Ok(()) => Ok(now_ms() - t0),
        Err(e) => Err(e),
    };
    // Its test buffers go now; cached bind groups would keep them.
    c.gpu.clear_bind_groups();
    remember(c.gpu, key, &verdict, inject_fault);
    verdict.map(|ms| format!("passed ({ms:.0} ms)"))
}

/// Largest tensor [`check_layer`] multiplies at full size (its bytes pass through wasm memory
/// once more); bigger ones keep the small shapes' verdict.
const FULL_SIZE_MAX_BYTES: u64 = 64 << 20;
/// Output rows [`check_layer`] compares per product, spread over the whole tensor.
const FULL_SIZE_ROWS: usize = 256;

/// The products of one real layer of the model (layer `n_layer / 2`: every two-dimensional
/// tensor up to [`FULL_SIZE_MAX_BYTES`]), with its own weights read from `src`, at full size on the
/// GPU: one token (Q8 activations where the decoder uses them) and five (prefill), against an exact
/// f64 product of the dequantized weights (and of the activations as the decoder quantizes them)
/// on [`FULL_SIZE_ROWS`] rows spread over the output. Ok(what passed), or the tensor that failed
/// and by how much. Remembered per adapter and layer shape like [`check`]'s verdict.
/// `inject_fault` corrupts one GPU result (a stand-in for a bug only the full size shows).
pub async fn check_layer<S: TensorSource>(gpu: &mut GpuBackend, gguf: &Gguf, src: &S, inject_fault: bool) -> std::result::Result<String, String> {
    let layer = gguf.tensors.iter().filter_map(|t| t.name.strip_prefix("blk.")?.split('.').next()?.parse::<usize>().ok()).max().map(|n| n / 2);
    let Some(layer) = layer else { return Ok("no layer to check at full size".into()) };
    let prefix = format!("blk.{layer}.");
    let tensors: Vec<&TensorInfo> =
        gguf.tensors.iter().filter(|t| t.name.starts_with(&prefix) && t.dims.len() == 2 && t.n_bytes <= FULL_SIZE_MAX_BYTES).collect();
    let shape: Vec<String> = tensors.iter().map(|t| format!("{}:{:?}:{}", t.name, t.dims, t.ty)).collect();
    let key = (gpu.ctx.identity(), format!("layer {}", shape.join(" ")));
    if let Some(v) = recall(&key, inject_fault) {
        return v.map(|ms| format!("layer {layer} at full size passed before ({ms:.0} ms)"));
    }
    let t0 = now_ms();
    let mut c = Checker { gpu, cpu: CpuBackend::with_threads(1), rng: Rng::new(0x1a7e), fault: inject_fault };
    let mut verdict = Ok(());
    for t in &tensors {
        verdict = c.full_size_product(gguf, src, t).await;
        if verdict.is_err() {
            break;
        }
    }
    c.gpu.clear_bind_groups();
    let verdict = verdict.map(|()| now_ms() - t0);
    remember(c.gpu, key, &verdict, inject_fault);
    verdict.map(|ms| format!("layer {layer} at full size passed ({} products, {ms:.0} ms)", tensors.len()))
}

struct Checker<'a> {
    gpu: &'a mut GpuBackend,
    cpu: CpuBackend,
    rng: Rng,
    fault: bool,
}

type R = std::result::Result<(), String>;

fn tensor(ty: GgmlType, rows: usize, cols: usize, bytes: Vec<u8>) -> (TensorInfo, TensorBytes) {
    let n = bytes.len();
    let info = TensorInfo { name: "self-check".into(), dims: vec![cols as u64, rows as u64], ty, offset: 0, n_bytes: n as u64 };
    (info, TensorBytes::new(Arc::new(bytes), 0..n))
}

fn internal(e: crate::error::Error) -> String {
    e.message
}

impl Checker<'_> {
    async fn read(&mut self, a: &GpuAct) -> std::result::Result<Vec<f32>, String> {
        let mut v = self.gpu.read_async(a).await.map_err(internal)?;
        if std::mem::take(&mut self.fault) {
            v[0] += 1.0;
        }
        Ok(v)
    }

    fn compare(what: &str, tol_name: &str, got: &[f32], want: &[f32]) -> R {
        let e = nmse(got, want);
        let t = tolerance(tol_name);
        if e <= t {
            Ok(())
        } else {
            Err(format!("{what}: NMSE {e:.2e} against the CPU, above {t:.0e}"))
        }
    }

    fn weights(&mut self, ty: GgmlType, rows: usize, cols: usize) -> std::result::Result<(TensorInfo, TensorBytes, Vec<f32>), String> {
        let bytes: Vec<u8> = (0..rows).flat_map(|_| random_row(ty, cols, &mut self.rng)).collect();
        let (info, tb) = tensor(ty, rows, cols, bytes);
        // The exact reference: the dequantized rows.
        let row_bytes = ty.row_bytes(cols).ok_or("row size")?;
        let mut deq = vec![0f32; rows * cols];
        for r in 0..rows {
            quant::dequantize_row(ty, &tb.as_slice()[r * row_bytes..(r + 1) * row_bytes], &mut deq[r * cols..(r + 1) * cols]).map_err(internal)?;
        }
        Ok((info, tb, deq))
    }

    fn f32_weight(&mut self, v: &[f32]) -> std::result::Result<(CpuW, GpuWeight), String> {
        let (info, tb) = tensor(GgmlType::F32, 1, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect());
        Ok((self.cpu.weight(&info, tb.clone()).map_err(internal)?, self.gpu.weight(&info, tb).map_err(internal)?))
    }

    fn acts(&mut self, v: &[f32], rows: usize, cols: usize) -> std::result::Result<(CpuAct, GpuAct), String> {
        let mut c = CpuAct::new(rows, cols);
        c.data.copy_from_slice(v);
        Ok((c, self.gpu.upload_act(v, rows, cols).map_err(internal)?))
    }

    async fn run(&mut self, needs: &Needs) -> R {
        let cfg = &needs.config;
        let mut types = needs.product_types.clone();
        types.sort_by_key(|t| t.name());
        types.dedup();
        for &ty in &types {
            self.products(ty).await?;
        }
        self.embedding(needs.embedding_type).await?;
        self.block_end(cfg, &types).await?;
        self.attention(cfg, needs.rope_freqs).await?;
        self.selection(cfg).await
    }

    /// One tensor of [`check_layer`].
    async fn full_size_product<S: TensorSource>(&mut self, gguf: &Gguf, src: &S, t: &TensorInfo) -> R {
        let bytes = src.read(t.file_range(gguf.data_offset)).await.map_err(internal)?;
        let (rows, cols) = (t.n_rows(), t.n_cols());
        let row_bytes = t.ty.row_bytes(cols).ok_or("row size")?;
        let n_picks = FULL_SIZE_ROWS.min(rows);
        // Rows spread over the tensor, the first and the last among them.
        let picks: Vec<usize> = (0..n_picks).map(|i| if n_picks == 1 { 0 } else { i * (rows - 1) / (n_picks - 1) }).collect();
        let mut deq = vec![0f32; n_picks * cols];
        for (i, &r) in picks.iter().enumerate() {
            quant::dequantize_row(t.ty, &bytes.as_slice()[r * row_bytes..(r + 1) * row_bytes], &mut deq[i * cols..(i + 1) * cols]).map_err(internal)?;
        }
        let w = self.gpu.weight(t, bytes).map_err(internal)?;
        let q8 = ops::has_dot_q8(t.ty) && self.gpu.q8_acts && cols % 32 == 0;
        for n in [1, 5] {
            let x = self.rng.acts(n * cols, 1.0);
            // What the product sees: the decoder's Q8 activations, dequantized, or x itself.
            let seen = if n == 1 && q8 {
                let q = quant::quantize_acts(t.ty, &x);
                let mut v = vec![0f32; cols];
                quant::dequantize_row(t.ty.vec_dot_type(), q.as_bytes(), &mut v).map_err(internal)?;
                v
            } else {
                x.clone()
            };
            let gx = self.gpu.upload_act(&x, n, cols).map_err(internal)?;
            let y = self.gpu.linear(&gx, &w, None).map_err(internal)?;
            let all = self.read(&y).await?;
            let mut got = Vec::with_capacity(n * n_picks);
            let mut want = Vec::with_capacity(n * n_picks);
            for tok in 0..n {
                let xt = &seen[tok * cols..(tok + 1) * cols];
                for (i, &r) in picks.iter().enumerate() {
                    got.push(all[tok * rows + r]);
                    want.push(deq[i * cols..(i + 1) * cols].iter().zip(xt).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() as f32);
                }
            }
            let tol = if n == 1 && q8 { "linear_q8acts" } else { "linear_f32ref" };
            Self::compare(&format!("{} ({rows} x {cols} {}), {n} rows, at full size", t.name, t.ty), tol, &got, &want)?;
        }
        Ok(())
    }

    /// Decode and prefill products of `ty`, and the joined forms the decoder uses (q/k/v split
    /// outputs, gate/up with the GLU), against the f32 product of the dequantized weights (or,
    /// for decode with Q8 activations, the CPU's own product, which quantizes them the same way).
    async fn products(&mut self, ty: GgmlType) -> R {
        let k = 256;
        let (rows_a, rows_b) = (64, 32);
        let (ia, ta, da) = self.weights(ty, rows_a, k)?;
        let (ib, tb, db) = self.weights(ty, rows_b, k)?;
        let (ca, ga) = (self.cpu.weight(&ia, ta.clone()).map_err(internal)?, self.gpu.weight(&ia, ta).map_err(internal)?);
        let (cb, gb) = (self.cpu.weight(&ib, tb.clone()).map_err(internal)?, self.gpu.weight(&ib, tb).map_err(internal)?);
        let exact = |w: &[f32], rows: usize, x: &[f32], n: usize| -> Vec<f32> {
            let mut y = vec![0f32; n * rows];
            for t in 0..n {
                for r in 0..rows {
                    y[t * rows + r] = w[r * k..(r + 1) * k].iter().zip(&x[t * k..(t + 1) * k]).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() as f32;
                }
            }
            y
        };
        let q8 = ops::has_dot_q8(ty) && self.gpu.q8_acts;
        for n in [1, 5] {
            let x = self.rng.acts(n * k, 1.0);
            let (cx, gx) = self.acts(&x, n, k)?;
            let (want_a, want_b, tol) = if n == 1 && q8 {
                let a = self.cpu.linear(&cx, &ca, None).map_err(internal)?.data;
                let b = self.cpu.linear(&cx, &cb, None).map_err(internal)?.data;
                (a, b, "linear_q8acts")
            } else {
                (exact(&da, rows_a, &x, n), exact(&db, rows_b, &x, n), "linear_f32ref")
            };
            let y = self.gpu.linear(&gx, &ga, None).map_err(internal)?;
            Self::compare(&format!("{ty} product, {n} rows"), tol, &self.read(&y).await?, &want_a)?;
            if let Some(joined) = self.gpu.concat_rows(&[&ga, &gb]).map_err(internal)? {
                let parts = self.gpu.linear_split(&gx, &joined, &[rows_a, rows_b]).map_err(internal)?;
                Self::compare(&format!("{ty} joined product, first output"), tol, &self.read(&parts[0]).await?, &want_a)?;
                Self::compare(&format!("{ty} joined product, second output"), tol, &self.read(&parts[1]).await?, &want_b)?;
            }
        }
        // Gate and up (both of `rows_b` rows) with each activation.
        let (ic, tc, dc) = self.weights(ty, rows_b, k)?;
        let (cc, gc) = (self.cpu.weight(&ic, tc.clone()).map_err(internal)?, self.gpu.weight(&ic, tc).map_err(internal)?);
        if let Some(joined) = self.gpu.concat_rows(&[&gb, &gc]).map_err(internal)? {
            let x = self.rng.acts(k, 1.0);
            let (cx, gx) = self.acts(&x, 1, k)?;
            let (gate, up, tol) = if q8 {
                (self.cpu.linear(&cx, &cb, None).map_err(internal)?, self.cpu.linear(&cx, &cc, None).map_err(internal)?, "linear_q8acts")
            } else {
                let mk = |v: Vec<f32>| CpuAct { data: v, rows: 1, cols: rows_b };
                (mk(exact(&db, rows_b, &x, 1)), mk(exact(&dc, rows_b, &x, 1)), "linear_f32ref")
            };
            for gelu in [false, true] {
                let want = self.cpu.glu(&gate, &up, gelu).map_err(internal)?;
                let got = self.gpu.linear_glu(&gx, &joined, rows_b, gelu).map_err(internal)?;
                Self::compare(&format!("{ty} gate/up product with the GLU"), tol, &self.read(&got).await?, &want.data)?;
            }
        }
        Ok(())
    }

    async fn embedding(&mut self, ty: GgmlType) -> R {
        let cols = if ty.block_size() == 1 { 64 } else { 2 * ty.block_size() };
        let (info, tb, _) = self.weights(ty, 16, cols)?;
        let (cw, gw) = (self.cpu.weight(&info, tb.clone()).map_err(internal)?, self.gpu.weight(&info, tb).map_err(internal)?);
        let ids = [15u32, 0, 7];
        let want = self.cpu.get_rows(&cw, &ids, 1.5).map_err(internal)?;
        let got = self.gpu.get_rows(&gw, &ids, 1.5).map_err(internal)?;
        Self::compare(&format!("{ty} embedding lookup"), "get_rows", &self.read(&got).await?, &want.data)
    }

    /// `add_norm` at the model's width, with its post-norm if it has one; where the model's
    /// products take Q8 activations, the Q8 blocks it leaves feed a product.
    async fn block_end(&mut self, cfg: &ModelConfig, types: &[GgmlType]) -> R {
        let n = cfg.n_embd;
        let (t, r) = (self.rng.acts(n, 2.0), self.rng.acts(n, 1.0));
        let (wv, pv) = (self.rng.acts(n, 1.0), self.rng.acts(n, 1.0));
        let ((cw, gw), (cp, gp)) = (self.f32_weight(&wv)?, self.f32_weight(&pv)?);
        let ((ct, gt), (cr, gr)) = (self.acts(&t, 1, n)?, self.acts(&r, 1, n)?);
        let post = cfg.post_norms;
        let (wx, wh) = self.cpu.add_norm(&ct, post.then_some(&cp), &cr, &cw, cfg.norm_eps).map_err(internal)?;
        let (gx, gh) = self.gpu.add_norm(&gt, post.then_some(&gp), &gr, &gw, cfg.norm_eps).map_err(internal)?;
        Self::compare("end of block: residual", "add_norm", &self.read(&gx).await?, &wx.data)?;
        Self::compare("end of block: normed output", "add_norm", &self.read(&gh).await?, &wh.data)?;
        if let Some(&ty) = types.iter().find(|&&t| ops::has_dot_q8(t)).filter(|_| self.gpu.q8_acts && n % 32 == 0) {
            let (info, tb, _) = self.weights(ty, 32, n)?;
            let (cq, gq) = (self.cpu.weight(&info, tb.clone()).map_err(internal)?, self.gpu.weight(&info, tb).map_err(internal)?);
            let (_, gh) = self.gpu.add_norm(&gt, post.then_some(&gp), &gr, &gw, cfg.norm_eps).map_err(internal)?;
            let got = self.gpu.linear(&gh, &gq, None).map_err(internal)?;
            let want = self.cpu.linear(&wh, &cq, None).map_err(internal)?;
            Self::compare(&format!("{ty} product of a block's normed output"), "linear_q8acts", &self.read(&got).await?, &want.data)?;
        }
        Ok(())
    }

    /// q/k preparation (norms, RoPE, scale, the cache write) and attention with the model's head
    /// shapes: a prefill and a decode step, and a context past one chunk of the split-K pass; over
    /// an f16 cache and, where the heads are whole 32-value blocks, a q8_0 one (`kvCache`).
    async fn attention(&mut self, cfg: &ModelConfig, rope_freqs: bool) -> R {
        let (hd, hdv) = (cfg.head_dim, cfg.head_dim_v);
        let (qn, kn) = (self.rng.acts(hd, 1.0), self.rng.acts(hd, 1.0));
        let ((cqn, gqn), (ckn, gkn)) = (self.f32_weight(&qn)?, self.f32_weight(&kn)?);
        let ffv: Vec<f32> = (0..cfg.n_rot / 2).map(|i| 1.0 + (i % 3) as f32).collect();
        let (cff, gff) = self.f32_weight(&ffv)?;
        // (heads, kv heads, context, steps): the model's grouping; one head past 256 positions.
        let cases = [(cfg.n_head, cfg.n_head_kv, 16, vec![3, 1]), (1, 1, 272, vec![260, 1])];
        let q8 = cfg.kv_shape(1).with_type(KvType::Q8_0).check_heads(hd, hdv).is_ok() && hd <= crate::backend::gpu::ops::MAX_Q8_HEAD_DIM as usize;
        let types = [KvType::F16, KvType::Q8_0].into_iter().take(if q8 { 2 } else { 1 });
        for (ty, (nh, nkv, n_ctx, steps)) in types.flat_map(|t| cases.clone().into_iter().map(move |c| (t, c))) {
            let mut c = cfg.clone();
            (c.n_head, c.n_head_kv) = (nh, nkv);
            let mut ckv = self.cpu.kv_cache(c.kv_shape(n_ctx).with_type(ty)).map_err(internal)?;
            let mut gkv = self.gpu.kv_cache(c.kv_shape(n_ctx).with_type(ty)).map_err(internal)?;
            let mut pos = 0;
            for n in steps {
                let q = self.rng.acts(n * nh * hd, 2.0);
                let k = self.rng.acts(n * nkv * hd, 2.0);
                let v = self.rng.acts(n * nkv * hdv, 1.0);
                let ((cq, gq), (ck, gk), (cv, gv)) = (self.acts(&q, n, nh * hd)?, self.acts(&k, n, nkv * hd)?, self.acts(&v, n, nkv * hdv)?);
                let rope = RopeParams {
                    pos0: pos,
                    head_dim: hd,
                    n_rot: c.n_rot,
                    base: c.rope_base_for(0),
                    freq_scale: c.rope_freq_scale,
                    neox: c.rope_style == RopeStyle::Neox,
                };
                let ap = AttnParams { layer: 0, pos0: pos, n_head: nh, n_head_kv: nkv, head_dim: hd, head_dim_v: hdv, window: c.window(0), scale: c.kq_scale };
                let qk = c.qk_norm;
                let cprep = QkPrep { q_norm: qk.then_some(&cqn), k_norm: qk.then_some(&ckn), eps: c.norm_eps, rope, freq_factors: rope_freqs.then_some(&cff), q_scale: c.q_scale };
                let gprep = QkPrep { q_norm: qk.then_some(&gqn), k_norm: qk.then_some(&gkn), eps: c.norm_eps, rope, freq_factors: rope_freqs.then_some(&gff), q_scale: c.q_scale };
                let wq = self.cpu.attn_prep(&mut ckv, cq, ck, &cv, cprep, ap).map_err(internal)?;
                let gq = self.gpu.attn_prep(&mut gkv, gq, gk, &gv, gprep, ap).map_err(internal)?;
                Self::compare(&format!("q/k preparation, {nh}/{nkv} heads at position {pos}"), "rope", &self.read(&gq).await?, &wq.data)?;
                let want = self.cpu.attend(&ckv, &wq, ap).map_err(internal)?;
                let got = self.gpu.attend(&gkv, &gq, ap).map_err(internal)?;
                let tol = if ty == KvType::Q8_0 { "attention_q8" } else { "attention" };
                Self::compare(&format!("attention, {nh}/{nkv} heads at position {pos}, {} cache", ty.name()), tol, &self.read(&got).await?, &want.data)?;
                pos += n;
            }
        }
        Ok(())
    }

    /// The logits' last steps: the soft cap where the model has one, and the device-side argmax
    /// and top-k the sampler reads.
    async fn selection(&mut self, cfg: &ModelConfig) -> R {
        let n = 3000;
        let x = self.rng.acts(n, 8.0);
        let (mut cx, mut gx) = self.acts(&x, 1, n)?;
        if let Some(cap) = cfg.final_logit_softcap {
            self.cpu.softcap(&mut cx, cap).map_err(internal)?;
            self.gpu.softcap(&mut gx, cap).map_err(internal)?;
            Self::compare("logit soft cap", "softcap", &self.read(&gx).await?, &cx.data)?;
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| cx.data[b].total_cmp(&cx.data[a]).then(a.cmp(&b)));
        let (id, _) = self.gpu.argmax_async(&gx).await.map_err(internal)?;
        let top = self.gpu.top_k_async(&gx, 8).await.map_err(internal)?;
        let top: Vec<usize> = top.iter().map(|t| t.0 as usize).collect();
        // Ties are broken the same way on both sides; a near tie may differ in f32 ulps only.
        if id as usize != order[0] && (cx.data[id as usize] - cx.data[order[0]]).abs() > 1e-6 {
            return Err(format!("argmax: token {id} on the GPU, {} on the CPU", order[0]));
        }
        if top.len() != 8 || top.iter().zip(&order).any(|(&g, &c)| g != c && (cx.data[g] - cx.data[c]).abs() > 1e-6) {
            return Err(format!("top-k: {top:?} on the GPU, {:?} on the CPU", &order[..8]));
        }
        Ok(())
    }
}

type CpuW = <CpuBackend as Backend>::Weight;
