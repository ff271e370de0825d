//! WebAssembly SIMD128 kernels, same names and signatures as [`super::scalar`].
//!
//! Built only for `wasm32` with `target-feature=+simd128` (the npm package's build). Formats the
//! CPU decoder spends its time in are here: Q8_0, Q5_0, Q4_0, Q4_K, Q6_K and F16 dot products, and
//! the Q8_0 / Q8_K activation quantizers. Everything else is the scalar kernel, re-exported.
//!
//! Integer dot products widen i8 to i16 and use `i32x4_dot_i16x8` (measured fastest in V8 with Q8
//! activations, DESIGN.md §8). Each block's (or super-block's) integer sum is exact and then combined
//! with the scales in the same float steps as the scalar code, so results are bit-identical to
//! [`super::scalar`] for every quantized format; only the F16 dot product (f32 lanes here, f64 in
//! the scalar reference) rounds differently. The activation quantizers reproduce `roundf` (Q8_0)
//! and `nearest_int` (Q8_K) exactly.
#![allow(non_snake_case)]

use core::arch::wasm32::*;

use super::blocks::*;

// The formats without a SIMD kernel; the items defined below shadow this glob.
pub use super::scalar::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// 16 bytes from `a[off..]` (bounds-checked by the slice).
#[inline(always)]
fn load<T: Copy>(a: &[T], off: usize) -> v128 {
    let s = &a[off..off + 16 / core::mem::size_of::<T>()];
    // SAFETY: `s` covers exactly 16 bytes; v128_load has no alignment requirement.
    unsafe { v128_load(s.as_ptr() as *const v128) }
}

#[inline(always)]
fn store<T: Copy>(a: &mut [T], off: usize, v: v128) {
    let s = &mut a[off..off + 16 / core::mem::size_of::<T>()];
    // SAFETY: `s` covers exactly 16 bytes; v128_store has no alignment requirement.
    unsafe { v128_store(s.as_mut_ptr() as *mut v128, v) }
}

/// Dot product of two i8x16 vectors as i32x4 partial sums (exact).
#[inline(always)]
fn dot_i8(a: v128, b: v128) -> v128 {
    i32x4_add(
        i32x4_dot_i16x8(i16x8_extend_low_i8x16(a), i16x8_extend_low_i8x16(b)),
        i32x4_dot_i16x8(i16x8_extend_high_i8x16(a), i16x8_extend_high_i8x16(b)),
    )
}

#[inline(always)]
fn hsum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v)
        .wrapping_add(i32x4_extract_lane::<1>(v))
        .wrapping_add(i32x4_extract_lane::<2>(v))
        .wrapping_add(i32x4_extract_lane::<3>(v))
}

#[inline(always)]
fn hmax_f32(v: v128) -> f32 {
    let a = f32x4_extract_lane::<0>(v).max(f32x4_extract_lane::<1>(v));
    let b = f32x4_extract_lane::<2>(v).max(f32x4_extract_lane::<3>(v));
    a.max(b)
}

/// Largest |x| of 32 floats.
#[inline(always)]
fn amax32(x: &[f32]) -> f32 {
    let mut m = f32x4_abs(load(x, 0));
    for i in 1..8 {
        m = f32x4_max(m, f32x4_abs(load(x, 4 * i)));
    }
    hmax_f32(m)
}

/// Round half away from zero, like C's `roundf` (exact: `t - trunc(t)` is exact in f32).
#[inline(always)]
fn roundf_f32x4(t: v128) -> v128 {
    let tr = f32x4_trunc(t);
    let away = f32x4_ge(f32x4_abs(f32x4_sub(t, tr)), f32x4_splat(0.5));
    let one_signed = v128_or(v128_and(t, u32x4_splat(0x8000_0000)), f32x4_splat(1.0));
    f32x4_add(tr, v128_and(away, one_signed))
}

/// Four i32x4 (values in -128..=127) to one i8x16.
#[inline(always)]
fn narrow_i32_to_i8(a: v128, b: v128, c: v128, d: v128) -> v128 {
    i8x16_narrow_i16x8(i16x8_narrow_i32x4(a, b), i16x8_narrow_i32x4(c, d))
}

// ---------------------------------------------------------------------------------------------
// Activation quantization

pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (x, b) in x.chunks_exact(QK).zip(y) {
        let amax = amax32(x);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_f16(d);
        let idv = f32x4_splat(id);
        for h in 0..2 {
            let q: [v128; 4] = core::array::from_fn(|k| {
                i32x4_trunc_sat_f32x4(roundf_f32x4(f32x4_mul(load(x, 16 * h + 4 * k), idv)))
            });
            store(&mut b.qs, 16 * h, narrow_i32_to_i8(q[0], q[1], q[2], q[3]));
        }
    }
}

pub fn quantize_row_q8_K(x: &[f32], y: &mut [BlockQ8K]) {
    for (x, b) in x.chunks_exact(QK_K).zip(y) {
        let mut m = f32x4_splat(0.0);
        for i in 0..QK_K / 4 {
            m = f32x4_max(m, f32x4_abs(load(x, 4 * i)));
        }
        let amax = hmax_f32(m);
        if amax == 0.0 {
            *b = BlockQ8K::default();
            continue;
        }
        // The signed value of largest magnitude, first one on ties (as the reference's scan).
        let max = *x.iter().find(|v| v.abs() == amax).unwrap_or(&amax);
        let iscale = -127.0 / max;
        let is = f32x4_splat(iscale);
        let cap = i32x4_splat(127);
        for g in 0..QK_K / 16 {
            let q: [v128; 4] = core::array::from_fn(|k| {
                // f32x4_nearest rounds half to even, as nearest_int's 1.5 * 2^23 trick does.
                i32x4_min(i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(is, load(x, 16 * g + 4 * k)))), cap)
            });
            let v = narrow_i32_to_i8(q[0], q[1], q[2], q[3]);
            store(&mut b.qs, 16 * g, v);
            b.bsums[g] = hsum_i32(i32x4_extadd_pairwise_i16x8(i16x8_extadd_pairwise_i8x16(v))) as i16;
        }
        b.d = 1.0 / iscale;
    }
}

// ---------------------------------------------------------------------------------------------
// Dot products

pub fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let acc = i32x4_add(dot_i8(load(&x.qs, 0), load(&y.qs, 0)), dot_i8(load(&x.qs, 16), load(&y.qs, 16)));
        sumf += hsum_i32(acc) as f32 * (f16_to_f32(x.d) * f16_to_f32(y.d));
    }
    sumf
}

pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let (mask, eight) = (u8x16_splat(0x0F), i8x16_splat(8));
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let q = load(&x.qs, 0);
        let lo = i8x16_sub(v128_and(q, mask), eight);
        let hi = i8x16_sub(u8x16_shr(q, 4), eight);
        let acc = i32x4_add(dot_i8(lo, load(&y.qs, 0)), dot_i8(hi, load(&y.qs, 16)));
        sumf += hsum_i32(acc) as f32 * f16_to_f32(x.d) * f16_to_f32(y.d);
    }
    sumf
}

pub fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    let mask = u8x16_splat(0x0F);
    let sixteen = u8x16_splat(0x10);
    let bit = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    let sel_lo = u8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let sel_hi = u8x16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        // Byte j of `has_lo` is 0xFF when bit j of qh is set (element j), `has_hi` for j + 16.
        let qh = u32x4_splat(u32::from_le_bytes(x.qh));
        let has_lo = i8x16_eq(v128_and(i8x16_swizzle(qh, sel_lo), bit), bit);
        let has_hi = i8x16_eq(v128_and(i8x16_swizzle(qh, sel_hi), bit), bit);
        let q = load(&x.qs, 0);
        // (nibble | bit << 4) - 16 == nibble - (bit ? 0 : 16)
        let lo = i8x16_sub(v128_and(q, mask), v128_andnot(sixteen, has_lo));
        let hi = i8x16_sub(u8x16_shr(q, 4), v128_andnot(sixteen, has_hi));
        let acc = i32x4_add(dot_i8(lo, load(&y.qs, 0)), dot_i8(hi, load(&y.qs, 16)));
        sumf += (f16_to_f32(x.d) * f16_to_f32(y.d)) * hsum_i32(acc) as f32;
    }
    sumf
}

pub fn vec_dot_q4_K_q8_K(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mask = u8x16_splat(0x0F);
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let (sc, m) = scales_mins_k4(&x.scales);
        let summs: i32 = (0..16).map(|j| y.bsums[j] as i32 * m[j / 2] as i32).sum();
        let mut acc = i32x4_splat(0);
        for j in 0..4 {
            let q0 = load(&x.qs, 32 * j);
            let q1 = load(&x.qs, 32 * j + 16);
            let s1 = i32x4_add(
                dot_i8(v128_and(q0, mask), load(&y.qs, 64 * j)),
                dot_i8(v128_and(q1, mask), load(&y.qs, 64 * j + 16)),
            );
            let s2 = i32x4_add(
                dot_i8(u8x16_shr(q0, 4), load(&y.qs, 64 * j + 32)),
                dot_i8(u8x16_shr(q1, 4), load(&y.qs, 64 * j + 48)),
            );
            acc = i32x4_add(acc, i32x4_mul(s1, i32x4_splat(sc[2 * j] as i32)));
            acc = i32x4_add(acc, i32x4_mul(s2, i32x4_splat(sc[2 * j + 1] as i32)));
        }
        let d = f16_to_f32(x.d) * y.d;
        let dmin = f16_to_f32(x.dmin) * y.d;
        sumf += d * hsum_i32(acc) as f32 - dmin * summs as f32;
    }
    sumf
}

pub fn vec_dot_q6_K_q8_K(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let (mask, m30, off) = (u8x16_splat(0x0F), u8x16_splat(0x30), i8x16_splat(32));
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut acc = i32x4_splat(0);
        for half in 0..2 {
            for c in 0..2 {
                // Elements 128 * half + 32 * quarter + 16 * c + (0..16), for quarter 0..4.
                let l0 = load(&x.ql, 64 * half + 16 * c); // quarters 0 (low) and 2 (high)
                let l1 = load(&x.ql, 64 * half + 32 + 16 * c); // quarters 1 (low) and 3 (high)
                let h = load(&x.qh, 32 * half + 16 * c);
                let q = [
                    v128_or(v128_and(l0, mask), v128_and(i8x16_shl(h, 4), m30)),
                    v128_or(v128_and(l1, mask), v128_and(i8x16_shl(h, 2), m30)),
                    v128_or(u8x16_shr(l0, 4), v128_and(h, m30)),
                    v128_or(u8x16_shr(l1, 4), v128_and(u8x16_shr(h, 2), m30)),
                ];
                for (quarter, q) in q.into_iter().enumerate() {
                    let e = 128 * half + 32 * quarter + 16 * c;
                    let s = dot_i8(i8x16_sub(q, off), load(&y.qs, e));
                    acc = i32x4_add(acc, i32x4_mul(s, i32x4_splat(x.scales[e / 16] as i32)));
                }
            }
        }
        sumf += f16_to_f32(x.d) * y.d * hsum_i32(acc) as f32;
    }
    sumf
}

/// Four f16 values (u32 lanes holding the bits) to f32x4, exactly (subnormals, inf, NaN included).
#[inline(always)]
fn f16x4_to_f32x4(h: v128) -> v128 {
    let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
    let em = v128_and(h, u32x4_splat(0x7fff));
    let shifted = i32x4_shl(em, 13);
    // Rebias the exponent by multiplying by 2^112; this also normalizes f16 subnormals.
    let scaled = f32x4_mul(shifted, f32x4_splat(f32::from_bits(0x7780_0000)));
    let special = v128_or(shifted, u32x4_splat(0x7f80_0000)); // inf / NaN keep their payload
    let is_special = i32x4_ge(em, i32x4_splat(0x7c00));
    v128_or(v128_bitselect(special, scaled, is_special), sign)
}

/// `ggml_vec_dot_f16` with f32 lanes (the scalar reference sums in f64).
pub fn vec_dot_f16(x: &[u16], y: &[u16]) -> f32 {
    let n = x.len().min(y.len());
    let mut acc0 = f32x4_splat(0.0);
    let mut acc1 = f32x4_splat(0.0);
    let mut i = 0;
    while i + 8 <= n {
        let a = load(x, i);
        let b = load(y, i);
        let (a0, a1) = (f16x4_to_f32x4(u32x4_extend_low_u16x8(a)), f16x4_to_f32x4(u32x4_extend_high_u16x8(a)));
        let (b0, b1) = (f16x4_to_f32x4(u32x4_extend_low_u16x8(b)), f16x4_to_f32x4(u32x4_extend_high_u16x8(b)));
        acc0 = f32x4_add(acc0, f32x4_mul(a0, b0));
        acc1 = f32x4_add(acc1, f32x4_mul(a1, b1));
        i += 8;
    }
    let acc = f32x4_add(acc0, acc1);
    let mut sum = (f32x4_extract_lane::<0>(acc) + f32x4_extract_lane::<1>(acc))
        + (f32x4_extract_lane::<2>(acc) + f32x4_extract_lane::<3>(acc));
    for j in i..n {
        sum += f16_to_f32(x[j]) * f16_to_f32(y[j]);
    }
    sum
}

/// f16 -> f32 for a row, 8 at a time.
pub fn dequantize_row_f16(x: &[u16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let mut i = 0;
    while i + 8 <= n {
        let a = load(x, i);
        store(y, i, f16x4_to_f32x4(u32x4_extend_low_u16x8(a)));
        store(y, i + 4, f16x4_to_f32x4(u32x4_extend_high_u16x8(a)));
        i += 8;
    }
    for j in i..n {
        y[j] = f16_to_f32(x[j]);
    }
}
