//! Scalar reference kernels: the oracle for the SIMD128 path and the fallback everywhere else.
//!
//! Ported from the definitions in llama.cpp (written here from the formulas, not copied):
//! - dequantization: `dequantize_row_*` in `ggml/src/ggml-quants.c` (gguf-py's `gguf/quants.py`
//!   computes the same floats; tests/quant_ref.rs checks that bit for bit);
//! - activation quantization: `quantize_row_q8_0_ref`, `quantize_row_q8_1_ref`,
//!   `quantize_row_q8_K_ref` in `ggml/src/ggml-quants.c`, with the same rounding (`roundf`, i.e.
//!   half away from zero, for Q8_0/Q8_1; `nearest_int`, i.e. half to even, for Q8_K) and the same
//!   f16 rounding of scales, so the quantized activations are bit-identical to llama.cpp's;
//! - dot products: `ggml_vec_dot_*` in `ggml/src/ggml-cpu/quants.c`. Integer partial sums are exact;
//!   the float combination per block follows ggml's (`sumi * (dx * dy)` etc.). For K-quants we
//!   keep one exact integer sum per super-block and do `sumf += d * isum - dmin * summs`, as ggml's
//!   SIMD paths do, instead of the generic code's 8 float lanes: a different (equally sound)
//!   rounding order. The SIMD128 kernels use exactly the same float steps, so SIMD == scalar
//!   bit for bit for every quantized format.
//!
//! Function names follow ggml (`dequantize_row_q4_K`, `vec_dot_q4_K_q8_K`, ...). Callers guarantee
//! matching lengths (checked once in `quant::mod`); these functions index freely.
#![allow(non_snake_case, clippy::needless_range_loop)]

use super::blocks::*;

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// `roundf`: round half away from zero (what `quantize_row_q8_0_ref` uses).
#[inline(always)]
fn roundf(x: f32) -> f32 {
    x.round()
}

/// ggml's `nearest_int`: round half to even via the 1.5 * 2^23 trick (valid for |x| < 2^22).
#[inline(always)]
fn nearest_int(x: f32) -> i32 {
    let v = x + 12582912.0;
    ((v.to_bits() & 0x007f_ffff) as i32) - 0x0040_0000
}

/// `get_scale_min_k4`: the j-th 6-bit scale and min of a Q4_K / Q5_K super-block.
#[inline(always)]
pub fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// All 8 (scale, min) pairs of a Q4_K / Q5_K super-block.
#[inline(always)]
pub fn scales_mins_k4(q: &[u8; K_SCALE_SIZE]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        (sc[j], m[j]) = get_scale_min_k4(j, q);
    }
    (sc, m)
}

/// The 16 signed 6-bit scales of a Q3_K super-block, already offset by -32.
#[inline(always)]
pub fn scales_q3_K(s: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for j in 0..16 {
        let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = ((low | (high << 4)) as i8) - 32;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Dequantization: dst.len() == blocks * block_size

pub fn dequantize_row_q4_0(x: &[BlockQ4_0], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for j in 0..QK / 2 {
            y[j] = ((b.qs[j] & 0xF) as i32 - 8) as f32 * d;
            y[j + QK / 2] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub fn dequantize_row_q4_1(x: &[BlockQ4_1], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let (d, m) = (f16_to_f32(b.d), f16_to_f32(b.m));
        for j in 0..QK / 2 {
            y[j] = (b.qs[j] & 0xF) as f32 * d + m;
            y[j + QK / 2] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
}

pub fn dequantize_row_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..QK / 2 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            y[j] = (((b.qs[j] & 0xF) as u32 | h0) as i32 - 16) as f32 * d;
            y[j + QK / 2] = (((b.qs[j] >> 4) as u32 | h1) as i32 - 16) as f32 * d;
        }
    }
}

pub fn dequantize_row_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let (d, m) = (f16_to_f32(b.d), f16_to_f32(b.m));
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..QK / 2 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            y[j] = ((b.qs[j] & 0xF) as u32 | h0) as f32 * d + m;
            y[j + QK / 2] = ((b.qs[j] >> 4) as u32 | h1) as f32 * d + m;
        }
    }
}

pub fn dequantize_row_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for j in 0..QK {
            y[j] = b.qs[j] as f32 * d;
        }
    }
}

/// ggml has no Q8_1 dequantizer (it is an activation format); this is `d * q`, ignoring `s`.
pub fn dequantize_row_q8_1(x: &[BlockQ8_1], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for j in 0..QK {
            y[j] = b.qs[j] as f32 * d;
        }
    }
}

pub fn dequantize_row_q2_K(x: &[BlockQ2K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_to_f32(b.d), f16_to_f32(b.dmin));
        // 2 halves of 128; in each, 4 shifts x 2 sub-blocks of 16 over the same 32 bytes of qs.
        for half in 0..2 {
            let q = &b.qs[32 * half..32 * half + 32];
            for shift in 0..4 {
                for sub in 0..2 {
                    let sc = b.scales[8 * half + 2 * shift + sub];
                    let (dl, ml) = (d * (sc & 0xF) as f32, dmin * (sc >> 4) as f32);
                    let out = &mut y[128 * half + 32 * shift + 16 * sub..][..16];
                    for l in 0..16 {
                        out[l] = dl * ((q[16 * sub + l] >> (2 * shift)) & 3) as f32 - ml;
                    }
                }
            }
        }
    }
}

pub fn dequantize_row_q3_K(x: &[BlockQ3K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(b.d);
        let scales = scales_q3_K(&b.scales);
        for half in 0..2 {
            let q = &b.qs[32 * half..32 * half + 32];
            for shift in 0..4 {
                let m = 1u8 << (4 * half + shift);
                for sub in 0..2 {
                    let dl = d * scales[8 * half + 2 * shift + sub] as f32;
                    let out = &mut y[128 * half + 32 * shift + 16 * sub..][..16];
                    for l in 0..16 {
                        let i = 16 * sub + l;
                        let q3 = ((q[i] >> (2 * shift)) & 3) as i32 - if b.hmask[i] & m != 0 { 0 } else { 4 };
                        out[l] = dl * q3 as f32;
                    }
                }
            }
        }
    }
}

pub fn dequantize_row_q4_K(x: &[BlockQ4K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_to_f32(b.d), f16_to_f32(b.dmin));
        let (sc, m) = scales_mins_k4(&b.scales);
        for j in 0..4 {
            let q = &b.qs[32 * j..32 * j + 32];
            let (d1, m1) = (d * sc[2 * j] as f32, dmin * m[2 * j] as f32);
            let (d2, m2) = (d * sc[2 * j + 1] as f32, dmin * m[2 * j + 1] as f32);
            let out = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                out[l] = d1 * (q[l] & 0xF) as f32 - m1;
                out[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

pub fn dequantize_row_q5_K(x: &[BlockQ5K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_to_f32(b.d), f16_to_f32(b.dmin));
        let (sc, m) = scales_mins_k4(&b.scales);
        for j in 0..4 {
            let q = &b.qs[32 * j..32 * j + 32];
            let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
            let (d1, m1) = (d * sc[2 * j] as f32, dmin * m[2 * j] as f32);
            let (d2, m2) = (d * sc[2 * j + 1] as f32, dmin * m[2 * j + 1] as f32);
            let out = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
                out[l] = d1 * ((q[l] & 0xF) + h1) as f32 - m1;
                out[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// The 256 quants of a Q6_K block, minus 32, in element order (ggml's `aux8` unpacking).
#[inline(always)]
pub fn unpack_q6_K(b: &BlockQ6K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for half in 0..2 {
        let (ql, qh) = (&b.ql[64 * half..64 * half + 64], &b.qh[32 * half..32 * half + 32]);
        let a = &mut a[128 * half..128 * half + 128];
        for l in 0..32 {
            a[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            a[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    a
}

pub fn dequantize_row_q6_K(x: &[BlockQ6K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(b.d);
        let q = unpack_q6_K(b);
        for (i, y) in y.iter_mut().enumerate() {
            *y = d * b.scales[i / 16] as f32 * q[i] as f32;
        }
    }
}

pub fn dequantize_row_q8_K(x: &[BlockQ8K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        for j in 0..QK_K {
            y[j] = b.d * b.qs[j] as f32;
        }
    }
}

pub fn dequantize_row_f32(x: &[f32], y: &mut [f32]) {
    y.copy_from_slice(x);
}

pub fn dequantize_row_f16(x: &[u16], y: &mut [f32]) {
    for (x, y) in x.iter().zip(y) {
        *y = f16_to_f32(*x);
    }
}

pub fn dequantize_row_bf16(x: &[u16], y: &mut [f32]) {
    for (x, y) in x.iter().zip(y) {
        *y = bf16_to_f32(*x);
    }
}

// ---------------------------------------------------------------------------------------------
// Activation quantization: x.len() == y.len() * block_size

/// `quantize_row_q8_0_ref`.
pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (x, b) in x.chunks_exact(QK).zip(y) {
        let amax = x.iter().fold(0.0f32, |a, v| if a > v.abs() { a } else { v.abs() });
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_f16(d);
        for j in 0..QK {
            b.qs[j] = roundf(x[j] * id) as i8;
        }
    }
}

/// `quantize_row_q8_1_ref`: Q8_0 plus `s = fp16(d * sum(qs))`.
pub fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (x, b) in x.chunks_exact(QK).zip(y) {
        let amax = x.iter().fold(0.0f32, |a, v| if a > v.abs() { a } else { v.abs() });
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_f16(d);
        let mut sum = 0i32;
        for j in 0..QK {
            b.qs[j] = roundf(x[j] * id) as i8;
            sum += b.qs[j] as i32;
        }
        b.s = f32_to_f16(sum as f32 * d);
    }
}

/// `quantize_row_q8_K_ref`: scale from the signed value of largest magnitude (first one on ties),
/// `iscale = -127 / max`, quants `min(127, nearest_int(iscale * x))`, `d = 1 / iscale` (f32).
pub fn quantize_row_q8_K(x: &[f32], y: &mut [BlockQ8K]) {
    for (x, b) in x.chunks_exact(QK_K).zip(y) {
        let (mut max, mut amax) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *b = BlockQ8K::default();
            continue;
        }
        let iscale = -127.0 / max;
        for j in 0..QK_K {
            b.qs[j] = nearest_int(iscale * x[j]).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            b.bsums[j] = b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum();
        }
        b.d = 1.0 / iscale;
    }
}

pub fn quantize_row_f32(x: &[f32], y: &mut [f32]) {
    y.copy_from_slice(x);
}

pub fn quantize_row_f16(x: &[f32], y: &mut [u16]) {
    for (x, y) in x.iter().zip(y) {
        *y = f32_to_f16(*x);
    }
}

pub fn quantize_row_bf16(x: &[f32], y: &mut [u16]) {
    for (x, y) in x.iter().zip(y) {
        *y = f32_to_bf16(*x);
    }
}

// ---------------------------------------------------------------------------------------------
// Dot products: x is one weight row, y the quantized activations; same number of elements.

pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for j in 0..QK / 2 {
            sumi += ((x.qs[j] & 0xF) as i32 - 8) * y.qs[j] as i32;
            sumi += ((x.qs[j] >> 4) as i32 - 8) * y.qs[j + QK / 2] as i32;
        }
        sumf += sumi as f32 * f16_to_f32(x.d) * f16_to_f32(y.d);
    }
    sumf
}

pub fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for j in 0..QK / 2 {
            sumi += (x.qs[j] & 0xF) as i32 * y.qs[j] as i32;
            sumi += (x.qs[j] >> 4) as i32 * y.qs[j + QK / 2] as i32;
        }
        sumf += (f16_to_f32(x.d) * f16_to_f32(y.d)) * sumi as f32 + f16_to_f32(x.m) * f16_to_f32(y.s);
    }
    sumf
}

pub fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let qh = u32::from_le_bytes(x.qh);
        let mut sumi = 0i32;
        for j in 0..QK / 2 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            sumi += (((x.qs[j] & 0xF) as u32 | h0) as i32 - 16) * y.qs[j] as i32;
            sumi += (((x.qs[j] >> 4) as u32 | h1) as i32 - 16) * y.qs[j + QK / 2] as i32;
        }
        sumf += (f16_to_f32(x.d) * f16_to_f32(y.d)) * sumi as f32;
    }
    sumf
}

pub fn vec_dot_q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let qh = u32::from_le_bytes(x.qh);
        let mut sumi = 0i32;
        for j in 0..QK / 2 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            sumi += ((x.qs[j] & 0xF) as u32 | h0) as i32 * y.qs[j] as i32;
            sumi += ((x.qs[j] >> 4) as u32 | h1) as i32 * y.qs[j + QK / 2] as i32;
        }
        sumf += (f16_to_f32(x.d) * f16_to_f32(y.d)) * sumi as f32 + f16_to_f32(x.m) * f16_to_f32(y.s);
    }
    sumf
}

pub fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi: i32 = x.qs.iter().zip(&y.qs).map(|(&a, &b)| a as i32 * b as i32).sum();
        sumf += sumi as f32 * (f16_to_f32(x.d) * f16_to_f32(y.d));
    }
    sumf
}

/// Not in ggml (Q8_1 is never a weight there); same shape as Q8_0 x Q8_0.
pub fn vec_dot_q8_1_q8_1(x: &[BlockQ8_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi: i32 = x.qs.iter().zip(&y.qs).map(|(&a, &b)| a as i32 * b as i32).sum();
        sumf += sumi as f32 * (f16_to_f32(x.d) * f16_to_f32(y.d));
    }
    sumf
}

pub fn vec_dot_q2_K_q8_K(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let summs: i32 = (0..16).map(|j| y.bsums[j] as i32 * (x.scales[j] >> 4) as i32).sum();
        let mut isum = 0i32;
        for half in 0..2 {
            let q = &x.qs[32 * half..32 * half + 32];
            for shift in 0..4 {
                for sub in 0..2 {
                    let q8 = &y.qs[128 * half + 32 * shift + 16 * sub..][..16];
                    let s: i32 = (0..16).map(|l| q8[l] as i32 * ((q[16 * sub + l] >> (2 * shift)) & 3) as i32).sum();
                    isum += (x.scales[8 * half + 2 * shift + sub] & 0xF) as i32 * s;
                }
            }
        }
        let dall = y.d * f16_to_f32(x.d);
        let dmin = y.d * f16_to_f32(x.dmin);
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

pub fn vec_dot_q3_K_q8_K(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let scales = scales_q3_K(&x.scales);
        let mut isum = 0i32;
        for half in 0..2 {
            let q = &x.qs[32 * half..32 * half + 32];
            for shift in 0..4 {
                let m = 1u8 << (4 * half + shift);
                for sub in 0..2 {
                    let q8 = &y.qs[128 * half + 32 * shift + 16 * sub..][..16];
                    let mut s = 0i32;
                    for l in 0..16 {
                        let i = 16 * sub + l;
                        let q3 = ((q[i] >> (2 * shift)) & 3) as i32 - if x.hmask[i] & m != 0 { 0 } else { 4 };
                        s += q8[l] as i32 * q3;
                    }
                    isum += scales[8 * half + 2 * shift + sub] as i32 * s;
                }
            }
        }
        sumf += f16_to_f32(x.d) * y.d * isum as f32;
    }
    sumf
}

pub fn vec_dot_q4_K_q8_K(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let (sc, m) = scales_mins_k4(&x.scales);
        let summs: i32 = (0..16).map(|j| y.bsums[j] as i32 * m[j / 2] as i32).sum();
        let mut isum = 0i32;
        for j in 0..4 {
            let q = &x.qs[32 * j..32 * j + 32];
            let q8 = &y.qs[64 * j..64 * j + 64];
            let mut s1 = 0i32;
            let mut s2 = 0i32;
            for l in 0..32 {
                s1 += (q[l] & 0xF) as i32 * q8[l] as i32;
                s2 += (q[l] >> 4) as i32 * q8[l + 32] as i32;
            }
            isum += sc[2 * j] as i32 * s1 + sc[2 * j + 1] as i32 * s2;
        }
        let d = f16_to_f32(x.d) * y.d;
        let dmin = f16_to_f32(x.dmin) * y.d;
        sumf += d * isum as f32 - dmin * summs as f32;
    }
    sumf
}

pub fn vec_dot_q5_K_q8_K(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let (sc, m) = scales_mins_k4(&x.scales);
        let summs: i32 = (0..16).map(|j| y.bsums[j] as i32 * m[j / 2] as i32).sum();
        let mut isum = 0i32;
        for j in 0..4 {
            let q = &x.qs[32 * j..32 * j + 32];
            let q8 = &y.qs[64 * j..64 * j + 64];
            let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
            let mut s1 = 0i32;
            let mut s2 = 0i32;
            for l in 0..32 {
                let h1 = if x.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if x.qh[l] & u2 != 0 { 16 } else { 0 };
                s1 += ((q[l] & 0xF) + h1) as i32 * q8[l] as i32;
                s2 += ((q[l] >> 4) + h2) as i32 * q8[l + 32] as i32;
            }
            isum += sc[2 * j] as i32 * s1 + sc[2 * j + 1] as i32 * s2;
        }
        let d = f16_to_f32(x.d) * y.d;
        let dmin = f16_to_f32(x.dmin) * y.d;
        sumf += d * isum as f32 - dmin * summs as f32;
    }
    sumf
}

pub fn vec_dot_q6_K_q8_K(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let q = unpack_q6_K(x);
        let mut isum = 0i32;
        for g in 0..16 {
            let s: i32 = (16 * g..16 * g + 16).map(|i| q[i] as i32 * y.qs[i] as i32).sum();
            isum += x.scales[g] as i32 * s;
        }
        sumf += f16_to_f32(x.d) * y.d * isum as f32;
    }
    sumf
}

/// Not in ggml (Q8_K is never a weight there); same shape as Q8_0 x Q8_0.
pub fn vec_dot_q8_K_q8_K(x: &[BlockQ8K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi: i32 = x.qs.iter().zip(&y.qs).map(|(&a, &b)| a as i32 * b as i32).sum();
        sumf += sumi as f32 * (x.d * y.d);
    }
    sumf
}

/// `ggml_vec_dot_f16` (generic): f32 products summed in f64 (`ggml_float`).
pub fn vec_dot_f16(x: &[u16], y: &[u16]) -> f32 {
    x.iter().zip(y).map(|(&a, &b)| (f16_to_f32(a) * f16_to_f32(b)) as f64).sum::<f64>() as f32
}

/// `ggml_vec_dot_bf16` (generic): f32 products summed in f64.
pub fn vec_dot_bf16(x: &[u16], y: &[u16]) -> f32 {
    x.iter().zip(y).map(|(&a, &b)| (bf16_to_f32(a) * bf16_to_f32(b)) as f64).sum::<f64>() as f32
}

/// `ggml_vec_dot_f32` (generic): f32 products summed in f64.
pub fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    x.iter().zip(y).map(|(&a, &b)| (a * b) as f64).sum::<f64>() as f32
}

/// The constants of [`exp_f32`] (shared with its vector form).
pub mod exp_consts {
    /// Inputs are clamped to `[LO, HI]` (e^88 is near the largest f32; a softmax's are at most 0);
    /// below `LO` (e^-87.3, the smallest normal f32) the result is 0.
    pub const HI: f32 = 88.0;
    pub const LO: f32 = -87.336_55;
    pub const LOG2E: f32 = std::f32::consts::LOG2_E;
    /// 1.5 * 2^23: `v + MAGIC - MAGIC` rounds `v` to an integer, which the low bits of `v + MAGIC` hold.
    pub const MAGIC: f32 = 12_582_912.0;
    /// `127 - bits(MAGIC)`: added to the bits of `v + MAGIC`, the biased exponent of 2^round(v).
    pub const EXP_BIAS: i32 = 127i32.wrapping_sub(0x4b40_0000);
    /// ln 2 in two parts (Cody-Waite): `C1` has few bits, so `n * C1` is exact (written out
    /// exactly, 355/512, though fewer digits would name the same f32).
    #[allow(clippy::excessive_precision)]
    pub const C1: f32 = 0.693_359_375;
    pub const C2: f32 = -2.121_944_4e-4;
    /// Cephes' `expf` polynomial for e^r on [-ln2/2, ln2/2]: `1 + r + r^2 * P(r)`, highest degree first.
    pub const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];
}

/// e^x in f32 by the steps llama.cpp's vectorized softmax also takes (range reduction by a
/// multiple of ln 2, a polynomial, the power of two built in the exponent bits), each an IEEE
/// operation that vector lanes compute alike, so the vector form
/// ([`super::packed::arch::exp_sub`], where the target has it) equals this bit for bit. Within
/// 1 ulp of the exact exponential (tested); 0 below e^-87.3, e^88 above 88; NaN stays NaN.
pub fn exp_f32(x: f32) -> f32 {
    use exp_consts::*;
    let v = if HI < x { HI } else { x };
    let under = v < LO;
    let v = if under { LO } else { v };
    let t = v * LOG2E + MAGIC;
    let f = t - MAGIC;
    let r = (v - f * C1) - f * C2;
    let y = P[1..].iter().fold(P[0], |y, &c| y * r + c);
    let y = (y * (r * r) + r) + 1.0;
    let y = y * f32::from_bits(((t.to_bits() as i32).wrapping_add(EXP_BIAS) as u32) << 23);
    // NaN passed through explicitly: a compiler may turn the clamps above into a min and a max
    // that drop NaN (in wasm with relaxed SIMD, LLVM vectorized this function's loop into
    // `f32x4.relaxed_min`, which returned the bound for NaN on x86).
    if x.is_nan() {
        x
    } else if under {
        0.0
    } else {
        y
    }
}

/// `x[i] = exp_f32(x[i] - max)`: the scalar form of the exponentials of a softmax.
pub fn exp_sub(x: &mut [f32], max: f32) {
    x.iter_mut().for_each(|v| *v = exp_f32(*v - max));
}

/// SiLU, `x / (1 + e^-x)`, with [`exp_f32`] (as llama.cpp's vectorized `ggml_v_silu` takes its
/// own exponential).
#[inline]
pub fn silu_f32(x: f32) -> f32 {
    x / (1.0 + exp_f32(0.0 - x))
}

/// `gate[i] = silu_f32(gate[i]) * up[i]`: the scalar form of SwiGLU.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    gate.iter_mut().zip(up).for_each(|(g, &u)| *g = silu_f32(*g) * u);
}

/// GELU, tanh approximation, in f32 (ggml `ggml_gelu_f32`).
#[inline]
pub fn gelu_f32(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh())
}

/// Below it GELU is 0, above its negation the identity ([`gelu_f16_table`]).
pub const GELU_BOUND: f32 = -10.0;

/// [`gelu_f32`] of every f16 value, rounded to f16: ggml's `GGML_GELU_FP16` table, indexed by
/// the f16 bits of the input.
pub fn gelu_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|bits| half::f16::from_f32(gelu_f32(half::f16::from_bits(bits).to_f32())).to_f32()).collect())
}

/// GELU as ggml's CPU backend computes it (`GGML_GELU_FP16`): the input rounded to f16, looked up
/// in [`gelu_table`]; identity from 10 up and zero from -10 down. Matching this matters: the
/// rounding shifts Gemma's logits by tenths of a logit.
#[inline]
pub fn gelu_f16_table(x: f32) -> f32 {
    gelu_from(gelu_table(), x)
}

#[inline(always)]
fn gelu_from(table: &[f32], x: f32) -> f32 {
    if x <= GELU_BOUND {
        0.0
    } else if -GELU_BOUND <= x {
        x
    } else {
        table[half::f16::from_f32(x).to_bits() as usize]
    }
}

/// `gate[i] = gelu_f16_table(gate[i]) * up[i]`: the scalar form of GeGLU.
pub fn gelu_mul(gate: &mut [f32], up: &[f32]) {
    let table = gelu_table();
    gate.iter_mut().zip(up).for_each(|(g, &u)| *g = gelu_from(table, *g) * u);
}
