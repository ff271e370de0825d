//! WebAssembly SIMD128 kernels, same names and signatures as [`super::scalar`].
//!
//! Built only for `wasm32` with `target-feature=+simd128` (the npm package's builds). The quantized
//! weights' dot products live in [`super::packed`] (weights repacked at load); here are the
//! Q8_0 / Q8_1 / Q8_K activation quantizers and the F16 dot product and dequantization. Everything else is
//! the scalar kernel, re-exported.
//!
//! The activation quantizers reproduce `roundf` (Q8_0, Q8_1) and `nearest_int` (Q8_K) exactly; the F16
//! dot product sums in f32 lanes (the scalar reference in f64).
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

/// One 32-value block as `quantize_row_q8_0_ref` quantizes it: the quants stored in `qs` and
/// returned as their two 16-byte halves, and the scale `d` (f32, before its f16 rounding).
#[inline(always)]
fn quantize_block_q8(x: &[f32], qs: &mut [i8]) -> (f32, [v128; 2]) {
    let amax = amax32(x);
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let idv = f32x4_splat(id);
    let halves = core::array::from_fn(|h| {
        let q: [v128; 4] = core::array::from_fn(|k| {
            i32x4_trunc_sat_f32x4(roundf_f32x4(f32x4_mul(load(x, 16 * h + 4 * k), idv)))
        });
        let v = narrow_i32_to_i8(q[0], q[1], q[2], q[3]);
        store(qs, 16 * h, v);
        v
    });
    (d, halves)
}

pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (x, b) in x.chunks_exact(QK).zip(y) {
        let (d, _) = quantize_block_q8(x, &mut b.qs);
        b.d = f32_to_f16(d);
    }
}

/// Q8_0's quants and scale, and `s = fp16(d * sum(qs))` of the stored quants (the reference's
/// sum, exact in i32 lanes).
pub fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (x, b) in x.chunks_exact(QK).zip(y) {
        let (d, halves) = quantize_block_q8(x, &mut b.qs);
        b.d = f32_to_f16(d);
        let sums = halves.map(|v| i32x4_extadd_pairwise_i16x8(i16x8_extadd_pairwise_i8x16(v)));
        b.s = f32_to_f16(hsum_i32(i32x4_add(sums[0], sums[1])) as f32 * d);
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

/// `ggml_vec_dot_f16` with f32 lanes (the scalar reference sums in f64).
pub fn vec_dot_f16(x: &[u16], y: &[u16]) -> f32 {
    let n = x.len().min(y.len());
    let mut acc0 = f32x4_splat(0.0);
    let mut acc1 = f32x4_splat(0.0);
    let mut i = 0;
    while i + 8 <= n {
        let a = load(x, i);
        let b = load(y, i);
        let (a0, a1) = (super::packed::arch::f16x4_to_f32(u32x4_extend_low_u16x8(a)), super::packed::arch::f16x4_to_f32(u32x4_extend_high_u16x8(a)));
        let (b0, b1) = (super::packed::arch::f16x4_to_f32(u32x4_extend_low_u16x8(b)), super::packed::arch::f16x4_to_f32(u32x4_extend_high_u16x8(b)));
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
        store(y, i, super::packed::arch::f16x4_to_f32(u32x4_extend_low_u16x8(a)));
        store(y, i + 4, super::packed::arch::f16x4_to_f32(u32x4_extend_high_u16x8(a)));
        i += 8;
    }
    for j in i..n {
        y[j] = f16_to_f32(x[j]);
    }
}
