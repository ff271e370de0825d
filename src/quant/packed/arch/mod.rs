//! The vector kernels of the packed layout, written once against a handful of operations that
//! WebAssembly SIMD128 and x86-64 SSE2 both have as single instructions (`ops`: `wasm32.rs`,
//! `x86_64.rs`, the only place either instruction set is named): tiles of activation vectors
//! per row group, the K-quant super-block kernels, and their relaxed-SIMD twins.

use super::{Group, PackedActs, FIVE_BYTES, NIBBLES, NIBBLE_STREAM_TOKENS, QK, QK_K, ROWS, STREAMS, STREAM_TOKENS, SUBS};
use core::array::from_ref;
#[cfg(target_feature = "relaxed-simd")]
use super::RELAXED_OFFSET;

#[cfg(target_arch = "wasm32")]
mod wasm32;
#[cfg(target_arch = "wasm32")]
use wasm32 as ops;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
use x86_64 as ops;

use ops::*;

/// f16 bit patterns (zero-extended in i32 lanes) to f32, exactly as
/// [`crate::quant::f16_to_f32`]: exponent and mantissa moved into place and rebiased by a
/// multiplication with 2^112 (which also normalizes subnormals); inf and NaN get an all-ones
/// exponent.
#[inline(always)]
pub fn f16x4_to_f32(h: V) -> V {
    f16x4_to_f32_impl(h)
}

/// [`f16x4_to_f32`] on an array (for the exhaustive test against the scalar conversion).
#[doc(hidden)]
pub fn f16x4_to_f32_array(h: [u16; 4]) -> [f32; 4] {
    let w = [h[0], 0, h[1], 0, h[2], 0, h[3], 0];
    // SAFETY: `w` is 16 readable bytes.
    to_array(f16x4_to_f32(unsafe { load(w.as_ptr()) }))
}

/// f16 bit patterns widened to f32 into `out` (as many as both hold), 8 at a time with
/// [`f16x4_to_f32`]: exactly [`crate::quant::f16_to_f32`] of each (an f16 KV cache's rows).
pub fn widen_f16(h: &[u16], out: &mut [f32]) {
    let n = h.len().min(out.len());
    let (h, out) = (&h[..n], &mut out[..n]);
    let whole = n - n % 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: `i + 8 <= n`: 16 readable bytes of `h`, 32 writable bytes of `out`.
        unsafe {
            let v = load(h.as_ptr().add(i));
            store_f32(out.as_mut_ptr().add(i), f16x4_to_f32(widen_u16_lo(v)));
            store_f32(out.as_mut_ptr().add(i + 4), f16x4_to_f32(widen_u16_hi(v)));
        }
    }
    for (d, &s) in out[whole..].iter_mut().zip(&h[whole..]) {
        *d = crate::quant::f16_to_f32(s);
    }
}

/// e^v in each lane: the same operations in the same order as [`crate::quant::scalar::exp_f32`]
/// (range reduction by a multiple of ln 2, Cephes' degree-6 polynomial, the power of two built
/// in the exponent bits), so bit for bit its results (within 1 ulp of the exact exponential, 0
/// below e^-87.3).
#[inline(always)]
fn exp_v(x: V) -> V {
    use crate::quant::scalar::exp_consts::*;
    let v = select(lt_f32(splat(HI), x), splat(HI), x);
    let under = lt_f32(v, splat(LO));
    let v = select(under, splat(LO), v);
    let t = add(mul(v, splat(LOG2E)), splat(MAGIC));
    let f = sub(t, splat(MAGIC));
    let r = sub(sub(v, mul(f, splat(C1))), mul(f, splat(C2)));
    let mut y = splat(P[0]);
    for &c in &P[1..] {
        y = add(mul(y, r), splat(c));
    }
    let y = add(add(mul(y, mul(r, r)), r), splat(1.0));
    let y = mul(y, shl_i32::<23>(add_i32(t, splat_i32(EXP_BIAS))));
    // NaN lanes keep their input (`le_f32(x, x)` is false only there), as the scalar form does.
    select(le_f32(x, x), select(under, splat(0.0), y), x)
}

/// `x[i] = exp(x[i] - max)` for softmax, 4 values at a time: bit for bit
/// [`crate::quant::scalar::exp_sub`].
pub fn exp_sub(x: &mut [f32], max: f32) {
    let whole = x.len() - x.len() % 4;
    let m = splat(max);
    for i in (0..whole).step_by(4) {
        // SAFETY: `i + 4 <= x.len()`: 16 readable and writable bytes.
        unsafe {
            let p = x.as_mut_ptr().add(i);
            store_f32(p, exp_v(sub(load(p), m)));
        }
    }
    crate::quant::scalar::exp_sub(&mut x[whole..], max);
}

/// `gate[i] = silu(gate[i]) * up[i]` (SwiGLU; `silu(x) = x / (1 + e^-x)`), 4 values at a time:
/// bit for bit [`crate::quant::scalar::silu_mul`].
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let whole = n - n % 4;
    let zero = splat(0.0);
    for i in (0..whole).step_by(4) {
        // SAFETY: `i + 4 <= n`: 16 readable bytes of `up`, readable and writable of `gate`.
        unsafe {
            let p = gate.as_mut_ptr().add(i);
            let x = load(p);
            let e = exp_v(sub(zero, x));
            store_f32(p, mul(div(x, add(splat(1.0), e)), load(up.as_ptr().add(i))));
        }
    }
    crate::quant::scalar::silu_mul(&mut gate[whole..n], &up[whole..n]);
}

/// f32 lanes to the bits of the nearest f16 (ties to even), in the low 16 bits of each i32 lane,
/// as `half::f16::from_f32` rounds every value of magnitude below 65504 (larger ones, infinities
/// and NaN give some 16-bit pattern; the callers do not use it): the normal range rebiased and
/// rounded in the integers, the subnormal range rounded by a float addition.
#[inline(always)]
fn f32x4_to_f16_bits(x: V) -> V {
    let sign = shr_u32::<16>(and(x, splat_i32(i32::MIN)));
    let a = and(x, splat_i32(i32::MAX));
    // Normal f16: drop 13 mantissa bits, rounding to nearest even.
    let odd = and(shr_u32::<13>(a), splat_i32(1));
    let normal = shr_u32::<13>(add_i32(add_i32(a, splat_i32(((15 - 127) << 23) + 0xfff)), odd));
    // Subnormal f16 (below 2^-14): `a + 0.5` leaves the f16's bits in the mantissa, rounded.
    let half = splat(0.5);
    let sub = add_i32(add(a, half), splat_i32((0.5f32.to_bits() as i32).wrapping_neg()));
    let bits = select(gt_i32(splat_i32(113 << 23), a), sub, normal);
    and(or(bits, sign), splat_i32(0xffff))
}

/// `gate[i] = gelu(gate[i]) * up[i]` (GeGLU) with ggml's f16 GELU table, 4 values at a time (the
/// inputs' f16 bits computed in vector code, the 4 lookups one by one): bit for bit
/// [`crate::quant::scalar::gelu_mul`].
pub fn gelu_mul(gate: &mut [f32], up: &[f32]) {
    use crate::quant::scalar::{gelu_table, GELU_BOUND};
    let table = gelu_table();
    let n = gate.len().min(up.len());
    let whole = n - n % 4;
    let (lo, hi) = (splat(GELU_BOUND), splat(-GELU_BOUND));
    for i in (0..whole).step_by(4) {
        // SAFETY: `i + 4 <= n`: 16 readable bytes of `up`, readable and writable of `gate`; the
        // indices are 16-bit, and the table has an entry for each of them.
        unsafe {
            let p = gate.as_mut_ptr().add(i);
            let x = load(p);
            // NaN looks up a NaN entry (0x7e00), as its f16 bits do in the scalar form.
            let bits = select(le_f32(x, x), f32x4_to_f16_bits(x), splat_i32(0x7e00));
            let mut idx = [0u32; 4];
            store_f32(idx.as_mut_ptr() as *mut f32, bits);
            let g = idx.map(|j| *table.get_unchecked(j as usize));
            let g = select(le_f32(x, lo), splat(0.0), select(le_f32(hi, x), x, load(g.as_ptr())));
            store_f32(p, mul(g, load(up.as_ptr().add(i))));
        }
    }
    crate::quant::scalar::gelu_mul(&mut gate[whole..n], &up[whole..n]);
}

/// Decoding's attention scores at one cached position: `out[h] = scale * q_h . k` for the query
/// heads `q` (`out.len()` heads of `hd` values, rounded to f16 by the caller) that share the key
/// row `k` (f16 bits, `hd` values), summed exactly as the backend's `ops::dot_f32` sums a widened
/// row (element `i` into lane `i % 8`, lanes combined `((0+4)+(1+5))+((2+6)+(3+7))`, then the
/// tail past the last 8), so bit for bit its scores; the key is widened 8 values at a time, once
/// for up to 4 heads.
pub fn attn_scores_f16(q: &[f32], hd: usize, k: &[u16], scale: f32, out: &mut [f32]) {
    for (h0, o) in (0..out.len()).step_by(4).zip(out.chunks_mut(4)) {
        let q = &q[h0 * hd..];
        match o.len() {
            1 => scores_heads::<1>(q, hd, k, scale, o),
            2 => scores_heads::<2>(q, hd, k, scale, o),
            3 => scores_heads::<3>(q, hd, k, scale, o),
            _ => scores_heads::<4>(q, hd, k, scale, o),
        }
    }
}

#[inline(always)]
fn scores_heads<const H: usize>(q: &[f32], hd: usize, k: &[u16], scale: f32, out: &mut [f32]) {
    assert!(q.len() >= H * hd && k.len() >= hd && out.len() == H);
    let whole = hd - hd % 8;
    let (mut lo, mut hi) = ([splat(0.0); H], [splat(0.0); H]);
    for i in (0..whole).step_by(8) {
        // SAFETY: `i + 8 <= hd`: 16 bytes of `k`, and 32 of each head's `hd` values of `q`.
        unsafe {
            let v = load(k.as_ptr().add(i));
            let (klo, khi) = (f16x4_to_f32(widen_u16_lo(v)), f16x4_to_f32(widen_u16_hi(v)));
            for h in 0..H {
                let qp = q.as_ptr().add(h * hd + i);
                lo[h] = add(lo[h], mul(load(qp), klo));
                hi[h] = add(hi[h], mul(load(qp.add(4)), khi));
            }
        }
    }
    for h in 0..H {
        let (a, b) = (to_array(lo[h]), to_array(hi[h]));
        let tail: f32 = q[h * hd + whole..(h + 1) * hd].iter().zip(&k[whole..hd]).map(|(x, &y)| x * crate::quant::f16_to_f32(y)).sum();
        out[h] = scale * (((a[0] + b[0]) + (a[1] + b[1])) + ((a[2] + b[2]) + (a[3] + b[3])) + tail);
    }
}

/// Decoding's attention output for one run of value columns: `out[h * n + c] = sum over j of
/// probs[h * n_pos + j] * v[j * stride + c]` for the `heads` query heads that share those values
/// (f16 bits, position `j`'s row at `j * stride`, columns `0..n`), each sum taken from 0 in
/// position order, as the backend's `ops::attend_head` accumulates: bit for bit its output.
/// 8 columns at a time, each value widened once for up to 4 heads.
pub fn attn_sums_f16(probs: &[f32], n_pos: usize, v: &[u16], stride: usize, n: usize, out: &mut [f32]) {
    let heads = out.len() / n.max(1);
    assert!(probs.len() >= heads * n_pos && out.len() == heads * n);
    assert!(n_pos == 0 || (n_pos - 1).checked_mul(stride).and_then(|x| x.checked_add(n)).is_some_and(|e| e <= v.len()));
    for h0 in (0..heads).step_by(4) {
        let (p, o) = (&probs[h0 * n_pos..], &mut out[h0 * n..]);
        match (heads - h0).min(4) {
            1 => sums_heads::<1>(p, n_pos, v, stride, n, o),
            2 => sums_heads::<2>(p, n_pos, v, stride, n, o),
            3 => sums_heads::<3>(p, n_pos, v, stride, n, o),
            _ => sums_heads::<4>(p, n_pos, v, stride, n, o),
        }
    }
}

#[inline(always)]
fn sums_heads<const H: usize>(probs: &[f32], n_pos: usize, v: &[u16], stride: usize, n: usize, out: &mut [f32]) {
    let whole = n - n % 8;
    // Positions in chunks whose rows stay in the L1 cache while every 8 columns of them are
    // summed; the sums go to `out` between chunks (stored and reloaded exactly).
    const CHUNK: usize = 32;
    for j0 in (0..n_pos).step_by(CHUNK) {
        for c in (0..whole).step_by(8) {
            let (mut lo, mut hi) = ([splat(0.0); H], [splat(0.0); H]);
            if j0 > 0 {
                for h in 0..H {
                    // SAFETY: `h * n + c + 8 <= H * n <= out.len()`.
                    unsafe { (lo[h], hi[h]) = (load(out.as_ptr().add(h * n + c)), load(out.as_ptr().add(h * n + c + 4))) };
                }
            }
            for j in j0..(j0 + CHUNK).min(n_pos) {
                // SAFETY: `(n_pos - 1) * stride + n <= v.len()` (asserted by the caller) and `c + 8 <= n`.
                let x = unsafe { load(v.as_ptr().add(j * stride + c)) };
                let (xlo, xhi) = (f16x4_to_f32(widen_u16_lo(x)), f16x4_to_f32(widen_u16_hi(x)));
                for h in 0..H {
                    let p = splat(probs[h * n_pos + j]);
                    lo[h] = add(lo[h], mul(p, xlo));
                    hi[h] = add(hi[h], mul(p, xhi));
                }
            }
            for h in 0..H {
                // SAFETY: as above.
                unsafe {
                    store_f32(out.as_mut_ptr().add(h * n + c), lo[h]);
                    store_f32(out.as_mut_ptr().add(h * n + c + 4), hi[h]);
                }
            }
        }
    }
    for c in whole..n {
        for h in 0..H {
            let mut a = 0.0f32;
            for j in 0..n_pos {
                a += probs[h * n_pos + j] * crate::quant::f16_to_f32(v[j * stride + c]);
            }
            out[h * n + c] = a;
        }
    }
}

#[inline(always)]
fn f16x4_to_f32_impl(h: V) -> V {
    let em = and(h, splat_i32(0x7fff));
    let sign = shl_i32::<16>(and(h, splat_i32(0x8000)));
    let bits = shl_i32::<13>(em);
    let finite = mul(bits, splat(f32::from_bits(0x7780_0000)));
    let special = or(bits, splat_i32(0x7f80_0000));
    or(select(gt_i32(em, splat_i32(0x7bff)), special, finite), sign)
}

/// `[sum(s0), sum(s1), sum(s2), sum(s3)]` (exact integer sums, in any lane order).
#[inline(always)]
fn transpose_sum(s: [V; 4]) -> V {
    let (a, b) = zip_i32(s[0], s[1]);
    let (c, d) = zip_i32(s[2], s[3]);
    let (ab, cd) = (add_i32(a, b), add_i32(c, d)); // [s0 02, s1 02, s0 13, s1 13], same for s2, s3
    let (lo, hi) = zip_i64(ab, cd); // [s0 02, s1 02, s2 02, s3 02], [s0 13, s1 13, s2 13, s3 13]
    add_i32(lo, hi)
}

/// [`super::group_dot_scalar`] with vectors: per block, the 4 rows' integer sums in the 4
/// lanes, scaled and accumulated in float lanes in the reference's order. Tokens go in tiles
/// of [`TILE`]: each block's weights are loaded and widened once per tile (prefill).
#[inline(never)]
pub fn group_dot(band: &Group, acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    let nb = check_band(band, acts, out);
    assert!(band.off == 0 || band.qb != QK);
    for a in acts {
        assert!(a.q.len() == nb * QK && a.d.len() == nb && (band.m.is_empty() || a.s.len() == nb));
        assert!(a.d4.len() == nb && a.s4.len() == a.s.len());
    }
    let off = splat_i8(band.off as i8);
    match band.qb {
        NIBBLES => tiles::<NIBBLES>(band, off, acts, out),
        FIVE_BYTES => tiles::<FIVE_BYTES>(band, off, acts, out),
        _ => tiles::<QK>(band, off, acts, out),
    }
}

/// [`group_dot`]'s band, `QB` bytes of quants per block and row (bytes, nibbles or the 5-bit
/// formats'): a few tokens [`STREAMS`] row groups at a time ([`Group::each_streams`]).
#[inline(always)]
fn tiles<const QB: usize>(band: &Group, off: V, acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    band.each_streams(acts.len(), stream_tokens(QB), out, |gs, o| tiles_of::<STREAMS, QB>(gs, off, acts, o), |g, o| tiles_of::<1, QB>(from_ref(g), off, acts, o));
}

/// The most tokens the 32-element formats' kernels stream row groups for, by bytes per block and
/// row ([`STREAM_TOKENS`]).
fn stream_tokens(qb: usize) -> usize {
    if qb == QK { STREAM_TOKENS } else { NIBBLE_STREAM_TOKENS }
}

/// `S` row groups of [`group_dot`]'s band in tiles of tokens; `out[k * tokens + t]`.
#[inline(always)]
fn tiles_of<const S: usize, const QB: usize>(gs: &[Group; S], off: V, acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    by_tiles::<S>(acts, 0, out, |a, o| tile::<S, TILE, QB>(gs, off, a, o), |a, o| tile::<S, 1, QB>(gs, off, a, o));
}

/// Row `r`'s quants of block `b` as two vectors of 16 (elements 0..16 and 16..32) as stored, for
/// `QB` bytes per block and row: bytes loaded; nibbles ([`NIBBLES`]) split from their 16 bytes
/// (low nibbles, then high); the 5-bit formats' nibbles split and each half's fifth bits moved
/// from the block's shared plane to bit 4 ([`FIVE_BYTES`], see the module docs of `super`).
/// SAFETY: block `b` of row `r` lies in `q` (checked by the kernels' asserts).
#[inline(always)]
unsafe fn block_row<const QB: usize>(q: &[i8], b: usize, r: usize) -> (V, V) {
    let low = splat_i8(0xF);
    match QB {
        NIBBLES => {
            let v = load(q.as_ptr().add((b * ROWS + r) * NIBBLES));
            (and(v, low), and(shr_u16::<4>(v), low))
        }
        FIVE_BYTES => {
            let p = q.as_ptr().add(b * ROWS * FIVE_BYTES);
            let (v, bits) = (load(p.add(r * NIBBLES)), load(p.add(ROWS * NIBBLES)));
            let fifth = splat_i8(0x10);
            let (h0, h1) = (and(bit_to_4(bits, 2 * r), fifth), and(bit_to_4(bits, 2 * r + 1), fifth));
            (or(and(v, low), h0), or(and(shr_u16::<4>(v), low), h1))
        }
        _ => {
            let p = q.as_ptr().add((b * ROWS + r) * QK);
            (load(p), load(p.add(16)))
        }
    }
}

/// `bits` shifted so that each byte's bit `j` lands on its bit 4 (16-bit lane shifts: bit 4 of
/// each byte comes from the same byte for every `j`; the other bits are left for a mask).
#[inline(always)]
fn bit_to_4(bits: V, j: usize) -> V {
    match j {
        0 => shl_u16::<4>(bits),
        1 => shl_u16::<3>(bits),
        2 => shl_u16::<2>(bits),
        3 => shl_u16::<1>(bits),
        4 => bits,
        5 => shr_u16::<1>(bits),
        6 => shr_u16::<2>(bits),
        _ => shr_u16::<3>(bits),
    }
}

/// The 32-element formats' kernels' checks of a band's slices against each other and `out`;
/// returns the blocks per row.
#[inline(always)]
fn check_band(band: &Group, acts: &[PackedActs], out: &[[f32; ROWS]]) -> usize {
    let (nb, n) = (band.nb, band.groups());
    assert!(matches!(band.qb, QK | NIBBLES | FIVE_BYTES) && band.d.len() == n * nb * ROWS && band.q.len() == band.d.len() * band.qb);
    assert!(band.m.is_empty() || band.m.len() == band.d.len());
    assert!(out.len() >= n * acts.len());
    nb
}

/// Block `b`'s 4 row scales and mins (zeros without mins) as f32 lanes.
/// SAFETY: `b` is a block of the group (`d`, `m` hold 4 values per block).
#[inline(always)]
unsafe fn block_scales(d: &[f32], m: &[f32], b: usize) -> (V, V) {
    let mw = if m.is_empty() { splat(0.0) } else { load(m.as_ptr().add(b * ROWS)) };
    (load(d.as_ptr().add(b * ROWS)), mw)
}

/// The 32-element formats' float step for one token and block, in the reference's order:
/// `acc + sumi * (d_w * d_a)` (`+ m_w * s_a` with mins); `sumi` holds the 4 rows' exact sums.
/// The activations' scale and sum are loaded as the 4 lanes [`PackedActs`] holds them in (a
/// splat from one value costs engines a shuffle, and the kernels of several tokens are bound by
/// shuffles as much as by dot products: 2-4% at 1-9 tokens, Chromium, relaxed SIMD).
/// SAFETY: `b` is a block of `a` (checked by the kernels' asserts).
#[inline(always)]
unsafe fn block_step(acc: V, sumi: V, dw: V, mw: V, a: &PackedActs, b: usize) -> V {
    let mut v = mul(to_f32(sumi), mul(dw, load(a.d4.as_ptr().add(b))));
    if !a.s4.is_empty() {
        v = add(v, mul(mw, load(a.s4.as_ptr().add(b))));
    }
    add(acc, v)
}

/// The K-quants' float step for one token and super-block `b`, in the reference's order:
/// `acc + (d_w * d_a) * isum - (dmin_w * d_a) * summs`, `summs = sum_i mn[i] * bsums[i]` per
/// row (exact); `isum` holds the 4 rows' exact sums.
/// SAFETY: `b` is a super-block of the group and of `a` (checked by the kernels' asserts).
#[inline(always)]
unsafe fn super_step(acc: V, isum: V, g: &Group, a: &PackedActs, b: usize) -> V {
    let da = splat(a.d[b]);
    let mut v = mul(mul(load(g.d.as_ptr().add(b * ROWS)), da), to_f32(isum));
    if !g.mn.is_empty() {
        let mnp = g.mn.as_ptr().add(b * SUBS * ROWS);
        let bp = a.bsums.as_ptr().add(b * SUBS);
        let (b0, b1) = (load(bp), load(bp.add(8)));
        let per_row = |r: usize| add_i32(madd(load(mnp.add(r * SUBS)), b0), madd(load(mnp.add(r * SUBS + 8)), b1));
        let summs = transpose_sum([per_row(0), per_row(1), per_row(2), per_row(3)]);
        v = sub(v, mul(mul(load(g.m.as_ptr().add(b * ROWS)), da), to_f32(summs)));
    }
    add(acc, v)
}

/// From token `t0` on, `full` on each whole tile of [`TILE`] tokens and `one` on each token left
/// over, for `S` row groups; results `out[k * tokens + t]` (`k` the group, `tokens` all of
/// `acts`).
#[inline(always)]
fn by_tiles<const S: usize>(
    acts: &[PackedActs],
    t0: usize,
    out: &mut [[f32; ROWS]],
    mut full: impl FnMut(&[PackedActs; TILE], &mut [[[f32; ROWS]; TILE]; S]),
    mut one: impl FnMut(&[PackedActs; 1], &mut [[[f32; ROWS]; 1]; S]),
) {
    let mut t = t0;
    while acts.len() - t >= TILE {
        tile_into(acts, t, out, &mut full);
        t += TILE;
    }
    while t < acts.len() {
        tile_into(acts, t, out, &mut one);
        t += 1;
    }
}

/// Tiles of [`WIDE`] tokens, then of [`TILE`], then single tokens (the relaxed-SIMD kernels), as
/// [`by_tiles`].
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn by_wide_tiles<const S: usize>(
    acts: &[PackedActs],
    out: &mut [[f32; ROWS]],
    mut wide: impl FnMut(&[PackedActs; WIDE], &mut [[[f32; ROWS]; WIDE]; S]),
    full: impl FnMut(&[PackedActs; TILE], &mut [[[f32; ROWS]; TILE]; S]),
    one: impl FnMut(&[PackedActs; 1], &mut [[[f32; ROWS]; 1]; S]),
) {
    let mut t = 0;
    // Streamed groups (`S` > 1) take tiles of `TILE` only (see [`WIDE`]).
    while S == 1 && acts.len() - t >= WIDE {
        tile_into(acts, t, out, &mut wide);
        t += WIDE;
    }
    by_tiles::<S>(acts, t, out, full, one);
}

/// `kernel` on tokens `t0..t0 + T` of `S` row groups, its results copied to `out[k * tokens + t]`.
#[inline(always)]
fn tile_into<const S: usize, const T: usize>(
    acts: &[PackedActs],
    t0: usize,
    out: &mut [[f32; ROWS]],
    kernel: &mut impl FnMut(&[PackedActs; T], &mut [[[f32; ROWS]; T]; S]),
) {
    let tokens = acts.len();
    let mut o = [[[0.0; ROWS]; T]; S];
    kernel(acts[t0..t0 + T].try_into().expect("a tile of tokens"), &mut o);
    for (k, o) in o.iter().enumerate() {
        out[k * tokens + t0..k * tokens + t0 + T].copy_from_slice(o);
    }
}

/// Tokens per wide tile of the relaxed-SIMD kernels, before tiles of [`TILE`]: their rows are read
/// again from L1 for each token anyway, so a wider tile costs no registers and splits nibbles or
/// loads scales once for 8 tokens. In Chromium (Xeon host, 32 tokens against weights held in
/// cache, GMAC/s, 4 -> 8): Q8_0 19.7-22.4 -> 21.0-25.8, Q5_0 25.5-28.7 -> 25.8-30.4, Q4_1
/// 23.5-26.9 -> 24.7-28.8, Q4_K 13.9-20.0 -> 14.6-20.9, Q6_K unchanged. One row group at a
/// time only: [`STREAMS`] groups' sums in a wide tile (32 vectors) spill, and Q8_0 streamed 8-16
/// tokens 10-20% slower than in tiles of [`TILE`] (Chromium, A/B in one page: Gemma 3's head
/// shape at 8 / 16 tokens 24.1 -> 21.0 / 45.2 -> 39.0 ms for half its rows).
#[cfg(target_feature = "relaxed-simd")]
pub const WIDE: usize = 8;

/// Tokens per tile (measured natively on x86-64, 121-token prefill: 1 -> 2 -> 4 -> 8 tokens
/// gave about 45, 105, 140, 100 tok/s). The tiles run token by token inside each block, the
/// block's rows kept (widened) across tokens: a token's 4 row sums are the only values live
/// across its loop. With every (token, row) sum live at once instead (16 vectors, more than x86's
/// 16 registers with the weights and activations), V8 spilled them: in Chromium on a Zen 1 host,
/// a Q5_0 weight at 4 tokens ran 8.0 GMAC/s in SIMD128 and 11.8 in relaxed SIMD, token by token
/// 11.1 and 14.3; one token streaming Gemma 3's Q8_0 head shape 6.6 -> 8.1 GMAC/s.
pub const TILE: usize = super::TOKEN_TILE;

/// `S` row groups of one band (the same blocks per row) times `T` activation vectors: block by
/// block, each group's rows loaded, widened and scaled once, then token by token.
#[inline(always)]
fn tile<const S: usize, const T: usize, const QB: usize>(
    gs: &[Group; S],
    off: V,
    acts: &[PackedActs; T],
    out: &mut [[[f32; ROWS]; T]; S],
) {
    let nb = gs[0].d.len() / ROWS;
    let mut acc = [[splat(0.0); T]; S];
    for b in 0..nb {
        for (g, acc) in gs.iter().zip(&mut acc) {
            // SAFETY: `group_dot`'s asserts bound every 16-byte load below (every group of a
            // band has its blocks per row).
            unsafe {
                // The block's 4 rows widened once per tile, then token by token: few live values
                // per token (engines spill the widened rows to the stack, an L1 read each).
                let mut w = [[splat(0.0); 4]; ROWS];
                for r in 0..ROWS {
                    let (mut w0, mut w1) = block_row::<QB>(g.q, b, r);
                    if QB != QK {
                        // Nibbles carry the format's offset (Q4_0: 8, Q5_0: 16); bytes none here.
                        (w0, w1) = (sub_i8(w0, off), sub_i8(w1, off));
                    }
                    w[r] = [widen_lo(w0), widen_hi(w0), widen_lo(w1), widen_hi(w1)];
                }
                let (dw, mw) = block_scales(g.d, g.m, b);
                for t in 0..T {
                    let ap = acts[t].q.as_ptr().add(b * QK);
                    let mut s = [splat(0.0); ROWS];
                    for r in 0..ROWS {
                        s[r] = add_i32(
                            add_i32(madd(w[r][0], load(ap)), madd(w[r][1], load(ap.add(8)))),
                            add_i32(madd(w[r][2], load(ap.add(16))), madd(w[r][3], load(ap.add(24)))),
                        );
                    }
                    acc[t] = block_step(acc[t], transpose_sum(s), dw, mw, &acts[t], b);
                }
            }
        }
    }
    store(acc, out);
}

/// Each group's and token's accumulated lanes into `out`.
#[inline(always)]
fn store<const S: usize, const T: usize>(acc: [[V; T]; S], out: &mut [[[f32; ROWS]; T]; S]) {
    for (o, acc) in out.iter_mut().zip(acc) {
        for t in 0..T {
            o[t] = to_array(acc[t]);
        }
    }
}

/// [`super::kgroup_dot_scalar`] with vectors, tokens in tiles of [`TILE`].
#[inline(never)]
pub fn kgroup_dot(band: &Group, acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    let nb = check_k_band(band, acts, out);
    assert!(band.off == 0);
    for a in acts {
        assert!(a.q.len() == nb * QK_K && a.d.len() == nb && a.bsums.len() == nb * SUBS);
    }
    band.each_streams(acts.len(), STREAM_TOKENS, out, |gs, o| ktiles_of::<STREAMS>(gs, acts, o), |g, o| ktiles_of::<1>(from_ref(g), acts, o));
}

/// `S` row groups of [`kgroup_dot`]'s band in tiles of tokens; `out[k * tokens + t]`.
#[inline(always)]
fn ktiles_of<const S: usize>(gs: &[Group; S], acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    by_tiles::<S>(acts, 0, out, |a, o| ktile::<S, TILE>(gs, a, o), |a, o| ktile::<S, 1>(gs, a, o));
}

/// The K-quant kernels' checks of a band's slices against each other and `out`; returns the
/// super-blocks per row.
#[inline(always)]
fn check_k_band(band: &Group, acts: &[PackedActs], out: &[[f32; ROWS]]) -> usize {
    let (nb, n) = (band.nb, band.groups());
    assert!(band.d.len() == n * nb * ROWS && band.q.len() == band.d.len() * QK_K && band.sc.len() == band.d.len() * SUBS);
    assert!(band.mn.is_empty() || (band.mn.len() == band.sc.len() && band.m.len() == band.d.len()));
    assert!(out.len() >= n * acts.len());
    nb
}

/// `S` row groups of one band times `T` activation vectors, super-block by super-block.
#[inline(always)]
fn ktile<const S: usize, const T: usize>(gs: &[Group; S], acts: &[PackedActs; T], out: &mut [[[f32; ROWS]; T]; S]) {
    let nb = gs[0].d.len() / ROWS;
    let mut acc = [[splat(0.0); T]; S];
    for b in 0..nb {
        for (g, acc) in gs.iter().zip(&mut acc) {
            // SAFETY: `kgroup_dot`'s asserts bound every 16-byte load below.
            unsafe {
                let mut s = [[splat(0.0); ROWS]; T];
                let wp = g.q.as_ptr().add(b * ROWS * QK_K);
                let scp = g.sc.as_ptr().add(b * SUBS * ROWS);
                for i in 0..SUBS {
                    for r in 0..ROWS {
                        let w = load(wp.add(r * QK_K + 16 * i));
                        let sc = splat_i16(*scp.add(r * SUBS + i));
                        let (lo, hi) = (mul_i16(widen_lo(w), sc), mul_i16(widen_hi(w), sc));
                        for t in 0..T {
                            let ap = acts[t].q.as_ptr().add(b * QK_K + 16 * i);
                            s[t][r] = add_i32(s[t][r], add_i32(madd(lo, load(ap)), madd(hi, load(ap.add(8)))));
                        }
                    }
                }
                for t in 0..T {
                    acc[t] = super_step(acc[t], transpose_sum(s[t]), g, &acts[t], b);
                }
            }
        }
    }
    store(acc, out);
}

/// [`group_dot`] with the relaxed-SIMD dot products on weights stored with their quants offset
/// by [`RELAXED_OFFSET`] (6-bit values, the unsigned 7-bit operand; [`super::q_offset`]), or as
/// nibbles (and fifth bits) with the format's offset (Q4_0 8, Q5_0 16, Q4_1 and Q5_1 0), or Q8_0's whole bytes where the engine's
/// dot product reads them without saturating ([`super::relaxed::Q8Dot`]: offset 128 read
/// unsigned, or 0 read signed): per block `dot(a, q + off) - off * sum(a)` is the same exact
/// integer sum, so results equal the other kernels' bit for bit. `PAIRS`: the form of
/// [`super::relaxed`] (16-bit pair sums, two added before one widening; not for Q8_0), else the
/// 32-bit dot product.
#[cfg(target_feature = "relaxed-simd")]
#[inline(never)]
pub fn group_dot_relaxed<const PAIRS: bool>(band: &Group, acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    let nb = check_band(band, acts, out);
    let q8 = band.qb == QK && super::relaxed::q8_whole(band.off);
    let small = match band.qb {
        NIBBLES => (0..=8).contains(&band.off),
        FIVE_BYTES => (0..=16).contains(&band.off),
        _ => false,
    };
    assert!(band.off == RELAXED_OFFSET || small || (q8 && !PAIRS));
    for a in acts {
        assert!(a.q8.len() == nb * QK && a.sum32.len() == nb && a.d.len() == nb && (band.m.is_empty() || a.s.len() == nb));
        assert!(a.d4.len() == nb && a.s4.len() == a.s.len());
    }
    let off = band.off;
    match band.qb {
        NIBBLES => tiles_relaxed::<PAIRS, NIBBLES>(band, off, acts, out),
        FIVE_BYTES => tiles_relaxed::<PAIRS, FIVE_BYTES>(band, off, acts, out),
        _ => tiles_relaxed::<PAIRS, QK>(band, off, acts, out),
    }
}

/// [`group_dot_relaxed`]'s band, `QB` bytes of quants per block and row ([`block_row`]): a few
/// tokens [`STREAMS`] row groups at a time ([`Group::each_streams`]).
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn tiles_relaxed<const PAIRS: bool, const QB: usize>(band: &Group, off: i32, acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    band.each_streams(
        acts.len(),
        stream_tokens(QB),
        out,
        |gs, o| tiles_relaxed_of::<STREAMS, PAIRS, QB>(gs, off, acts, o),
        |g, o| tiles_relaxed_of::<1, PAIRS, QB>(from_ref(g), off, acts, o),
    );
}

/// `S` row groups of [`group_dot_relaxed`]'s band in wide tiles of tokens; `out[k * tokens + t]`.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn tiles_relaxed_of<const S: usize, const PAIRS: bool, const QB: usize>(gs: &[Group; S], off: i32, acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    by_wide_tiles::<S>(
        acts,
        out,
        |a, o| tile_relaxed::<S, WIDE, PAIRS, QB>(gs, off, a, o),
        |a, o| tile_relaxed::<S, TILE, PAIRS, QB>(gs, off, a, o),
        |a, o| tile_relaxed::<S, 1, PAIRS, QB>(gs, off, a, o),
    );
}

#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn tile_relaxed<const S: usize, const T: usize, const PAIRS: bool, const QB: usize>(
    gs: &[Group; S],
    off: i32,
    acts: &[PackedActs; T],
    out: &mut [[[f32; ROWS]; T]; S],
) {
    let nb = gs[0].d.len() / ROWS;
    let mut acc = [[splat(0.0); T]; S];
    for b in 0..nb {
        for (g, acc) in gs.iter().zip(&mut acc) {
            // SAFETY: `group_dot_relaxed`'s asserts bound every 16-byte load below.
            unsafe {
                let (dw, mw) = block_scales(g.d, g.m, b);
                // Token by token, the block's 4 rows read again from L1 for each: few live values
                // (engines keep them in registers), the weights still read from memory once per
                // tile. Nibbles split once per tile when it has several tokens (read again and
                // split per token, a Q4_1 weight of 262144 x 576 streamed 4 tokens in 50-55 ms
                // instead of 30: measured in Chromium); one token splits them as it goes.
                let split: [(V, V); ROWS] = if QB != QK && T > 1 {
                    core::array::from_fn(|r| block_row::<QB>(g.q, b, r))
                } else {
                    [(splat_i32(0), splat_i32(0)); ROWS]
                };
                for t in 0..T {
                    let ap = acts[t].q8.as_ptr().add(b * QK);
                    let (a0, a1) = (load(ap), load(ap.add(16)));
                    let mut s = [splat_i32(0); ROWS];
                    for r in 0..ROWS {
                        let (w0, w1) = if QB != QK && T > 1 { split[r] } else { block_row::<QB>(g.q, b, r) };
                        s[r] = if PAIRS {
                            // Each 16-bit lane: 4 products of at most 63 * 127 (exact).
                            widen_pairs(add_i16(dot_i7_pairs(a0, w0), dot_i7_pairs(a1, w1)))
                        } else {
                            dot_i7(a1, w1, dot_i7(a0, w0, splat_i32(0)))
                        };
                    }
                    let mut sumi = transpose_sum(s);
                    // Q4_1 and Q5_1 carry no offset: the correction's splat skipped (4-13%
                    // at 2-9 tokens, Q4_1 in Chromium).
                    if off != 0 {
                        sumi = sub_i32(sumi, splat_i32(off * acts[t].sum32[b]));
                    }
                    acc[t] = block_step(acc[t], sumi, dw, mw, &acts[t], b);
                }
            }
        }
    }
    store(acc, out);
}

/// [`group_dot`] with the relaxed-SIMD dot products on full-range 8-bit quants (Q8_0, offset 0):
/// the activations split once per vector into their positive and negative parts
/// ([`PackedActs`]' `pos`, `neg`: `a = pos - neg`, both 0..=127, the 7-bit operand), so per block
/// `dot(q, pos) - dot(q, neg)` is the exact integer sum with the weights read as they are. In the
/// pairs form each 16-bit lane is `q0 * a0 + q1 * a1` (one of `pos`, `neg` is 0 per element:
/// at most 2 * 128 * 127 < 2^15, exact) before its widening.
#[cfg(target_feature = "relaxed-simd")]
#[inline(never)]
pub fn group_dot_relaxed_q8<const PAIRS: bool>(band: &Group, acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    let nb = check_band(band, acts, out);
    assert!(band.off == 0 && band.m.is_empty());
    for a in acts {
        assert!(a.pos.len() == nb * QK && a.neg.len() == nb * QK && a.d.len() == nb);
        assert!(a.d4.len() == nb && a.s4.len() == a.s.len());
    }
    band.each_streams(acts.len(), STREAM_TOKENS, out, |gs, o| q8_tiles_of::<STREAMS, PAIRS>(gs, acts, o), |g, o| q8_tiles_of::<1, PAIRS>(from_ref(g), acts, o));
}

/// `S` row groups of [`group_dot_relaxed_q8`]'s band in wide tiles of tokens.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn q8_tiles_of<const S: usize, const PAIRS: bool>(gs: &[Group; S], acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    by_wide_tiles::<S>(
        acts,
        out,
        |a, o| tile_relaxed_q8::<S, WIDE, PAIRS>(gs, a, o),
        |a, o| tile_relaxed_q8::<S, TILE, PAIRS>(gs, a, o),
        |a, o| tile_relaxed_q8::<S, 1, PAIRS>(gs, a, o),
    );
}

#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn tile_relaxed_q8<const S: usize, const T: usize, const PAIRS: bool>(gs: &[Group; S], acts: &[PackedActs; T], out: &mut [[[f32; ROWS]; T]; S]) {
    let nb = gs[0].d.len() / ROWS;
    let mut acc = [[splat(0.0); T]; S];
    for b in 0..nb {
        for (g, acc) in gs.iter().zip(&mut acc) {
            // SAFETY: `group_dot_relaxed_q8`'s asserts bound every 16-byte load below.
            unsafe {
                let wp = g.q.as_ptr().add(b * ROWS * QK);
                let (dw, mw) = block_scales(g.d, &[], b);
                // Token by token (as `tile_relaxed`).
                for t in 0..T {
                    let (pp, np) = (acts[t].pos.as_ptr().add(b * QK), acts[t].neg.as_ptr().add(b * QK));
                    let (p0, p1, n0, n1) = (load(pp), load(pp.add(16)), load(np), load(np.add(16)));
                    let mut s = [splat_i32(0); ROWS];
                    for r in 0..ROWS {
                        let (w0, w1) = (load(wp.add(r * QK)), load(wp.add(r * QK + 16)));
                        s[r] = if PAIRS {
                            add_i32(
                                widen_pairs(sub_i16(dot_i7_pairs(w0, p0), dot_i7_pairs(w0, n0))),
                                widen_pairs(sub_i16(dot_i7_pairs(w1, p1), dot_i7_pairs(w1, n1))),
                            )
                        } else {
                            sub_i32(dot_i7(w1, p1, dot_i7(w0, p0, splat_i32(0))), dot_i7(w1, n1, dot_i7(w0, n0, splat_i32(0))))
                        };
                    }
                    acc[t] = block_step(acc[t], transpose_sum(s), dw, mw, &acts[t], b);
                }
            }
        }
    }
    store(acc, out);
}

/// [`kgroup_dot`] with the relaxed-SIMD dot products: per row and 16-element sub-block
/// `sc * dot(a, q + 32)` (quants stored offset by [`RELAXED_OFFSET`]), less
/// `32 * sum_i sc_i * bsums_i` per super-block (exact). `PAIRS`: the 16-bit dot product with the
/// scale applied in the widening multiply-add, else the 32-bit one and a 32-bit multiply.
#[cfg(target_feature = "relaxed-simd")]
#[inline(never)]
pub fn kgroup_dot_relaxed<const PAIRS: bool>(band: &Group, acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    let nb = check_k_band(band, acts, out);
    assert!(band.off == RELAXED_OFFSET);
    for a in acts {
        assert!(a.q8.len() == nb * QK_K && a.d.len() == nb && a.bsums.len() == nb * SUBS);
    }
    band.each_streams(acts.len(), STREAM_TOKENS, out, |gs, o| ktiles_relaxed_of::<STREAMS, PAIRS>(gs, acts, o), |g, o| ktiles_relaxed_of::<1, PAIRS>(from_ref(g), acts, o));
}

/// `S` row groups of [`kgroup_dot_relaxed`]'s band in wide tiles of tokens.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn ktiles_relaxed_of<const S: usize, const PAIRS: bool>(gs: &[Group; S], acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    by_wide_tiles::<S>(
        acts,
        out,
        |a, o| ktile_relaxed::<S, WIDE, PAIRS>(gs, a, o),
        |a, o| ktile_relaxed::<S, TILE, PAIRS>(gs, a, o),
        |a, o| ktile_relaxed::<S, 1, PAIRS>(gs, a, o),
    );
}

#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn ktile_relaxed<const S: usize, const T: usize, const PAIRS: bool>(gs: &[Group; S], acts: &[PackedActs; T], out: &mut [[[f32; ROWS]; T]; S]) {
    let nb = gs[0].d.len() / ROWS;
    let mut acc = [[splat(0.0); T]; S];
    for b in 0..nb {
        for (g, acc) in gs.iter().zip(&mut acc) {
            // SAFETY: `kgroup_dot_relaxed`'s asserts bound every load below.
            unsafe {
                let wp = g.q.as_ptr().add(b * ROWS * QK_K);
                let scp = g.sc.as_ptr().add(b * SUBS * ROWS);
                // Token by token (as `tile_relaxed`): the super-block's rows read again from L1.
                for t in 0..T {
                    let mut s = [splat_i32(0); ROWS];
                    // For the offset's correction, per row `sum_i sc[r][i] * bsums[i]`: two 16-bit
                    // dot products a row (a row's 16 scales are contiguous).
                    let bs = acts[t].bsums.as_ptr().add(b * SUBS);
                    let (b0, b1) = (load(bs), load(bs.add(8)));
                    let mut c = [splat_i32(0); ROWS];
                    for (r, c) in c.iter_mut().enumerate() {
                        *c = add_i32(madd(load(scp.add(r * SUBS)), b0), madd(load(scp.add(r * SUBS + 8)), b1));
                    }
                    let corr = transpose_sum(c);
                    for i in 0..SUBS {
                        let a = load(acts[t].q8.as_ptr().add(b * QK_K + 16 * i));
                        for r in 0..ROWS {
                            let w = load(wp.add(r * QK_K + 16 * i));
                            let sc = *scp.add(r * SUBS + i);
                            s[r] = add_i32(s[r], if PAIRS {
                                // 8 sums of 2 products (at most 2 * 63 * 128, exact in i16),
                                // times the scale and paired into 4 i32 lanes.
                                madd(dot_i7_pairs(a, w), splat_i16(sc))
                            } else {
                                mul_i32(dot_i7(a, w, splat_i32(0)), splat_i32(sc as i32))
                            });
                        }
                    }
                    // corr lanes are rows: 32 * sum_i sc[i][r] * bsums[i].
                    let isum = sub_i32(transpose_sum(s), mul_i32(corr, splat_i32(RELAXED_OFFSET)));
                    acc[t] = super_step(acc[t], isum, g, &acts[t], b);
                }
            }
        }
    }
    store(acc, out);
}
