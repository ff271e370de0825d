//! Random inputs and the error budgets results are held to, shared by the tests, the GPU
//! self-check (`crate::selfcheck`, which runs in production at load) and the GPU benchmark's
//! synthesized models: a seeded RNG, random-but-valid quantized rows, and THE table of error
//! budgets for quantized dot products. Not part of the stable API.
//!
//! # Error budget of a quantized dot product
//! `vec_dot(w, quantize_acts(x))` differs from the exact `sum_i w_i * x_i` (w dequantized) only
//! because the activations are rounded to the weight's vec_dot type. With `e_i` the worst-case
//! rounding error of activation `i`, the difference is at most
//! `sum_i |w_i| * e_i  +  extra  +  float slack`, where
//! - `e_i = k * step_b` for the block-quantized formats (`step_b = amax_b / 127`, the block's
//!   scale), `e_i = k * |x_i| + tiny` for f16 / bf16, `0` for f32 ([`ACT_ERROR`] holds `k`);
//! - `extra` (Q8_1 only) is the f16 rounding of the block sum `s` that multiplies the weight
//!   block's min `m`: `|m_b| * (sum_b |x_i| + 16 step_b) * 2^-10`;
//! - the slack covers f32 accumulation: `2^-20 * (blocks + 4) * sum_i |w_i x_i|`.

use super::{GgmlType, QK, QK_K};

/// Per-element activation rounding error, in units of the block scale (`amax / 127`) for the
/// block formats and of `|x|` for the float formats. One row per vec_dot type.
pub const ACT_ERROR: &[(GgmlType, f64, &str)] = &[
    // half a step from roundf, plus the f16 rounding of the scale: 127 * 2^-11 steps
    (GgmlType::Q8_0, 0.5 + 127.0 / 2048.0 + 1e-4, "roundf + f16 scale"),
    (GgmlType::Q8_1, 0.5 + 127.0 / 2048.0 + 1e-4, "roundf + f16 scale (+ f16 sum, see extra)"),
    // nearest_int, the scale stays f32
    (GgmlType::Q8_K, 0.5 + 1e-4, "nearest_int, f32 scale"),
    (GgmlType::F16, 1.0 / 2048.0, "f16 rounding, relative"),
    (GgmlType::BF16, 1.0 / 256.0, "bf16 rounding, relative"),
    (GgmlType::F32, 0.0, "exact"),
];

/// `k` of [`ACT_ERROR`] for activations of `vec_dot_ty`.
pub fn act_error(vec_dot_ty: GgmlType) -> f64 {
    ACT_ERROR.iter().find(|(t, _, _)| *t == vec_dot_ty).map(|r| r.1).expect("an activation format")
}

/// The error budget of `vec_dot(ty, w_row, quantize_acts(ty, x))` against the exact dot of the
/// dequantized row `w` (f32) with `x`. See the module docs.
pub fn dot_error_bound(ty: GgmlType, w_row: &[u8], w: &[f32], x: &[f32]) -> f64 {
    let at = ty.vec_dot_type();
    let k = act_error(at);
    let bs = at.block_size();
    let mut bound = 0.0f64;
    let mut abs_dot = 0.0f64;
    for (b, (wb, xb)) in w.chunks(bs).zip(x.chunks(bs)).enumerate() {
        let amax = xb.iter().fold(0.0f64, |a, v| a.max(v.abs() as f64));
        let step = amax / 127.0;
        for (wi, xi) in wb.iter().zip(xb) {
            let (wi, xi) = (*wi as f64, *xi as f64);
            abs_dot += (wi * xi).abs();
            let e = match at {
                GgmlType::Q8_0 | GgmlType::Q8_1 => k * step + 127.0 * 2f64.powi(-25),
                GgmlType::Q8_K => k * step,
                GgmlType::F16 => k * xi.abs() + 2f64.powi(-25),
                GgmlType::BF16 => k * xi.abs() + 2f64.powi(-133),
                _ => 0.0,
            };
            bound += wi.abs() * e;
        }
        if at == GgmlType::Q8_1 && matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
            // the weight block's min m (f16 at bytes 2..4)
            let o = b * ty.type_size();
            let m = super::f16_to_f32(u16::from_le_bytes([w_row[o + 2], w_row[o + 3]])) as f64;
            let sum_abs: f64 = xb.iter().map(|v| v.abs() as f64).sum();
            bound += m.abs() * (sum_abs + 16.0 * step) * 2f64.powi(-10);
        }
    }
    let blocks = (x.len() / bs.max(1)) as f64;
    bound + 2f64.powi(-20) * (blocks.min(1e6) + 4.0) * abs_dot + 1e-30
}

/// A small seeded RNG (splitmix64): deterministic on every target, no dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Activation-like values: mostly uniform in [-scale, scale), with an occasional outlier and
    /// an occasional exact zero.
    pub fn acts(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| match self.below(64) {
                0 => 0.0,
                1 => 8.0 * scale * self.uniform(),
                _ => scale * self.uniform(),
            })
            .collect()
    }

    /// A finite f16 scale of magnitude in [2^-10, 2^-3], random sign.
    fn f16_scale(&mut self) -> [u8; 2] {
        let mag = 2f32.powf(-10.0 + 7.0 * (self.uniform() + 1.0) / 2.0);
        let v = if self.next_u64() & 1 == 0 { mag } else { -mag };
        super::f32_to_f16(v).to_le_bytes()
    }
}

/// A random row of `n` elements of `ty`: random quant bits with finite, reasonable scales, so
/// dequantized values are of order 1. `n` must be a multiple of the block size.
pub fn random_row(ty: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(ty.row_bytes(n).expect("whole blocks"));
    match ty {
        GgmlType::F32 => (0..n).for_each(|_| out.extend_from_slice(&rng.uniform().to_le_bytes())),
        GgmlType::F16 => (0..n).for_each(|_| out.extend_from_slice(&super::f32_to_f16(rng.uniform()).to_le_bytes())),
        GgmlType::BF16 => (0..n).for_each(|_| out.extend_from_slice(&super::f32_to_bf16(rng.uniform()).to_le_bytes())),
        _ => {
            for _ in 0..n / ty.block_size() {
                let mut b: Vec<u8> = (0..ty.type_size()).map(|_| rng.next_u64() as u8).collect();
                for off in f16_fields(ty) {
                    b[*off..*off + 2].copy_from_slice(&rng.f16_scale());
                }
                if ty == GgmlType::Q8_K {
                    let d = 2f32.powf(-10.0 + 7.0 * (rng.uniform() + 1.0) / 2.0);
                    b[0..4].copy_from_slice(&d.to_le_bytes());
                }
                out.extend_from_slice(&b);
            }
        }
    }
    out
}

/// Byte offsets of the f16 fields of one block (scales and mins, per `ggml-common.h`).
pub fn f16_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[QK_K / 16 + QK_K / 4, QK_K / 16 + QK_K / 4 + 2],
        GgmlType::Q3_K => &[QK_K / 8 + QK_K / 4 + 12],
        GgmlType::Q6_K => &[QK_K / 2 + QK_K / 4 + QK_K / 16],
        _ => &[],
    }
}

/// Awkward numbers of blocks for property tests: one block, odd counts, a larger count.
pub fn block_counts(ty: GgmlType) -> &'static [usize] {
    if ty.block_size() == QK { &[1, 3, 7, 20] } else if ty.block_size() == 1 { &[1, 7, 33, 640] } else { &[1, 2, 3, 5] }
}
