//! Weights repacked at load for the CPU kernels ("Q8x4"), and the kernels that read them.
//!
//! GGUF stores a weight row by row, each 32-element block with its f16 scale in front of its
//! 4- to 8-bit quants, so a dot product converts a scale and unpacks bits for every block and
//! reduces horizontally per block. Storage and the GPU keep those bytes; the CPU backend repacks
//! each weight once, as it loads, into a layout its kernels stream straight through:
//!
//! - rows in **groups of 4** (the last group padded with zero rows);
//! - per group and block: the 4 rows' scales as **f32** (`d[g][b][0..4]`), for the formats with
//!   a min also the mins (`m[g][b][0..4]`), and the 4 rows' 32 quants as **i8** in element order
//!   (`q[g][b][r][0..32]`, the format's offset already subtracted: Q5_0 `q - 16`); the 4-bit
//!   formats (Q4_0, Q4_1) keep GGUF's 16 bytes of nibbles per block and row instead
//!   (`q[g][b][r][0..16]`, element `j` in the low nibble of byte `j`, element `j + 16` in its high
//!   nibble, Q4_0's offset 8 still on them), which halves the bytes a token reads; the kernels
//!   split them with two bit operations per 16 bytes. The 5-bit formats (Q5_0, Q5_1) keep their
//!   nibbles the same way and the 4 rows' fifth bits together after them, 16 bytes per block
//!   (`q[g][b][0..64]` the rows' nibbles, `q[g][b][64..80]` the bits: bit `2r + h` of byte `j` is
//!   the fifth bit of row `r`'s element `j + 16h`, Q5_0's offset 16 still on the values), so a
//!   kernel moves each half row's bits into place with one shift and one mask: 20 bytes per block
//!   and row instead of 32, where a decoded token streams its weights from memory.
//!
//! One kernel then serves every 32-element format with 8-bit activations (Q4_0, Q4_1, Q5_0, Q5_1,
//! Q8_0): per block, the 4 rows' exact integer sums land in the 4 lanes of one vector, are
//! converted and scaled with one multiply, and accumulate in that vector across blocks; the
//! result needs no horizontal reduction at all. The float steps per block are the scalar
//! reference's (`sumi * (d_w * d_a)`, plus `m_w * s_a` for the formats with a min) in the same
//! order, so results equal [`super::scalar`]'s bit for bit (Q4_0: its reference multiplies the
//! scales one at a time, a last-bit difference, see the tests).
//!
//! The K-quants (Q2_K..Q6_K, 256-element super-blocks with Q8_K activations) get the same
//! treatment with their integer sub-block scales kept: per group and super-block the 4 rows'
//! `d` and `dmin` (f32), the 16 sub-block scales and mins of 16 elements each (i16,
//! `sc[g][sb][row][i]`, `mn[g][sb][row][i]`; Q4_K/Q5_K's 32-element ones twice) and the quants
//! (i8, offsets applied). The kernel multiplies the widened quants by their scale in i16 (exact:
//! |q * sc| < 2^12) and sums `sc * q * a` per row exactly in i32, as ggml's reference does, then
//! applies `(d_w * d_a) * isum - (dmin_w * d_a) * summs` in float.
//!
//! Activations are quantized as before ([`super::quantize_acts`]) and widened once per vector to
//! i16 with f32 scales ([`PackedActs`]), so the inner loop only widens weights.
//!
//! Kernels: [`arch`] is WebAssembly SIMD128 on wasm32 (`+simd128`), SSE2 on x86-64 (part of
//! the baseline), and the scalar reference [`group_dot_scalar`] elsewhere; one generic body
//! ([`group_dot`]) is written against the few vector operations each of them provides.
//! Memory: Q8_0 grows by 6% (f32 scales), the 4- and 5-bit formats stay at 4 and 5 bits per
//! weight (plus f32 scales), the K-quants grow to 8 bits per weight.

#![allow(clippy::needless_range_loop)] // kernels index rows, lanes and tokens by number

use super::blocks::*;
use super::{ActsData, GgmlType, QuantizedActs};
use crate::error::{Error, Result};

/// Rows per group.
pub const ROWS: usize = 4;

/// Tokens the vector kernels multiply together (each weight block loaded and widened once per
/// tile); 1 where only the scalar kernels run.
pub const TOKEN_TILE: usize = if cfg!(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64")) { 4 } else { 1 };

/// The kernels this build runs: "relaxed-simd", "simd128", "sse2" or "scalar".
pub const KERNELS: &str = if cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd")) {
    "relaxed-simd"
} else if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
    "simd128"
} else if cfg!(target_arch = "x86_64") {
    "sse2"
} else {
    "scalar"
};

/// A weight repacked for the CPU kernels (see the module docs).
pub struct PackedWeight {
    ty: GgmlType,
    n_rows: usize,
    n_cols: usize,
    /// Scales, converted from GGUF's f16 once at load (converting 4 per block in the kernels was
    /// a fifth of one-token decode's work on a 32-element format with mins):
    /// `[group][block][row]` (32-element formats), `[group][super-block][row]` (K).
    d: Vec<f32>,
    /// Mins (32-element formats) or `dmin` (K-quants), same shape; empty without mins.
    m: Vec<f32>,
    /// Quants, `[group][block][row][block size]` (the 4-bit formats: `[..][16]`, nibbles; the
    /// 5-bit ones: `[group][block][80]`, see the module docs).
    q: Vec<i8>,
    /// K-quants only: sub-block scales `[group][super-block][row][16]` (a row's contiguous: the
    /// relaxed-SIMD kernel's offset correction dots them with the activations' sums).
    sc: Vec<i16>,
    /// K-quants with mins only: sub-block mins `[group][super-block][row][16]`.
    mn: Vec<i16>,
    /// What every stored quant carries on top of its value ([`q_offset`]), modulo 256.
    off: i32,
    /// Bytes of stored quants per block and row ([`quant_bytes`]).
    qb: usize,
}

/// The offset stored quants carry: the format's own for the 4- and 5-bit formats, kept as
/// nibbles and bits (Q4_0 8, Q5_0 16, Q4_1 and Q5_1 0: unsigned values, the unsigned operand of
/// the relaxed-SIMD dot products as they are);
/// [`RELAXED_OFFSET`] in the relaxed-SIMD build for every other format but Q8_0 (their quants all
/// fit -32..=31, so `q + 32` is the unsigned operand of that build's dot products, added once at
/// load rather than per block and row in the kernel), else 0. Q8_0's
/// full-range quants stay as they are: its relaxed kernel takes the activations' positive and
/// negative parts as the unsigned operand instead ([`arch::group_dot_relaxed_q8`]), unless the
/// engine's dot product reads a whole byte as that operand ([`relaxed::q8_offset`]: 128 where it
/// reads it unsigned, stored as `q + 128` modulo 256, the bytes 0..=255).
fn q_offset(ty: GgmlType) -> i32 {
    if is_nibbles(ty) {
        return if ty == GgmlType::Q4_0 { 8 } else { 0 };
    }
    if is_five(ty) {
        return if ty == GgmlType::Q5_0 { 16 } else { 0 };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    if ty == GgmlType::Q8_0 {
        return relaxed::q8_offset();
    }
    if cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd")) { RELAXED_OFFSET } else { 0 }
}

/// A stored quant's value: `stored - off` modulo 256 (as i8), for the offset 128 of Q8_0's
/// whole bytes; the other offsets never wrap.
fn unoffset(stored: i32, off: i32) -> i32 {
    (stored - off) as i8 as i32
}

/// See [`q_offset`].
const RELAXED_OFFSET: i32 = 32;

/// Sub-blocks (of 16 elements) per K-quant super-block.
const SUBS: usize = QK_K / 16;

/// The formats [`PackedWeight::new`] repacks: every quantized weight format.
pub fn is_packable(ty: GgmlType) -> bool {
    is_k(ty) || matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0)
}

/// Element `e` of stored block and row `s` (`[group][block][row]` order from the start of `q`),
/// the offset still on it, for `qb` bytes per block and row ([`quant_bytes`]): 16 bytes of nibbles
/// (element `e < 16` low in byte `e`, `e >= 16` high in byte `e - 16`), those and the fifth bits
/// ([`FIVE_BYTES`]: see the module docs), or one byte a quant.
fn stored_quant(q: &[i8], qb: usize, s: usize, e: usize) -> i32 {
    if qb != NIBBLES && qb != FIVE_BYTES {
        return q[s * qb + e] as i32;
    }
    let (block, r) = (s / ROWS * ROWS * qb, s % ROWS);
    let byte = q[block + r * (QK / 2) + e % (QK / 2)] as u8;
    let nib = (if e < QK / 2 { byte & 0xF } else { byte >> 4 }) as i32;
    if qb == FIVE_BYTES {
        let bits = q[block + ROWS * (QK / 2) + e % (QK / 2)] as u8;
        return nib | ((bits >> (2 * r + e / (QK / 2))) as i32 & 1) << 4;
    }
    nib
}

/// The formats whose quants stay GGUF's nibbles (see the module docs).
fn is_nibbles(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1)
}

/// The formats stored as nibbles and a plane of fifth bits (see the module docs).
fn is_five(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q5_0 | GgmlType::Q5_1)
}

/// Bytes per block and row of the 4-bit formats' nibbles.
const NIBBLES: usize = QK / 2;

/// Bytes per block and row of the 5-bit formats: 16 of nibbles and a quarter of the block's 16
/// bytes of fifth bits.
const FIVE_BYTES: usize = NIBBLES + QK / 8;

/// Bytes of stored quants per block and row: [`NIBBLES`] for the 4-bit formats, [`FIVE_BYTES`] for
/// the 5-bit formats, else one per quant.
fn quant_bytes(ty: GgmlType) -> usize {
    if is_nibbles(ty) {
        NIBBLES
    } else if is_five(ty) {
        FIVE_BYTES
    } else {
        ty.block_size()
    }
}

fn is_k(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K)
}

fn has_min(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q2_K | GgmlType::Q4_K | GgmlType::Q5_K)
}

/// One K-quant super-block unpacked: `d`, `dmin`, 16 scales and mins, 256 quants.
fn unpack_super(ty: GgmlType, raw: &[u8], sc: &mut [i16; SUBS], mn: &mut [i16; SUBS], q: &mut [i8]) -> (u16, u16) {
    use super::scalar::{scales_mins_k4, scales_q3_K, unpack_q6_K};
    let f16 = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    match ty {
        GgmlType::Q2_K => {
            let b: BlockQ2K = as_blocks::<BlockQ2K>(raw).expect("one block")[0];
            for i in 0..SUBS {
                (sc[i], mn[i]) = ((b.scales[i] & 0xF) as i16, (b.scales[i] >> 4) as i16);
            }
            for (e, v) in q.iter_mut().enumerate() {
                let (half, shift, sub, l) = (e / 128, (e / 32) % 4, (e / 16) % 2, e % 16);
                *v = ((b.qs[32 * half + 16 * sub + l] >> (2 * shift)) & 3) as i8;
            }
            (b.d, b.dmin)
        }
        GgmlType::Q3_K => {
            let b: BlockQ3K = as_blocks::<BlockQ3K>(raw).expect("one block")[0];
            let s = scales_q3_K(&b.scales);
            for i in 0..SUBS {
                sc[i] = s[i] as i16;
            }
            for (e, v) in q.iter_mut().enumerate() {
                let (half, shift, sub, l) = (e / 128, (e / 32) % 4, (e / 16) % 2, e % 16);
                let i = 16 * sub + l;
                let hbit = b.hmask[i] & (1u8 << (4 * half + shift)) != 0;
                *v = ((b.qs[32 * half + i] >> (2 * shift)) & 3) as i8 - if hbit { 0 } else { 4 };
            }
            (b.d, 0)
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let scales: &[u8; 12] = raw[4..16].try_into().expect("12 scale bytes");
            let (s, m) = scales_mins_k4(scales);
            for i in 0..SUBS {
                (sc[i], mn[i]) = (s[i / 2] as i16, m[i / 2] as i16);
            }
            let (qh, qs) = if ty == GgmlType::Q5_K { (Some(&raw[16..48]), &raw[48..176]) } else { (None, &raw[16..144]) };
            for (e, v) in q.iter_mut().enumerate() {
                let (j, hi, l) = (e / 64, (e / 32) % 2, e % 32);
                let nib = if hi == 0 { qs[32 * j + l] & 0xF } else { qs[32 * j + l] >> 4 };
                let h = qh.map_or(0, |qh| ((qh[l] >> (2 * j + hi)) & 1) << 4);
                *v = (nib + h) as i8;
            }
            (f16(raw, 0), f16(raw, 2))
        }
        GgmlType::Q6_K => {
            let b: BlockQ6K = as_blocks::<BlockQ6K>(raw).expect("one block")[0];
            for i in 0..SUBS {
                sc[i] = b.scales[i] as i16;
            }
            q.copy_from_slice(&unpack_q6_K(&b));
            (b.d, 0)
        }
        _ => unreachable!("checked by is_k"),
    }
}

/// A fallible zeroed vector (a weight too big for memory is an error, never an abort).
fn zeroed<T: Clone + Default>(len: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| Error::invalid_argument(format!("out of memory repacking {what} ({len} values)")))?;
    v.resize(len, T::default());
    Ok(v)
}

/// One block's quants in element order with the format's offset applied (the 4-bit formats: their
/// 16 bytes of nibbles as they are), its scale and min. The 5-bit formats go to [`pack_five`].
fn unpack_block(ty: GgmlType, raw: &[u8], q: &mut [i8]) -> (u16, u16) {
    let f16 = |lo: u8, hi: u8| u16::from_le_bytes([lo, hi]);
    match ty {
        // GGUF's nibbles as they are ([`is_nibbles`]).
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let at = if ty == GgmlType::Q4_0 { 2 } else { 4 };
            for (v, &b) in q.iter_mut().zip(&raw[at..at + QK / 2]) {
                *v = b as i8;
            }
            (f16(raw[0], raw[1]), if ty == GgmlType::Q4_0 { 0 } else { f16(raw[2], raw[3]) })
        }
        GgmlType::Q8_0 => {
            for (j, v) in q.iter_mut().enumerate() {
                *v = raw[2 + j] as i8;
            }
            (f16(raw[0], raw[1]), 0)
        }
        _ => unreachable!("checked by is_packable"),
    }
}

/// One GGUF block of a 5-bit format (Q5_0, Q5_1) into row `r` of its stored 4-row block `q`
/// ([`FIVE_BYTES`] per row, see the module docs): the nibbles as they are, each fifth bit into
/// the shared plane. Returns its scale and min.
fn pack_five(ty: GgmlType, raw: &[u8], q: &mut [i8], r: usize) -> (u16, u16) {
    let at = if ty == GgmlType::Q5_0 { 2 } else { 4 };
    let f16 = |i: usize| u16::from_le_bytes([raw[i], raw[i + 1]]);
    let qh = u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
    let (nibs, bits) = q.split_at_mut(ROWS * (QK / 2));
    for (v, &b) in nibs[r * (QK / 2)..(r + 1) * (QK / 2)].iter_mut().zip(&raw[at + 4..at + 4 + QK / 2]) {
        *v = b as i8;
    }
    for (j, v) in bits.iter_mut().enumerate() {
        let mut byte = *v as u8;
        for h in 0..2 {
            let bit = 1u8 << (2 * r + h);
            byte = if (qh >> (j + 16 * h)) & 1 != 0 { byte | bit } else { byte & !bit };
        }
        *v = byte as i8;
    }
    (f16(0), if ty == GgmlType::Q5_0 { 0 } else { f16(2) })
}

impl PackedWeight {
    /// Repack `n_rows x n_cols` GGUF bytes of `ty` (one of [`is_packable`]'s formats).
    pub fn new(ty: GgmlType, bytes: &[u8], n_rows: usize, n_cols: usize) -> Result<Self> {
        let mut w = Self::zeroed(ty, n_rows, n_cols)?;
        if w.row_bytes().checked_mul(n_rows) != Some(bytes.len()) {
            return Err(Error::invalid_argument(format!(
                "{ty} weight of {n_rows} x {n_cols} does not match its {} bytes",
                bytes.len()
            )));
        }
        w.fill_rows(0, bytes)?;
        Ok(w)
    }

    /// An all-zero weight of `n_rows x n_cols` of `ty`, to be filled with [`Self::fill_rows`]
    /// piece by piece as the GGUF bytes arrive (so a large tensor is never held twice).
    pub fn zeroed(ty: GgmlType, n_rows: usize, n_cols: usize) -> Result<Self> {
        if !is_packable(ty) {
            return Err(Error::internal(format!("{ty} has no repacked CPU layout")));
        }
        let bs = ty.block_size();
        if n_cols == 0 || n_cols % bs != 0 {
            return Err(Error::invalid_argument(format!("a {ty} weight needs a multiple of {bs} columns, got {n_cols}")));
        }
        let nb = n_cols / bs;
        let too_big = || Error::invalid_argument(format!("a {n_rows} x {n_cols} {ty} weight is too large"));
        let n_scales = n_rows.div_ceil(ROWS).checked_mul(nb * ROWS).ok_or_else(too_big)?;
        let what = format!("a {n_rows} x {n_cols} {ty} weight");
        let k = is_k(ty);
        let n_sub = if k { n_scales.checked_mul(SUBS).ok_or_else(too_big)? } else { 0 };
        Ok(PackedWeight {
            ty,
            n_rows,
            n_cols,
            d: zeroed(n_scales, &what)?,
            m: if has_min(ty) { zeroed(n_scales, &what)? } else { Vec::new() },
            q: zeroed(n_scales.checked_mul(quant_bytes(ty)).ok_or_else(too_big)?, &what)?,
            sc: zeroed(n_sub, &what)?,
            mn: if k && has_min(ty) { zeroed(n_sub, &what)? } else { Vec::new() },
            off: q_offset(ty),
            qb: quant_bytes(ty),
        })
    }

    /// Bytes of one GGUF row.
    pub fn row_bytes(&self) -> usize {
        self.n_cols / self.ty.block_size() * self.ty.type_size()
    }

    /// Repack the GGUF bytes of whole rows starting at row `r0`.
    pub fn fill_rows(&mut self, r0: usize, bytes: &[u8]) -> Result<()> {
        let (ty, bs, bb, qb) = (self.ty, self.ty.block_size(), self.ty.type_size(), self.qb);
        let nb = self.n_cols / bs;
        let rb = self.row_bytes();
        let n = bytes.len() / rb;
        if bytes.len() % rb != 0 || r0.checked_add(n).is_none_or(|e| e > self.n_rows) {
            return Err(Error::internal(format!("{} bytes of rows from {r0} for a {} x {} {ty} weight", bytes.len(), self.n_rows, self.n_cols)));
        }
        let k = is_k(ty);
        let (mut s16, mut m16) = ([0i16; SUBS], [0i16; SUBS]);
        for (i, row) in bytes.chunks_exact(rb).enumerate() {
            let (g, lane) = ((r0 + i) / ROWS, (r0 + i) % ROWS);
            for (b, raw) in row.chunks_exact(bb).enumerate() {
                let s = (g * nb + b) * ROWS + lane;
                let (dv, mv) = if is_five(ty) {
                    let block = (g * nb + b) * ROWS * qb;
                    pack_five(ty, raw, &mut self.q[block..block + ROWS * qb], lane)
                } else {
                    let qs = &mut self.q[s * qb..(s + 1) * qb];
                    let scales = if k { unpack_super(ty, raw, &mut s16, &mut m16, qs) } else { unpack_block(ty, raw, qs) };
                    if self.off != 0 && !is_nibbles(ty) {
                        // Every format but Q8_0 fits by its bit widths ([`Self::fits_relaxed`]).
                        if ty != GgmlType::Q8_0 && !qs.iter().all(|&v| (-32..=31).contains(&v)) {
                            return Err(Error::internal(format!("{ty} quants outside -32..=31")));
                        }
                        qs.iter_mut().for_each(|v| *v = v.wrapping_add(self.off as i8));
                    }
                    scales
                };
                self.d[s] = f16_to_f32(dv);
                if !self.m.is_empty() {
                    self.m[s] = f16_to_f32(mv);
                }
                if k {
                    let gb = (g * nb + b) * SUBS * ROWS;
                    self.sc[gb + lane * SUBS..gb + (lane + 1) * SUBS].copy_from_slice(&s16);
                    if !self.mn.is_empty() {
                        self.mn[gb + lane * SUBS..gb + (lane + 1) * SUBS].copy_from_slice(&m16);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether every quant of this weight lies in -32..=31, so `q + 32` is a 6-bit value, the
    /// unsigned 7-bit operand of the relaxed-SIMD dot products with room to add two of their
    /// 16-bit pair sums (every format but Q8_0, by its bit widths; the relaxed-SIMD build checks
    /// it as rows are filled). Reads every quant: for tests.
    pub fn fits_relaxed(&self) -> bool {
        let bs = self.ty.block_size();
        // The last group's padding rows are left out: their stored bytes are 0 (with offset 128,
        // the value -128; their scales are 0 and their results never read).
        (0..self.d.len()).filter(|s| s / (self.n_cols / bs * ROWS) * ROWS + s % ROWS < self.n_rows).all(|s| (0..bs).all(|e| (-32..=31).contains(&self.quant(s, e))))
    }

    /// Element `e` of stored block `s` (`[group][block][row]` order), its offset removed.
    fn quant(&self, s: usize, e: usize) -> i16 {
        unoffset(stored_quant(&self.q, self.qb, s, e), self.off) as i16
    }

    /// Row `r` as f32 values (`x = d * q (+ m)`, the GGUF dequantization's exact values).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<()> {
        if r >= self.n_rows || out.len() != self.n_cols {
            return Err(Error::invalid_argument(format!(
                "row {r} of a {} x {} weight into {} values",
                self.n_rows,
                self.n_cols,
                out.len()
            )));
        }
        let bs = self.ty.block_size();
        let nb = self.n_cols / bs;
        let (g, lane) = (r / ROWS, r % ROWS);
        for b in 0..nb {
            let s = (g * nb + b) * ROWS + lane;
            let (d, m) = (self.d[s], self.m.get(s).map_or(0.0, |&m| m));
            let out = &mut out[b * bs..(b + 1) * bs];
            let q = |e: usize| self.quant(s, e) as f32;
            if bs == QK {
                for (e, o) in out.iter_mut().enumerate() {
                    *o = if self.m.is_empty() { q(e) * d } else { q(e) * d + m };
                }
                continue;
            }
            // K-quants: `(d * sc) * q - dmin * mn` per 16-element sub-block, as GGUF's dequantization.
            let gb = (g * nb + b) * SUBS * ROWS;
            for i in 0..SUBS {
                let dl = d * self.sc[gb + lane * SUBS + i] as f32;
                for e in 16 * i..16 * i + 16 {
                    let v = q(e);
                    out[e] = if self.mn.is_empty() { dl * v } else { dl * v - m * self.mn[gb + lane * SUBS + i] as f32 };
                }
            }
        }
        Ok(())
    }

    /// `out[t * n_out + (r - r0)] = dot(row r, acts[t])` for the rows `r0..r0 + n_out`, where `r0`
    /// is a multiple of [`ROWS`] (a band of whole groups, for threads) and `out` holds
    /// `acts.len() * n_out` values.
    pub fn matmul_band(&self, acts: &[PackedActs], r0: usize, n_out: usize, out: &mut [f32]) -> Result<()> {
        // The relaxed-SIMD build runs its own kernels for every format: Q8_0's on the activations'
        // parts (when they have them), the others on unsigned quants (offset or nibbles).
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        {
            let parts = self.ty == GgmlType::Q8_0 && !relaxed::q8_whole(self.off);
            if !parts || acts.iter().all(|a| a.pos.len() == a.q.len()) {
                return self.matmul_band_with(relaxed::chosen(self.ty, self.off), acts, r0, n_out, out);
            }
        }
        self.matmul_band_with(if is_k(self.ty) { kgroup_dot } else { group_dot }, acts, r0, n_out, out)
    }

    /// [`Self::matmul_band`] with the scalar reference kernel (for tests).
    #[doc(hidden)]
    pub fn matmul_band_reference(&self, acts: &[PackedActs], r0: usize, n_out: usize, out: &mut [f32]) -> Result<()> {
        self.matmul_band_with(if is_k(self.ty) { kgroup_dot_scalar } else { group_dot_scalar }, acts, r0, n_out, out)
    }

    fn matmul_band_with(&self, kernel: GroupDot, acts: &[PackedActs], r0: usize, n_out: usize, out: &mut [f32]) -> Result<()> {
        let fits = r0 % ROWS == 0 && r0.checked_add(n_out).is_some_and(|e| e <= self.n_rows);
        if !fits || out.len() != acts.len() * n_out {
            return Err(Error::internal(format!(
                "packed matmul band {r0}+{n_out} of {} rows into {} values",
                self.n_rows,
                out.len()
            )));
        }
        for (t, a) in acts.iter().enumerate() {
            if a.n_cols != self.n_cols || a.ty != self.ty.vec_dot_type() {
                return Err(Error::internal(format!(
                    "activation vector {t} ({} values) does not fit a {} x {} {} weight",
                    a.n_cols, self.n_rows, self.n_cols, self.ty
                )));
            }
        }
        let (bs, qb) = (self.ty.block_size(), self.qb);
        let nb = self.n_cols / bs;
        // The band's whole row groups in one kernel call; results `res[group * tokens + t]`.
        let (g0, g1) = (r0 / ROWS, (r0 + n_out).div_ceil(ROWS));
        let per = nb * ROWS;
        let band = Group {
            nb,
            off: self.off,
            qb,
            d: &self.d[g0 * per..g1 * per],
            m: part(&self.m, g0..g1, per),
            q: &self.q[g0 * per * qb..g1 * per * qb],
            sc: part(&self.sc, g0..g1, per * SUBS),
            mn: part(&self.mn, g0..g1, per * SUBS),
        };
        let n_t = acts.len();
        if n_t == 1 && n_out % ROWS == 0 {
            // One token over whole groups (decoding): the results' layout is the output's.
            kernel(&band, acts, bytemuck::cast_slice_mut(out));
            return Ok(());
        }
        let mut res = vec![[0.0f32; ROWS]; (g1 - g0) * n_t];
        kernel(&band, acts, &mut res);
        for (i, rows) in res.chunks_exact(n_t).enumerate() {
            let base = (g0 + i) * ROWS; // the group's first row
            for (t, v) in rows.iter().enumerate() {
                let o = &mut out[t * n_out..(t + 1) * n_out];
                if base + ROWS <= r0 + n_out && base >= r0 {
                    o[base - r0..base - r0 + ROWS].copy_from_slice(v);
                    continue;
                }
                for (lane, &v) in v.iter().enumerate() {
                    if (r0..r0 + n_out).contains(&(base + lane)) {
                        o[base + lane - r0] = v;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Groups `gs`' values of `v`, `per` values per group (empty stays empty).
#[inline(always)]
fn part<T>(v: &[T], gs: std::ops::Range<usize>, per: usize) -> &[T] {
    if v.is_empty() { v } else { &v[gs.start * per..gs.end * per] }
}

/// One activation vector for the packed kernels: the Q8_0 / Q8_1 / Q8_K blocks of
/// [`super::quantize_acts`] with f32 scales (Q8_1: and block sums; Q8_K: and the 16-element sums)
/// and the quants widened to i16.
#[derive(Clone)]
pub struct PackedActs {
    n_cols: usize,
    ty: GgmlType,
    d: Vec<f32>,
    s: Vec<f32>,
    q: Vec<i16>,
    bsums: Vec<i16>,
    /// The quants as i8 and, per 32-element block, their sum (the relaxed-SIMD kernels').
    q8: Vec<i8>,
    sum32: Vec<i32>,
    /// Q8_0 activations in the relaxed-SIMD build: the quants' positive and negative parts
    /// (`q = pos - neg`, each 0..=127: the 7-bit operand against full-range 8-bit weights),
    /// for the parts kernel only (empty elsewhere).
    #[cfg_attr(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")), allow(dead_code))]
    pos: Vec<i8>,
    #[cfg_attr(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")), allow(dead_code))]
    neg: Vec<i8>,
    /// `d` and `s` (32-element blocks), each value in 4 lanes: the vector kernels' float step
    /// loads them as they are.
    d4: Vec<[f32; 4]>,
    s4: Vec<[f32; 4]>,
}

impl PackedActs {
    /// From activations quantized for a packable weight type (Q8_0 or Q8_1 blocks).
    pub fn new(acts: &QuantizedActs) -> Result<Self> {
        let mut p = PackedActs {
            n_cols: acts.len(),
            ty: acts.ty(),
            d: Vec::new(),
            s: Vec::new(),
            q: Vec::new(),
            bsums: Vec::new(),
            q8: Vec::new(),
            sum32: Vec::new(),
            pos: Vec::new(),
            neg: Vec::new(),
            d4: Vec::new(),
            s4: Vec::new(),
        };
        // Every vector sized once (a flattening `collect` grows its vector as it goes: several
        // reallocations a row, under the allocator's lock, which threads quantizing a long
        // prompt's rows together contend for).
        let mut q = Vec::with_capacity(acts.len());
        match &acts.data {
            ActsData::Q8_0(v) => {
                p.d = v.iter().map(|b| f16_to_f32(b.d)).collect();
                v.iter().for_each(|b| q.extend(b.qs.iter().map(|&x| x as i16)));
            }
            ActsData::Q8_K(v) => {
                p.d = v.iter().map(|b| b.d).collect();
                v.iter().for_each(|b| q.extend(b.qs.iter().map(|&x| x as i16)));
                p.bsums = Vec::with_capacity(v.len() * 16);
                v.iter().for_each(|b| p.bsums.extend(b.bsums));
            }
            ActsData::Q8_1(v) => {
                p.d = v.iter().map(|b| f16_to_f32(b.d)).collect();
                p.s = v.iter().map(|b| f16_to_f32(b.s)).collect();
                v.iter().for_each(|b| q.extend(b.qs.iter().map(|&x| x as i16)));
            }
            _ => return Err(Error::internal(format!("{} activations have no packed kernel", acts.ty()))),
        }
        p.q = q;
        if p.ty != GgmlType::Q8_K {
            p.d4 = p.d.iter().map(|&x| [x; ROWS]).collect();
            p.s4 = p.s.iter().map(|&x| [x; ROWS]).collect();
        }
        if acts.len() % acts.ty().block_size() != 0 {
            return Err(Error::internal("packed activations need whole blocks"));
        }
        if cfg!(target_feature = "relaxed-simd") {
            p.q8 = p.q.iter().map(|&x| x as i8).collect();
            p.sum32 = p.q.chunks_exact(QK).map(|b| b.iter().map(|&x| x as i32).sum()).collect();
        }
        // Q8_0's positive and negative parts, for the parts kernel only (engines whose dot product
        // saturates: Q8_0 weights are stored for it then): two passes and two vectors a row
        // otherwise spent for nothing, under the allocator's lock that the threads quantizing a
        // prompt's rows contend for. Q8_0 activations lie in -127..=127 (quantize_acts'
        // rounding), so both parts fit 7 bits; without them (never seen) the weights run the
        // SIMD128 kernel.
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        if p.ty == GgmlType::Q8_0 && relaxed::q8_dot() == relaxed::Q8Dot::Parts && p.q.iter().all(|&x| x >= -127) {
            p.pos = p.q.iter().map(|&x| x.clamp(0, 127) as i8).collect();
            p.neg = p.q.iter().map(|&x| (-x).clamp(0, 127) as i8).collect();
        }
        Ok(p)
    }
}

/// Row groups the kernels read together for one token (and a few, [`STREAM_TOKENS`]): the i-th
/// group of each of `STREAMS` equal runs of a band, block by block in turn, so that the core
/// streams from that many places of memory at once. In Chromium on the Xeon host (relaxed SIMD,
/// one token, weights far larger than the caches): Gemma 3's Q8_0 head 20.2 -> 12.5 ms (9.4 -> 15
/// GB/s, where a plain read of one stream gives 8-10), 150 Q5_0 weights of 2048 x 640 23.7 ->
/// 14.9 ms; 2 runs 14.9 and 16.5-17.0 ms, 8 runs 15.4 (the head); the 4 runs' groups taken in turn
/// whole instead of block by block 19.0 and 21.7.
pub const STREAMS: usize = 4;

/// The most tokens the kernels stream [`STREAMS`] row groups for: one decoded token and the
/// passes that verify a speculative draft (up to 9 tokens); a longer prompt's products reuse each
/// group's weights from L1 across tiles of tokens and run one group at a time. Formats stored as
/// nibbles stream up to [`NIBBLE_STREAM_TOKENS`]: their tiles of several tokens keep each row's
/// split nibbles live, and 4 groups' sums on top of them slowed 8 and 9 tokens by 3-10% (Q4_1,
/// Q5_0 in Chromium, relaxed SIMD; 2 to 5 tokens gained 10-35%).
pub const STREAM_TOKENS: usize = 16;

/// See [`STREAM_TOKENS`].
pub const NIBBLE_STREAM_TOKENS: usize = 4;

/// Consecutive row groups' slices of a [`PackedWeight`] (a band; `sc`, `mn` empty for the
/// 32-element formats), `nb` blocks per row.
#[derive(Clone, Copy)]
pub struct Group<'a> {
    nb: usize,
    /// The quants' offset ([`q_offset`]).
    off: i32,
    /// Bytes of quants per block and row ([`quant_bytes`]): 16 for nibbles.
    qb: usize,
    d: &'a [f32],
    m: &'a [f32],
    q: &'a [i8],
    sc: &'a [i16],
    mn: &'a [i16],
}

impl<'a> Group<'a> {
    /// Row groups in the band.
    fn groups(&self) -> usize {
        self.d.len() / (self.nb * ROWS)
    }
    /// `f(group, its results)` for each row group of the band alone, the results of `tokens`
    /// activation vectors per group: `out[group * tokens + t]`.
    #[inline(always)]
    fn each(&self, tokens: usize, out: &mut [[f32; ROWS]], mut f: impl FnMut(&Group<'a>, &mut [[f32; ROWS]])) {
        for (i, out) in out.chunks_exact_mut(tokens.max(1)).take(self.groups()).enumerate() {
            f(&self.at(i), out);
        }
    }
    /// [`Self::each`], but for up to `most` tokens (at most [`STREAM_TOKENS`]) `multi` first
    /// runs on [`STREAMS`] groups at a time (the i-th of each of `STREAMS` equal runs; results
    /// `[k * tokens + t]` for the k-th), and `f` on each group left over. (The vector kernels'
    /// only: targets without them run the scalar ones.)
    #[cfg(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64"))]
    #[inline(always)]
    fn each_streams(
        &self,
        tokens: usize,
        most: usize,
        out: &mut [[f32; ROWS]],
        mut multi: impl FnMut(&[Group<'a>; STREAMS], &mut [[f32; ROWS]]),
        mut f: impl FnMut(&Group<'a>, &mut [[f32; ROWS]]),
    ) {
        let n = self.groups();
        let per = if (1..=most.min(STREAM_TOKENS)).contains(&tokens) { n / STREAMS } else { 0 };
        let mut o = [[0.0; ROWS]; STREAMS * STREAM_TOKENS];
        let o = &mut o[..STREAMS * tokens.min(STREAM_TOKENS)];
        for i in 0..per {
            multi(&core::array::from_fn(|k| self.at(i + k * per)), o);
            for (k, o) in o.chunks_exact(tokens).enumerate() {
                out[(i + k * per) * tokens..(i + k * per + 1) * tokens].copy_from_slice(o);
            }
        }
        for (i, out) in out.chunks_exact_mut(tokens.max(1)).enumerate().take(n).skip(per * STREAMS) {
            f(&self.at(i), out);
        }
    }
    /// The band's group `i` alone.
    #[inline(always)]
    fn at(&self, i: usize) -> Group<'a> {
        let per = self.nb * ROWS;
        let sub = |i: usize| i..i + 1;
        Group {
            nb: self.nb,
            off: self.off,
            qb: self.qb,
            d: &self.d[i * per..(i + 1) * per],
            m: part(self.m, sub(i), per),
            q: &self.q[i * per * self.qb..(i + 1) * per * self.qb],
            sc: part(self.sc, sub(i), per * SUBS),
            mn: part(self.mn, sub(i), per * SUBS),
        }
    }
}

/// A band kernel: the band's row groups, the activation vectors, their results
/// `out[group * acts.len() + t]`.
type GroupDot = fn(&Group, &[PackedActs], &mut [[f32; ROWS]]);

/// The scalar reference of [`group_dot`]: `out[t][r] = sum over blocks b of
/// sumi(r, b, t) * (d[b][r] * d_t[b])` (`+ m[b][r] * s_t[b]` with mins), accumulated in f32 in
/// block order.
pub fn group_dot_scalar(band: &Group, acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    band.each(acts.len(), out, |g, out| group_dot_scalar_one(g, acts, out));
}

fn group_dot_scalar_one(g: &Group, acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    let (d, m, q) = (g.d, g.m, g.q);
    let nb = d.len() / ROWS;
    for (a, o) in acts.iter().zip(out.iter_mut()) {
        let mut acc = [0.0f32; ROWS];
        for b in 0..nb {
            let ab = &a.q[b * QK..(b + 1) * QK];
            for (r, acc) in acc.iter_mut().enumerate() {
                let s = b * ROWS + r;
                let sumi: i32 = ab.iter().enumerate().map(|(e, &x)| unoffset(stored_quant(q, g.qb, s, e), g.off) * x as i32).sum();
                let mut v = sumi as f32 * (d[s] * a.d[b]);
                if !m.is_empty() {
                    v += m[s] * a.s[b];
                }
                *acc += v;
            }
        }
        *o = acc;
    }
}

/// The scalar reference of [`kgroup_dot`] (K-quants): per super-block, per row,
/// `isum = sum_i sc[i] * sum_(16 elements) q * a` and `summs = sum_i mn[i] * bsums[i]` exactly,
/// then `acc += (d * d_a) * isum - (dmin * d_a) * summs` (no min term without mins), as ggml's
/// reference.
pub fn kgroup_dot_scalar(band: &Group, acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    band.each(acts.len(), out, |g, out| kgroup_dot_scalar_one(g, acts, out));
}

fn kgroup_dot_scalar_one(g: &Group, acts: &[PackedActs], out: &mut [[f32; ROWS]]) {
    let nb = g.d.len() / ROWS;
    for (a, o) in acts.iter().zip(out.iter_mut()) {
        let mut acc = [0.0f32; ROWS];
        for b in 0..nb {
            for (r, acc) in acc.iter_mut().enumerate() {
                let s = b * ROWS + r;
                let wq = &g.q[s * QK_K..(s + 1) * QK_K];
                let aq = &a.q[b * QK_K..(b + 1) * QK_K];
                let mut isum = 0i32;
                for i in 0..SUBS {
                    let sub: i32 = (16 * i..16 * i + 16).map(|e| unoffset(wq[e] as i32, g.off) * aq[e] as i32).sum();
                    isum += g.sc[b * SUBS * ROWS + r * SUBS + i] as i32 * sub;
                }
                let dd = g.d[s] * a.d[b];
                *acc += if g.mn.is_empty() {
                    dd * isum as f32
                } else {
                    let mn = &g.mn[b * SUBS * ROWS + r * SUBS..][..SUBS];
                    let summs: i32 = (0..SUBS).map(|i| mn[i] as i32 * a.bsums[b * SUBS + i] as i32).sum();
                    dd * isum as f32 - (g.m[s] * a.d[b]) * summs as f32
                };
            }
        }
        *o = acc;
    }
}

/// The kernels in use: [`arch`]'s where this target has vector code, else the scalar ones.
#[cfg(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64"))]
use arch::{group_dot, kgroup_dot};
#[cfg(not(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64")))]
use {group_dot_scalar as group_dot, kgroup_dot_scalar as kgroup_dot};

/// Each kernel of the formats `types` run on a small weight, for one token and for a tile of
/// them (8 + 4 + 1, every tile width), called as a model starts loading in wasm. A fresh
/// WebAssembly module runs its baseline code until the engine has compiled a function with its
/// optimizing tier, which it starts once the function has run a while, on background threads:
/// started here, that compiling overlaps the load (one thread repacking weights, the other cores
/// idle) instead of the first prompt, where a threaded engine's threads competed with the
/// compiler for the cores and ran baseline code meanwhile. The relaxed-SIMD build measures its
/// kernels' form (`relaxed::pairs`) here too. (Gemma 3 in fresh pages: load 1.6 s before, 1.5 after.)
pub fn warm_up(types: &[GgmlType]) -> Result<()> {
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    relaxed::pairs(relaxed::Family::Q8);
    let (rows, cols, tokens) = (ROWS * 16, QK_K * 4, 13);
    let x: Vec<f32> = (0..cols).map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0).collect();
    let mut out = vec![0.0f32; rows * tokens];
    let mut seen = Vec::new();
    for &ty in types.iter().filter(|&&t| is_packable(t)) {
        if seen.contains(&ty) {
            continue;
        }
        seen.push(ty);
        let w = PackedWeight::zeroed(ty, rows, cols)?;
        let acts = (0..tokens).map(|_| PackedActs::new(&super::quantize_acts(ty, &x))).collect::<Result<Vec<_>>>()?;
        w.matmul_band(&acts, 0, rows, &mut out)?;
        w.matmul_band(&acts[..1], 0, rows, &mut out[..rows])?;
    }
    Ok(())
}

/// Which form of the relaxed-SIMD kernels this engine runs faster, measured once per kernel
/// family (Q8_0's, the other 32-element formats', the K-quants'): the answer differs by family
/// (Xeon with AVX-VNNI, Chromium, GMAC/s 32-bit dot / pairs: Q8_0 at 8 tokens 25-28 / 23, one
/// token streaming from memory 7.4 / 6.2; Q4_K at 8 tokens 16-21 / 23-30, where the 32-bit form's
/// scale multiply is a slow `pmulld`). Both give the same exact integer sums (so the same
/// results, bit for bit); what differs is how engines lower them. The 32-bit dot product
/// (`i32x4.relaxed_dot_i8x16_i7x16_add_s`) is one instruction on ARM with the dot-product extension (`sdot`) and on x86 with AVX-VNNI (`vpdpbusd`), but five on
/// other x86 CPUs (`pmaddubsw`, `pmaddwd` by a ones vector it rebuilds each time, an add);
/// the 16-bit one (`i16x8.relaxed_dot_i8x16_i7x16_s`) is one `pmaddubsw` there but three
/// instructions on ARM. The "pairs" form adds two 16-bit pair sums (6-bit weights: at most
/// 2 * 2 * 63 * 128 < 2^15) before one widening, and applies a K-quant sub-block's scale in the
/// widening multiply-add (`i32x4.dot_i16x8_s`) instead of a 32-bit multiply.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
pub(crate) mod relaxed {
    use super::*;
    use std::sync::atomic::{AtomicU8, Ordering};

    /// 0: not measured yet; else [`MEASURED`] and, per [`Family`], its bit set for the pairs form.
    static FORM: AtomicU8 = AtomicU8::new(0);
    const MEASURED: u8 = 0x80;

    /// The relaxed-SIMD kernels whose form is chosen apart.
    #[derive(Clone, Copy)]
    pub enum Family {
        /// Q8_0 (`arch::group_dot_relaxed_q8`).
        Q8 = 0,
        /// The other 32-element formats (`arch::group_dot_relaxed`).
        Small = 1,
        /// The K-quants (`arch::kgroup_dot_relaxed`).
        K = 2,
    }

    impl Family {
        /// The family whose kernels multiply weights of `ty` (a packable type).
        fn of(ty: GgmlType) -> Family {
            if ty == GgmlType::Q8_0 {
                Family::Q8
            } else if is_k(ty) {
                Family::K
            } else {
                Family::Small
            }
        }
    }

    /// One weight type per family, the one its form is measured on.
    const MEASURED_ON: [GgmlType; 3] = [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4_K];

    /// The relaxed-SIMD kernel for weights of `ty` stored with offset `off`: Q8_0's whole
    /// bytes run the other 32-element formats' kernel in its 32-bit form (16-bit pair sums of
    /// bytes up to 255 would saturate), the rest the form measured for their family.
    pub fn chosen(ty: GgmlType, off: i32) -> GroupDot {
        if ty == GgmlType::Q8_0 && q8_whole(off) {
            return arch::group_dot_relaxed::<false>;
        }
        let family = Family::of(ty);
        kernel(family, pairs(family))
    }

    /// How this engine's `i32x4.relaxed_dot_i8x16_i7x16_add_s` reads its second operand's bytes
    /// with the top bit set, which WebAssembly leaves to the engine: V8 on x86 with AVX-VNNI
    /// (`vpdpbusd`) reads them unsigned, with AVX-VNNI-INT8 (`vpdpbssd`) and on ARM (`sdot`)
    /// signed, and without either it sums pairs in 16 bits that saturate (`pmaddubsw`).
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Q8Dot {
        /// Bytes read unsigned, no saturation: Q8_0 stored as `q + 128` (0..=255), one dot
        /// product per 16 bytes less `128 * sum(a)` per block.
        Unsigned = 1,
        /// Bytes read signed, no saturation: Q8_0 stored as it is, one dot product per 16 bytes.
        Signed = 2,
        /// Otherwise: the activations' positive and negative parts against the weights, two dot
        /// products per 16 bytes ([`arch::group_dot_relaxed_q8`]).
        Parts = 3,
    }

    /// 0: not probed yet; else a [`Q8Dot`].
    static Q8_DOT: AtomicU8 = AtomicU8::new(0);

    /// This engine's [`Q8Dot`], probed once: one dot product of bytes chosen so that each reading
    /// gives other sums (a pair of -128 * 255 saturates 16 bits).
    pub fn q8_dot() -> Q8Dot {
        match Q8_DOT.load(Ordering::Relaxed) {
            1 => Q8Dot::Unsigned,
            2 => Q8Dot::Signed,
            3 => Q8Dot::Parts,
            _ => {
                let d = probe();
                Q8_DOT.store(d as u8, Ordering::Relaxed);
                d
            }
        }
    }

    fn probe() -> Q8Dot {
        use core::arch::wasm32::*;
        let a: [i8; 16] = [-128, 127, -1, 5, -128, -128, 3, -7, 100, -100, 1, 2, -128, 127, 0, 9];
        let b: [u8; 16] = [255, 200, 128, 1, 255, 255, 130, 129, 77, 250, 128, 255, 255, 255, 0, 3];
        let (va, vb) = (std::hint::black_box(a), std::hint::black_box(b));
        // SAFETY: 16-byte reads of 16-byte arrays.
        let r = unsafe { i32x4_relaxed_dot_i8x16_i7x16_add(v128_load(va.as_ptr().cast()), v128_load(vb.as_ptr().cast()), i32x4_splat(std::hint::black_box(0))) };
        let got = [i32x4_extract_lane::<0>(r), i32x4_extract_lane::<1>(r), i32x4_extract_lane::<2>(r), i32x4_extract_lane::<3>(r)];
        let want = |signed: bool| -> [i32; 4] {
            core::array::from_fn(|l| (4 * l..4 * l + 4).map(|i| a[i] as i32 * if signed { b[i] as i8 as i32 } else { b[i] as i32 }).sum())
        };
        if got == want(false) {
            Q8Dot::Unsigned
        } else if got == want(true) {
            Q8Dot::Signed
        } else {
            Q8Dot::Parts
        }
    }

    /// The offset Q8_0 weights are stored with ([`super::q_offset`]).
    pub fn q8_offset() -> i32 {
        if q8_dot() == Q8Dot::Unsigned { 128 } else { 0 }
    }

    /// Whether Q8_0 weights stored with offset `off` run the whole-byte kernel.
    pub fn q8_whole(off: i32) -> bool {
        match q8_dot() {
            Q8Dot::Unsigned => off == 128,
            Q8Dot::Signed => off == 0,
            Q8Dot::Parts => false,
        }
    }

    /// Pack Q8_0 weights for the parts kernel from now on, whatever the engine (tests: that
    /// kernel where the engine would not run it), or as probed again.
    #[cfg(test)]
    pub fn force_q8_parts(parts: bool) {
        Q8_DOT.store(if parts { Q8Dot::Parts as u8 } else { probe() as u8 }, Ordering::Relaxed);
    }

    /// The kernel of `family` in its pairs form or not.
    fn kernel(family: Family, pairs: bool) -> GroupDot {
        match (family, pairs) {
            (Family::Q8, false) => arch::group_dot_relaxed_q8::<false>,
            (Family::Q8, true) => arch::group_dot_relaxed_q8::<true>,
            (Family::Small, false) => arch::group_dot_relaxed::<false>,
            (Family::Small, true) => arch::group_dot_relaxed::<true>,
            (Family::K, false) => arch::kgroup_dot_relaxed::<false>,
            (Family::K, true) => arch::kgroup_dot_relaxed::<true>,
        }
    }

    #[wasm_bindgen::prelude::wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(catch, js_namespace = performance, js_name = now)]
        fn performance_now() -> Result<f64, wasm_bindgen::JsValue>;
    }

    /// Whether `family`'s kernels run in the pairs form (every family measured on first use:
    /// both forms over a 128 x 2048 weight of the family and a tile of 8 activation vectors,
    /// alternating, 12 times each, about 0.35 ms a time; the faster minimum over the last 8
    /// wins, when the engine has compiled both with its optimizing tier: the first calls of a
    /// fresh module run baseline code, slower by several times and not alike. A tile, not one
    /// token as before: the tile separates the forms by 10-50%, one token in cache was within the
    /// noise and chose the form that lost for Q8_0 and the K-quants in one of three fresh pages.
    /// 55-90 ms once per module instance, within the load's noise: Gemma 3 loads in 1.6-1.7 s
    /// either way).
    /// Measured in Chromium on a Xeon with AVX-VNNI against the single form measured before, fresh
    /// pages, Gemma 3: 1 thread prefill 1.08-1.11x, decode 1.07-1.09x; 2 threads prefill 1.13x.
    pub fn pairs(family: Family) -> bool {
        let mut f = FORM.load(Ordering::Relaxed);
        if f == 0 {
            f = MEASURED;
            // Q8_0's whole bytes run the 32-bit form only.
            for ty in MEASURED_ON.into_iter().filter(|&ty| ty != GgmlType::Q8_0 || q8_dot() == Q8Dot::Parts) {
                if measure(ty).unwrap_or(false) {
                    f |= 1 << Family::of(ty) as u8;
                }
            }
            FORM.store(f, Ordering::Relaxed);
        }
        f & (1 << family as u8) != 0
    }

    /// Run the given form from now on, every family (tests: both forms against the scalar
    /// reference).
    #[cfg(test)]
    pub fn force(pairs: bool) {
        FORM.store(MEASURED | if pairs { 7 } else { 0 }, Ordering::Relaxed);
    }

    fn measure(ty: GgmlType) -> Option<bool> {
        let (rows, cols, tokens) = (128, 2048, arch::WIDE);
        let w = PackedWeight::zeroed(ty, rows, cols).ok()?;
        let x: Vec<f32> = (0..cols).map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0).collect();
        let one = PackedActs::new(&super::super::quantize_acts(ty, &x)).ok()?;
        let acts: Vec<PackedActs> = (0..tokens).map(|_| one.clone()).collect();
        let mut out = vec![0.0f32; rows * tokens];
        let mut best = [f64::INFINITY; 2];
        for round in 0..24 {
            let pairs = round % 2 == 1;
            let kernel = self::kernel(Family::of(ty), pairs);
            let t0 = performance_now().ok()?;
            for _ in 0..4 {
                w.matmul_band_with(kernel, &acts, 0, rows, &mut out).ok()?;
            }
            let ms = performance_now().ok()? - t0;
            if round >= 8 {
                best[pairs as usize] = best[pairs as usize].min(ms);
            }
        }
        Some(best[1] < best[0])
    }
}

/// The vector kernel, once, over a handful of operations that WebAssembly SIMD128 and x86-64 SSE2
/// both have as single instructions (`i32x4_dot_i16x8` is `pmaddwd`).
#[cfg(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64"))]
pub mod arch;
