//! CPU reference ops on f32 slices. Numerics follow ggml's CPU backend where it matters for
//! matching llama.cpp token for token: sums of squares and softmax denominators in f64, RoPE angles
//! by repeated f32 multiplication, keys/values rounded to f16 as llama.cpp's default f16 KV cache does.

use crate::quant::scalar::vec_dot_q8_0_q8_0;
use crate::quant::{f16_to_f32, BlockQ8_0};

/// RMSNorm of each `w.len()`-wide chunk of `x`, times `w` (ggml `rms_norm` then `mul`).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    debug_assert_eq!(x.len() % n, 0);
    for (xs, ys) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let sum: f64 = xs.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / n as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((y, &v), &g) in ys.iter_mut().zip(xs).zip(w) {
            *y = v * scale * g;
        }
    }
}

/// The RoPE angle table for one position: `(cos, sin)` for each rotated pair.
/// theta_i = pos * freq_scale * base^(-2i/n_rot) / freq_factor_i, with the power computed by repeated
/// f32 multiplication as ggml does (`ggml_rope_cache_init`).
/// `pos` may be negative: a context shift turns cached keys back ([`crate::backend::Backend::kv_shift`]).
pub fn rope_table(pos: i64, n_rot: usize, base: f32, freq_scale: f32, freq_factors: Option<&[f32]>, out: &mut Vec<(f32, f32)>) {
    out.clear();
    let theta_scale = crate::backend::rope_theta_scale(base, n_rot);
    let mut theta = pos as f32;
    for i in 0..n_rot / 2 {
        let ff = freq_factors.map_or(1.0, |f| f[i]);
        let t = freq_scale * (theta / ff);
        out.push((t.cos(), t.sin()));
        theta *= theta_scale;
    }
}

/// Rotate one head in place. Normal style pairs (2i, 2i+1); neox pairs (i, i + n_rot/2).
pub fn rope_head(head: &mut [f32], table: &[(f32, f32)], neox: bool) {
    let half = table.len();
    for (i, &(c, s)) in table.iter().enumerate() {
        let (a, b) = if neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
        let (x0, x1) = (head[a], head[b]);
        head[a] = x0 * c - x1 * s;
        head[b] = x0 * s + x1 * c;
    }
}

/// Round to the nearest f16 and back (what storing in an f16 KV cache does to a value).
#[inline]
pub fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// The nearest f16, as its bit pattern (a KV cache entry).
#[inline]
pub fn to_f16_bits(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// `q . k` in 8 f32 partial sums (as ggml's SIMD `ggml_vec_dot_f16` accumulates in vector
/// lanes), so the compiler vectorizes it.
#[inline]
pub fn dot_f32(q: &[f32], k: &[f32]) -> f32 {
    dot_lanes(q, k, |x| x)
}

/// [`dot_f32`] of `q` and `k` widened element by element by `f` as it is read (the same sums).
#[inline(always)]
fn dot_lanes<T: Copy>(q: &[f32], k: &[T], f: impl Fn(T) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let (qc, kc) = (q.chunks_exact(8), k.chunks_exact(8));
    let (qr, kr) = (qc.remainder(), kc.remainder());
    for (q, k) in qc.zip(kc) {
        for i in 0..8 {
            acc[i] += q[i] * f(k[i]);
        }
    }
    let tail: f32 = qr.iter().zip(kr).map(|(a, &b)| a * f(b)).sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// f16 bit patterns widened to f32 into `out` (exact): the scalar form of
/// `crate::quant::packed::arch::widen_f16`.
pub fn widen_f16(h: &[u16], out: &mut [f32]) {
    for (d, &s) in out.iter_mut().zip(h) {
        *d = f16_to_f32(s);
    }
}

/// Decoding's attention scores at one cached position (the scalar form of the vector kernel
/// `crate::quant::packed::arch::attn_scores_f16`, and its reference): `out[h] = scale * q_h . k`
/// for the `out.len()` query heads `q` (`hd` values each) sharing the key row `k` (f16 bits).
pub fn attn_scores_f16(q: &[f32], hd: usize, k: &[u16], scale: f32, out: &mut [f32]) {
    for (h, o) in out.iter_mut().enumerate() {
        *o = scale * dot_lanes(&q[h * hd..(h + 1) * hd], &k[..hd], f16_to_f32);
    }
}

/// Decoding's weighted sums over one run of value columns (the scalar form of
/// `crate::quant::packed::arch::attn_sums_f16`, and its reference): `out[h * n + c] = sum over j
/// of probs[h * n_pos + j] * v[j * stride + c]`, each from 0 in position order.
pub fn attn_sums_f16(probs: &[f32], n_pos: usize, v: &[u16], stride: usize, n: usize, out: &mut [f32]) {
    for (h, o) in out.chunks_exact_mut(n.max(1)).enumerate() {
        o.fill(0.0);
        for j in 0..n_pos {
            let p = probs[h * n_pos + j];
            for (a, &x) in o.iter_mut().zip(&v[j * stride..j * stride + n]) {
                *a += p * f16_to_f32(x);
            }
        }
    }
}

/// Softmax in place; the denominator is summed in f64 (ggml `soft_max`).
pub fn softmax(x: &mut [f32]) {
    softmax_by(x, crate::quant::scalar::exp_sub);
}

/// [`softmax`] with `exp_sub` (`x[i] = exp(x[i] - max)`: [`crate::quant::scalar::exp_sub`] or its vector form, bit
/// for bit the same) for the exponentials; the denominator summed in f64 in order.
pub fn softmax_by(x: &mut [f32], exp_sub: fn(&mut [f32], f32)) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    exp_sub(x, max);
    let sum: f64 = x.iter().map(|&v| v as f64).sum();
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Attention of one query head over cached keys/values of its kv head: scores `scale * q.k`,
/// softmax (f64 denominator), probabilities rounded to f16 and the weighted sum of values in f32,
/// as llama.cpp's plain (non flash-attention) path does with an f16 cache. `keys`/`values` hold the cache rows
/// of the visible positions (row strides `stride_*`, this head at `off_*`); `scores` is scratch.
/// Writes `out[..head_dim_v]`.
///
/// llama.cpp's CPU flash-attention path instead keeps the value accumulator in f16; measured on
/// Gemma 3 270M, llama.cpp's own results move by up to 0.45 logits between its flash-attention and
/// plain paths, so neither is "the" reference: we keep the more accurate f32 accumulation.
#[allow(clippy::too_many_arguments)]
pub fn attend_head(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    stride_k: usize,
    stride_v: usize,
    off_k: usize,
    off_v: usize,
    n_pos: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = q.len();
    let dv = out.len();
    scores.clear();
    for j in 0..n_pos {
        let k = &keys[j * stride_k + off_k..j * stride_k + off_k + d];
        scores.push(scale * dot_f32(q, k));
    }
    softmax(scores);
    out.fill(0.0);
    for (j, &p) in scores.iter().enumerate() {
        // llama.cpp multiplies the probabilities with the f16 V cache in f16 precision.
        let p = round_f16(p);
        let v = &values[j * stride_v + off_v..j * stride_v + off_v + dv];
        for (o, &x) in out.iter_mut().zip(v) {
            *o += p * x;
        }
    }
}

/// Attention of one query head over a q8_0 cache, as llama.cpp's CPU flash attention computes
/// it for a `q8_0` K and V: q quantized to q8_0 blocks (`q`), each score `scale * q.k` as the
/// integer q8_0 dot product, `e_j = exp(s_j - max)`, and `sum(e_j v_j) / sum(e_j)` in f32 with
/// the values widened (`values`, f32). `keys` are the visible positions' blocks (row stride
/// `stride_k` blocks, this head at block `off_k`); `values` as in [`attend_head`].
#[allow(clippy::too_many_arguments)]
pub fn attend_head_q8_0(
    q: &[BlockQ8_0],
    keys: &[BlockQ8_0],
    values: &[f32],
    stride_k: usize,
    stride_v: usize,
    off_k: usize,
    off_v: usize,
    n_pos: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let nb = q.len();
    let dv = out.len();
    scores.clear();
    for j in 0..n_pos {
        let k = &keys[j * stride_k + off_k..j * stride_k + off_k + nb];
        scores.push(scale * vec_dot_q8_0_q8_0(k, q));
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    out.fill(0.0);
    for (j, s) in scores.iter().enumerate() {
        let e = (s - max).exp();
        sum += e;
        let v = &values[j * stride_v + off_v..j * stride_v + off_v + dv];
        for (o, &x) in out.iter_mut().zip(v) {
            *o += e * x;
        }
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    out.iter_mut().for_each(|o| *o *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, -100.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[2] > x[1] && x[1] > x[0]);
    }

    #[test]
    fn rms_norm_unit_weight_gives_unit_rms() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let w = vec![1.0; 32];
        let mut y = vec![0.0; 64];
        rms_norm(&x, &w, 0.0, &mut y);
        for chunk in y.chunks(32) {
            let ms: f32 = chunk.iter().map(|v| v * v).sum::<f32>() / 32.0;
            assert!((ms - 1.0).abs() < 1e-5, "mean square {ms}");
        }
    }

    #[test]
    fn rope_position_zero_is_identity_and_rotation_preserves_norm() {
        let mut t = Vec::new();
        rope_table(0, 8, 10000.0, 1.0, None, &mut t);
        let mut h = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let orig = h.clone();
        rope_head(&mut h, &t, true);
        assert_eq!(h, orig);
        rope_table(17, 8, 10000.0, 1.0, None, &mut t);
        for neox in [false, true] {
            let mut h2 = orig.clone();
            rope_head(&mut h2, &t, neox);
            let n0: f32 = orig.iter().map(|v| v * v).sum();
            let n1: f32 = h2.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-3);
            assert_ne!(h2, orig);
        }
    }

    #[test]
    fn gelu_and_silu_reference_values() {
        use crate::quant::scalar::{gelu_f16_table as gelu, gelu_f32, silu_f32 as silu};
        // gelu_tanh(1) = 0.841192, silu(1) = 0.731059
        assert!((gelu_f32(1.0) - 0.841_192).abs() < 1e-5);
        // The f16 table: within f16 rounding of the f32 formula.
        for x in [-9.5f32, -3.0, -0.3, 0.001, 0.7, 2.5, 9.9] {
            assert!((gelu(x) - gelu_f32(x)).abs() <= 2e-3 * gelu_f32(x).abs().max(1e-3), "{x}");
        }
        assert_eq!(gelu(12.0), 12.0);
        assert_eq!(gelu(-12.0), 0.0);
        assert!((silu(1.0) - 0.731_059).abs() < 1e-5);
        assert_eq!(gelu(0.0), 0.0);
    }
}
