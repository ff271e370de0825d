//! ggml block structs, byte for byte as GGUF stores them, the [`Block`] trait (its impls are
//! generated from the format table in `types.rs`), the byte views (`as_blocks`, `as_u16s`,
//! `as_f32s`) and the f16 / bf16 conversions.
//!
//! Layouts follow `ggml/src/ggml-common.h` (the `block_*` typedefs; `QK_K = 256`, `K_SCALE_SIZE = 12`).
//! Every field is a plain integer (f16 scales are `u16` bit patterns, Q8_K's scale is an `f32`), so
//! every bit pattern is a valid value and a suitably aligned byte slice can be viewed as blocks.
//! Multi-byte fields are little-endian in GGUF; we only build for little-endian targets (x86-64,
//! aarch64, wasm32).

use std::borrow::Cow;

use super::GgmlType;
use crate::error::{Error, Result};

#[cfg(target_endian = "big")]
compile_error!("browser-llm reads GGUF blocks in place and needs a little-endian target");

/// Elements per block of the 32-element formats (`QK4_0`, `QK8_0`, ...).
pub const QK: usize = 32;
/// Elements per K-quant super-block (`QK_K`).
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales and mins in Q4_K / Q5_K (`K_SCALE_SIZE`).
pub const K_SCALE_SIZE: usize = 12;

/// `block_q4_0`: `x[i] = d * ((qs[i % 16] >> (4 * (i / 16))) & 0xF) - 8)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ4_0 {
    pub d: u16,           // f16 scale
    pub qs: [u8; QK / 2], // nibbles: element j in the low nibble of qs[j], j + 16 in the high one
}

/// `block_q4_1`: `x[i] = d * q + m`, q unsigned 4-bit, nibble order as Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ4_1 {
    pub d: u16, // f16 scale
    pub m: u16, // f16 min
    pub qs: [u8; QK / 2],
}

/// `block_q5_0`: `x[i] = d * (q - 16)`, q = 4 low bits from `qs` (Q4_0 order) | bit i of `qh` << 4.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ5_0 {
    pub d: u16,       // f16 scale
    pub qh: [u8; 4],  // 5th bits, a little-endian u32: bit j for element j
    pub qs: [u8; QK / 2],
}

/// `block_q5_1`: `x[i] = d * q + m`, q unsigned 5-bit, bits as Q5_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ5_1 {
    pub d: u16, // f16 scale
    pub m: u16, // f16 min
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// `block_q8_0`: `x[i] = d * qs[i]`. Also the activation format for Q4_0 / Q5_0 / Q8_0 weights.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ8_0 {
    pub d: u16, // f16 scale
    pub qs: [i8; QK],
}

/// `block_q8_1`: Q8_0 plus `s = d * sum(qs)` (f16). The activation format for Q4_1 / Q5_1 weights.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ8_1 {
    pub d: u16, // f16 scale
    pub s: u16, // f16: d * sum(qs)
    pub qs: [i8; QK],
}

/// `block_q2_K`: 16 sub-blocks of 16; `x = d * (scales[s] & 0xF) * q - dmin * (scales[s] >> 4)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16], // 4-bit scale (low) and 4-bit min (high) per sub-block
    pub qs: [u8; QK_K / 4],      // 2-bit quants
    pub d: u16,                  // f16 super-block scale for the scales
    pub dmin: u16,               // f16 super-block scale for the mins
}

/// `block_q3_K`: 16 sub-blocks of 16; `x = d * (scale - 32) * (q2 - (hbit ? 0 : 4))`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],   // high bit of each quant
    pub qs: [u8; QK_K / 4],      // low 2 bits
    pub scales: [u8; 12],        // 16 6-bit scales, packed
    pub d: u16,                  // f16 super-block scale
}

/// `block_q4_K`: 8 sub-blocks of 32; `x = d * sc * q - dmin * m`, 6-bit sc/m packed in `scales`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4K {
    pub d: u16,                      // f16 super-block scale for the scales
    pub dmin: u16,                   // f16 super-block scale for the mins
    pub scales: [u8; K_SCALE_SIZE],  // 8 scales and 8 mins, 6 bits each
    pub qs: [u8; QK_K / 2],          // 4-bit quants, 64 elements per 32 bytes (low then high nibbles)
}

/// `block_q5_K`: Q4_K plus a 5th bit per quant in `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],  // bit 2j / 2j+1 of qh[l]: 5th bit of element l of sub-block pair j
    pub qs: [u8; QK_K / 2],
}

/// `block_q6_K`: 16 sub-blocks of 16; `x = d * scales[s] * (q - 32)`, q 6-bit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],      // low 4 bits
    pub qh: [u8; QK_K / 4],      // high 2 bits
    pub scales: [i8; QK_K / 16], // 8-bit signed scales
    pub d: u16,                  // f16 super-block scale
}

/// `block_q8_K`: the activation format for K-quant weights. `d` is an f32 here, and `bsums` holds
/// the sum of each group of 16 quants (used to apply the weights' mins).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

impl Default for BlockQ8K {
    fn default() -> Self {
        BlockQ8K { d: 0.0, qs: [0; QK_K], bsums: [0; QK_K / 16] }
    }
}

/// A ggml block type: plain old data of a fixed size, viewable from GGUF bytes.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain only integer / float fields (every bit pattern
/// valid), have no padding, and have `size_of::<Self>() == Self::TYPE.type_size()`.
pub unsafe trait Block: Copy + 'static {
    const TYPE: GgmlType;
}

macro_rules! blocks {
    // Rows viewed with `as_blocks` are block structs; the float formats (`f32`, `u16`) are not.
    (@impl as_blocks, $t:ty, $g:ident) => {
        // SAFETY: repr(C), integer fields only, size checked against ggml's type_size just below.
        unsafe impl Block for $t {
            const TYPE: GgmlType = GgmlType::$g;
        }
        const _: () = assert!(std::mem::size_of::<$t>() == GgmlType::$g.type_size());
        const _: () = assert!(GgmlType::$g.block_size() == QK || GgmlType::$g.block_size() == QK_K);
    };
    (@impl $view:ident, $t:ty, $g:ident) => {
        const _: () = assert!(std::mem::size_of::<$t>() == GgmlType::$g.type_size());
        const _: () = assert!(GgmlType::$g.block_size() == 1);
    };
    ($($g:ident = $id:literal { block: $bs:literal, bytes: $bytes:literal, repr: $repr:ty,
        dot: $dot:ident, view: $view:ident, dequantize: $deq:ident, vec_dot: $vd:ident,
        quantize: $q:tt, wgsl: $wgsl:literal, dot_blk: $blk:literal }),* $(,)?) => {
        $(blocks!(@impl $view, $repr, $g);)*
    };
}

// The `Block` impls of the format table's block structs.
super::types::ggml_types!(blocks);

/// View `bytes` as blocks of `B`: borrowed when the slice is aligned (GGUF data is 32-byte aligned
/// and every row is a whole number of blocks, so this is the normal case), copied otherwise.
/// Errors if `bytes` is not a whole number of blocks.
pub fn as_blocks<B: Block>(bytes: &[u8]) -> Result<Cow<'_, [B]>> {
    let size = std::mem::size_of::<B>();
    if bytes.len() % size != 0 {
        return Err(Error::invalid_argument(format!(
            "{} data of {} bytes is not a whole number of {size}-byte blocks",
            B::TYPE,
            bytes.len()
        )));
    }
    let n = bytes.len() / size;
    if bytes.as_ptr() as usize % std::mem::align_of::<B>() == 0 {
        // SAFETY: aligned, in bounds (n * size == len), and B is valid for any bit pattern.
        Ok(Cow::Borrowed(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const B, n) }))
    } else {
        let v = (0..n)
            // SAFETY: each read is in bounds; read_unaligned has no alignment requirement.
            .map(|i| unsafe { std::ptr::read_unaligned(bytes.as_ptr().add(i * size) as *const B) })
            .collect();
        Ok(Cow::Owned(v))
    }
}

/// View `bytes` as little-endian u16 elements (F16 / BF16 data), borrowed when aligned.
pub fn as_u16s(bytes: &[u8]) -> Result<Cow<'_, [u16]>> {
    as_scalars(bytes, u16::from_le_bytes)
}

/// View `bytes` as f32 elements (F32 data), borrowed when aligned.
pub fn as_f32s(bytes: &[u8]) -> Result<Cow<'_, [f32]>> {
    as_scalars(bytes, f32::from_le_bytes)
}

fn as_scalars<T: Copy, const N: usize>(bytes: &[u8], from: fn([u8; N]) -> T) -> Result<Cow<'_, [T]>> {
    if bytes.len() % N != 0 {
        return Err(Error::invalid_argument(format!(
            "{} bytes is not a whole number of {N}-byte elements",
            bytes.len()
        )));
    }
    let n = bytes.len() / N;
    if bytes.as_ptr() as usize % std::mem::align_of::<T>() == 0 {
        // SAFETY: aligned, in bounds, and T (u16 / f32) is valid for any bit pattern.
        Ok(Cow::Borrowed(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, n) }))
    } else {
        Ok(Cow::Owned(bytes.chunks_exact(N).map(|c| from(c.try_into().unwrap())).collect()))
    }
}

/// f16 bits -> f32 (exact).
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    // Branch-light and exact: move exponent and mantissa into f32 position and rebias by
    // multiplying with 2^112 (this also normalizes subnormals); inf / NaN get an all-ones exponent.
    let em = (h & 0x7fff) as u32;
    let sign = ((h & 0x8000) as u32) << 16;
    let v = if em >= 0x7c00 {
        (em << 13) | 0x7f80_0000
    } else {
        (f32::from_bits(em << 13) * f32::from_bits(0x7780_0000)).to_bits()
    };
    f32::from_bits(v | sign)
}

/// f32 -> f16 bits, round to nearest even (as `GGML_FP32_TO_FP16`).
#[inline(always)]
pub fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// bf16 bits -> f32 (exact).
#[inline(always)]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// f32 -> bf16 bits, round to nearest even, NaN kept quiet (as ggml's `ggml_compute_fp32_to_bf16`).
#[inline(always)]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16; // quiet NaN
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}
