//! The vector operations of `super` on WebAssembly SIMD128.

pub use core::arch::wasm32::v128 as V;
use core::arch::wasm32::*;

#[inline(always)]
pub fn and(a: V, b: V) -> V {
    v128_and(a, b)
}
#[inline(always)]
pub fn or(a: V, b: V) -> V {
    v128_or(a, b)
}
#[inline(always)]
pub fn shl_i32<const N: u32>(a: V) -> V {
    i32x4_shl(a, N)
}
/// Logical right shift of 16-bit lanes.
#[inline(always)]
pub fn shr_u16<const N: u32>(a: V) -> V {
    u16x8_shr(a, N)
}
/// Logical left shift of 16-bit lanes.
#[inline(always)]
pub fn shl_u16<const N: u32>(a: V) -> V {
    i16x8_shl(a, N)
}
#[inline(always)]
pub fn splat_i8(x: i8) -> V {
    i8x16_splat(x)
}
#[inline(always)]
pub fn sub_i8(a: V, b: V) -> V {
    i8x16_sub(a, b)
}
#[inline(always)]
pub fn gt_i32(a: V, b: V) -> V {
    i32x4_gt(a, b)
}
/// `a` where `mask` is set, else `b`.
#[inline(always)]
pub fn select(mask: V, a: V, b: V) -> V {
    v128_bitselect(a, b, mask)
}
#[inline(always)]
pub fn div(a: V, b: V) -> V {
    f32x4_div(a, b)
}
/// Logical right shift of 32-bit lanes.
#[inline(always)]
pub fn shr_u32<const N: u32>(a: V) -> V {
    u32x4_shr(a, N)
}
/// All ones in the lanes where the f32 `a <= b` (false where either is NaN).
#[inline(always)]
pub fn le_f32(a: V, b: V) -> V {
    f32x4_le(a, b)
}
/// All ones in the lanes where the f32 `a < b` (false where either is NaN).
#[inline(always)]
pub fn lt_f32(a: V, b: V) -> V {
    f32x4_lt(a, b)
}

/// 16 bytes at `p` (unaligned).
/// SAFETY: the caller guarantees 16 readable bytes.
#[inline(always)]
pub unsafe fn load<T>(p: *const T) -> V {
    v128_load(p as *const V)
}
/// Store 4 f32 lanes at `p` (unaligned).
/// SAFETY: the caller guarantees 16 writable bytes.
#[inline(always)]
pub unsafe fn store_f32(p: *mut f32, v: V) {
    v128_store(p as *mut V, v)
}
/// The low / high 4 of 8 u16 lanes, zero-extended to i32 lanes.
#[inline(always)]
pub fn widen_u16_lo(v: V) -> V {
    u32x4_extend_low_u16x8(v)
}
#[inline(always)]
pub fn widen_u16_hi(v: V) -> V {
    u32x4_extend_high_u16x8(v)
}
#[inline(always)]
pub fn widen_lo(v: V) -> V {
    i16x8_extend_low_i8x16(v)
}
#[inline(always)]
pub fn widen_hi(v: V) -> V {
    i16x8_extend_high_i8x16(v)
}
#[inline(always)]
pub fn madd(a: V, b: V) -> V {
    i32x4_dot_i16x8(a, b)
}
#[inline(always)]
pub fn add_i32(a: V, b: V) -> V {
    i32x4_add(a, b)
}
/// `[a0, b0, a1, b1]` and `[a2, b2, a3, b3]`.
#[inline(always)]
pub fn zip_i32(a: V, b: V) -> (V, V) {
    (i32x4_shuffle::<0, 4, 1, 5>(a, b), i32x4_shuffle::<2, 6, 3, 7>(a, b))
}
/// `[a0, a1, b0, b1]` and `[a2, a3, b2, b3]`.
#[inline(always)]
pub fn zip_i64(a: V, b: V) -> (V, V) {
    (i64x2_shuffle::<0, 2>(a, b), i64x2_shuffle::<1, 3>(a, b))
}
#[inline(always)]
pub fn to_f32(v: V) -> V {
    f32x4_convert_i32x4(v)
}
#[inline(always)]
pub fn splat(x: f32) -> V {
    f32x4_splat(x)
}
#[inline(always)]
pub fn mul(a: V, b: V) -> V {
    f32x4_mul(a, b)
}
#[inline(always)]
pub fn add(a: V, b: V) -> V {
    f32x4_add(a, b)
}
#[inline(always)]
pub fn sub(a: V, b: V) -> V {
    f32x4_sub(a, b)
}
/// `acc + [sum of a[4i..4i+4] * b[4i..4i+4]]` with `b` in 0..=127 (deterministic there).
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
pub fn dot_i7(a: V, b: V, acc: V) -> V {
    i32x4_relaxed_dot_i8x16_i7x16_add(a, b, acc)
}
#[inline(always)]
pub fn splat_i32(x: i32) -> V {
    i32x4_splat(x)
}
/// `[a[2i] * b[2i] + a[2i + 1] * b[2i + 1]]` in 8 i16 lanes, with `b` in 0..=127 (deterministic
/// and exact there: at most 2 * 128 * 127).
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
pub fn dot_i7_pairs(a: V, b: V) -> V {
    i16x8_relaxed_dot_i8x16_i7x16(a, b)
}
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
pub fn add_i16(a: V, b: V) -> V {
    i16x8_add(a, b)
}
/// `[a[2i] + a[2i + 1]]` (i16 pairs to i32 lanes).
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
pub fn widen_pairs(a: V) -> V {
    i32x4_extadd_pairwise_i16x8(a)
}
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
pub fn sub_i16(a: V, b: V) -> V {
    i16x8_sub(a, b)
}
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
pub fn sub_i32(a: V, b: V) -> V {
    i32x4_sub(a, b)
}
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
pub fn mul_i32(a: V, b: V) -> V {
    i32x4_mul(a, b)
}
#[inline(always)]
pub fn mul_i16(a: V, b: V) -> V {
    i16x8_mul(a, b)
}
#[inline(always)]
pub fn splat_i16(x: i16) -> V {
    i16x8_splat(x)
}
#[inline(always)]
pub fn to_array(v: V) -> [f32; 4] {
    [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)]
}
