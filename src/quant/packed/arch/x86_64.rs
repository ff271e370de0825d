//! The vector operations of `super` on x86-64 SSE2 (part of the baseline).

use core::arch::x86_64::*;
pub type V = __m128i;

#[inline(always)]
pub fn and(a: V, b: V) -> V {
    unsafe { _mm_and_si128(a, b) }
}
#[inline(always)]
pub fn or(a: V, b: V) -> V {
    unsafe { _mm_or_si128(a, b) }
}
#[inline(always)]
pub fn shl_i32<const N: i32>(a: V) -> V {
    unsafe { _mm_slli_epi32::<N>(a) }
}
/// Logical right shift of 16-bit lanes.
#[inline(always)]
pub fn shr_u16<const N: i32>(a: V) -> V {
    unsafe { _mm_srli_epi16::<N>(a) }
}
/// Logical left shift of 16-bit lanes.
#[inline(always)]
pub fn shl_u16<const N: i32>(a: V) -> V {
    unsafe { _mm_slli_epi16::<N>(a) }
}
#[inline(always)]
pub fn splat_i8(x: i8) -> V {
    unsafe { _mm_set1_epi8(x) }
}
#[inline(always)]
pub fn sub_i8(a: V, b: V) -> V {
    unsafe { _mm_sub_epi8(a, b) }
}
#[inline(always)]
pub fn gt_i32(a: V, b: V) -> V {
    unsafe { _mm_cmpgt_epi32(a, b) }
}
/// `a` where `mask` is set, else `b`.
#[inline(always)]
pub fn select(mask: V, a: V, b: V) -> V {
    unsafe { _mm_or_si128(_mm_and_si128(mask, a), _mm_andnot_si128(mask, b)) }
}
#[inline(always)]
pub fn div(a: V, b: V) -> V {
    unsafe { _mm_castps_si128(_mm_div_ps(_mm_castsi128_ps(a), _mm_castsi128_ps(b))) }
}
/// Logical right shift of 32-bit lanes.
#[inline(always)]
pub fn shr_u32<const N: i32>(a: V) -> V {
    unsafe { _mm_srli_epi32::<N>(a) }
}
/// All ones in the lanes where the f32 `a <= b` (false where either is NaN).
#[inline(always)]
pub fn le_f32(a: V, b: V) -> V {
    unsafe { _mm_castps_si128(_mm_cmple_ps(_mm_castsi128_ps(a), _mm_castsi128_ps(b))) }
}
/// All ones in the lanes where the f32 `a < b` (false where either is NaN).
#[inline(always)]
pub fn lt_f32(a: V, b: V) -> V {
    unsafe { _mm_castps_si128(_mm_cmplt_ps(_mm_castsi128_ps(a), _mm_castsi128_ps(b))) }
}
#[inline(always)]
pub fn splat_i32(x: i32) -> V {
    unsafe { _mm_set1_epi32(x) }
}

// SAFETY (all): SSE2 is part of the x86-64 baseline.
/// 16 bytes at `p` (unaligned).
/// SAFETY: the caller guarantees 16 readable bytes.
#[inline(always)]
pub unsafe fn load<T>(p: *const T) -> V {
    _mm_loadu_si128(p as *const V)
}
/// Store 4 f32 lanes at `p` (unaligned).
/// SAFETY: the caller guarantees 16 writable bytes.
#[inline(always)]
pub unsafe fn store_f32(p: *mut f32, v: V) {
    _mm_storeu_ps(p, _mm_castsi128_ps(v))
}
/// The low / high 4 of 8 u16 lanes, zero-extended to i32 lanes.
#[inline(always)]
pub fn widen_u16_lo(v: V) -> V {
    unsafe { _mm_unpacklo_epi16(v, _mm_setzero_si128()) }
}
#[inline(always)]
pub fn widen_u16_hi(v: V) -> V {
    unsafe { _mm_unpackhi_epi16(v, _mm_setzero_si128()) }
}
#[inline(always)]
pub fn widen_lo(v: V) -> V {
    unsafe { _mm_srai_epi16::<8>(_mm_unpacklo_epi8(v, v)) }
}
#[inline(always)]
pub fn widen_hi(v: V) -> V {
    unsafe { _mm_srai_epi16::<8>(_mm_unpackhi_epi8(v, v)) }
}
#[inline(always)]
pub fn madd(a: V, b: V) -> V {
    unsafe { _mm_madd_epi16(a, b) }
}
#[inline(always)]
pub fn add_i32(a: V, b: V) -> V {
    unsafe { _mm_add_epi32(a, b) }
}
#[inline(always)]
pub fn zip_i32(a: V, b: V) -> (V, V) {
    unsafe { (_mm_unpacklo_epi32(a, b), _mm_unpackhi_epi32(a, b)) }
}
#[inline(always)]
pub fn zip_i64(a: V, b: V) -> (V, V) {
    unsafe { (_mm_unpacklo_epi64(a, b), _mm_unpackhi_epi64(a, b)) }
}
#[inline(always)]
pub fn to_f32(v: V) -> V {
    unsafe { _mm_castps_si128(_mm_cvtepi32_ps(v)) }
}
#[inline(always)]
pub fn splat(x: f32) -> V {
    unsafe { _mm_castps_si128(_mm_set1_ps(x)) }
}
#[inline(always)]
pub fn mul(a: V, b: V) -> V {
    unsafe { _mm_castps_si128(_mm_mul_ps(_mm_castsi128_ps(a), _mm_castsi128_ps(b))) }
}
#[inline(always)]
pub fn add(a: V, b: V) -> V {
    unsafe { _mm_castps_si128(_mm_add_ps(_mm_castsi128_ps(a), _mm_castsi128_ps(b))) }
}
#[inline(always)]
pub fn sub(a: V, b: V) -> V {
    unsafe { _mm_castps_si128(_mm_sub_ps(_mm_castsi128_ps(a), _mm_castsi128_ps(b))) }
}
#[inline(always)]
pub fn mul_i16(a: V, b: V) -> V {
    unsafe { _mm_mullo_epi16(a, b) }
}
#[inline(always)]
pub fn splat_i16(x: i16) -> V {
    unsafe { _mm_set1_epi16(x) }
}
#[inline(always)]
pub fn to_array(v: V) -> [f32; 4] {
    let mut o = [0.0f32; 4];
    unsafe { _mm_storeu_ps(o.as_mut_ptr(), _mm_castsi128_ps(v)) };
    o
}
