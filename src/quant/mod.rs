//! Quantization formats: ggml block structs, scalar reference kernels, SIMD128 kernels.
//!
//! # Layout and contract
//! Weights stay in GGUF block layout: a weight of `n_rows x n_cols` (ggml `ne0 = n_cols`) is
//! `n_rows` rows of `n_cols / block_size` blocks back to back ([`blocks`] has the structs, after
//! `ggml-common.h`). Model code never looks inside: it quantizes an activation vector once per
//! weight type with [`quantize_acts`] and calls [`matvec`] (or [`matmul`] for several vectors).
//!
//! As in llama.cpp's CPU backend, activations are quantized to the weight's "vec_dot type":
//!
//! | weight              | activations | dot product          |
//! |---------------------|-------------|----------------------|
//! | Q4_0, Q5_0, Q8_0    | Q8_0        | `vec_dot_q4_0_q8_0`… |
//! | Q4_1, Q5_1, Q8_1    | Q8_1        | `vec_dot_q4_1_q8_1`… |
//! | Q2_K..Q6_K, Q8_K    | Q8_K        | `vec_dot_q4_K_q8_K`… |
//! | F16 / BF16 / F32    | same        | f32 products         |
//!
//! # Kernels
//! [`scalar`] is the reference and the fallback; [`simd128`] (wasm32 with `+simd128` only) has the
//! same function names for the formats the CPU decoder spends its time in (Q8_0, Q5_0, Q4_0, Q4_K,
//! Q6_K, F16, and the Q8_0 / Q8_K activation quantizers) and re-exports the scalar ones for the
//! rest. [`kernels`] is the one place that picks between them.

mod blocks;
pub mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd128;
#[doc(hidden)]
pub mod testing;
mod types;

#[cfg(test)]
mod tests;

pub use blocks::*;
pub use types::{ggml_type_name, GgmlType};

use crate::error::{Error, Result};

/// The kernels in use: SIMD128 on wasm32 built with `+simd128`, scalar everywhere else.
/// This is the only dispatch site between the two.
pub mod kernels {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    pub use super::simd128::*;
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    pub use super::scalar::*;
}

impl GgmlType {
    /// The format activations are quantized to for a dot product with a weight of this type
    /// (ggml's `vec_dot_type`).
    pub const fn vec_dot_type(self) -> GgmlType {
        match self {
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => GgmlType::Q8_0,
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => GgmlType::Q8_1,
            GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K
            | GgmlType::Q8_K => GgmlType::Q8_K,
            GgmlType::F32 => GgmlType::F32,
            GgmlType::F16 => GgmlType::F16,
            GgmlType::BF16 => GgmlType::BF16,
        }
    }
}

/// One activation vector, quantized once for all rows of weights of a given type.
/// Holds `len()` elements (the tail block, if any, is zero-padded; [`matvec`] rejects a length
/// that does not match the weight's columns).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedActs {
    len: usize,
    data: ActsData,
}

#[derive(Clone, Debug, PartialEq)]
enum ActsData {
    F32(Vec<f32>),
    F16(Vec<u16>),
    BF16(Vec<u16>),
    Q8_0(Vec<BlockQ8_0>),
    Q8_1(Vec<BlockQ8_1>),
    Q8K(Vec<BlockQ8K>),
}

impl QuantizedActs {
    /// Number of activation values (before padding).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The format the values are stored in (the weight type's [`GgmlType::vec_dot_type`]).
    pub fn ty(&self) -> GgmlType {
        match &self.data {
            ActsData::F32(_) => GgmlType::F32,
            ActsData::F16(_) => GgmlType::F16,
            ActsData::BF16(_) => GgmlType::BF16,
            ActsData::Q8_0(_) => GgmlType::Q8_0,
            ActsData::Q8_1(_) => GgmlType::Q8_1,
            ActsData::Q8K(_) => GgmlType::Q8_K,
        }
    }

    /// The stored bytes in GGUF block layout (e.g. to upload or compare with llama.cpp's).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.data {
            ActsData::F32(v) => unsafe_bytes(v),
            ActsData::F16(v) | ActsData::BF16(v) => unsafe_bytes(v),
            ActsData::Q8_0(v) => block_bytes(v),
            ActsData::Q8_1(v) => block_bytes(v),
            ActsData::Q8K(v) => block_bytes(v),
        }
    }
}

fn unsafe_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: only used with f32 / u16 (no padding, every byte initialized).
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// Quantize activations `x` (length = the weight's `n_cols`) the way llama.cpp does for a weight
/// of type `for_weight`: to Q8_0, Q8_1 or Q8_K blocks, or to f16 / bf16 / f32 values.
pub fn quantize_acts(for_weight: GgmlType, x: &[f32]) -> QuantizedActs {
    let ty = for_weight.vec_dot_type();
    let bs = ty.block_size();
    let n_blocks = x.len().div_ceil(bs);
    // Whole blocks straight from x; a partial tail block through a zero-padded copy.
    let whole = x.len() / bs * bs;
    let padded: Vec<f32>;
    let (head, tail) = if whole == x.len() {
        (x, None)
    } else {
        let mut t = vec![0.0; bs];
        t[..x.len() - whole].copy_from_slice(&x[whole..]);
        padded = t;
        (&x[..whole], Some(&padded[..]))
    };
    macro_rules! blocks {
        ($variant:ident, $block:ty, $f:path) => {{
            let mut v = vec![<$block>::default(); n_blocks];
            $f(head, &mut v[..whole / bs]);
            if let Some(t) = tail {
                $f(t, &mut v[whole / bs..]);
            }
            ActsData::$variant(v)
        }};
    }
    let data = match ty {
        GgmlType::Q8_0 => blocks!(Q8_0, BlockQ8_0, kernels::quantize_row_q8_0),
        GgmlType::Q8_1 => blocks!(Q8_1, BlockQ8_1, kernels::quantize_row_q8_1),
        GgmlType::Q8_K => blocks!(Q8K, BlockQ8K, kernels::quantize_row_q8_K),
        GgmlType::F16 => {
            let mut v = vec![0u16; x.len()];
            kernels::quantize_row_f16(x, &mut v);
            ActsData::F16(v)
        }
        GgmlType::BF16 => {
            let mut v = vec![0u16; x.len()];
            kernels::quantize_row_bf16(x, &mut v);
            ActsData::BF16(v)
        }
        _ => ActsData::F32(x.to_vec()),
    };
    QuantizedActs { len: x.len(), data }
}

/// Dequantize one row (or any whole number of blocks) of `ty` into `dst`
/// (`dst.len()` elements, `src.len() == ty.row_bytes(dst.len())`).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let want = ty.row_bytes(dst.len()).ok_or_else(|| {
        Error::invalid_argument(format!(
            "cannot dequantize {} values of {ty}: not a multiple of its block size {}",
            dst.len(),
            ty.block_size()
        ))
    })?;
    if src.len() != want {
        return Err(Error::invalid_argument(format!(
            "{ty} row of {} values needs {want} bytes, got {}",
            dst.len(),
            src.len()
        )));
    }
    use kernels as k;
    match ty {
        GgmlType::F32 => dst.copy_from_slice(&as_f32s(src)?),
        GgmlType::F16 => k::dequantize_row_f16(&as_u16s(src)?, dst),
        GgmlType::BF16 => k::dequantize_row_bf16(&as_u16s(src)?, dst),
        GgmlType::Q4_0 => k::dequantize_row_q4_0(&as_blocks(src)?, dst),
        GgmlType::Q4_1 => k::dequantize_row_q4_1(&as_blocks(src)?, dst),
        GgmlType::Q5_0 => k::dequantize_row_q5_0(&as_blocks(src)?, dst),
        GgmlType::Q5_1 => k::dequantize_row_q5_1(&as_blocks(src)?, dst),
        GgmlType::Q8_0 => k::dequantize_row_q8_0(&as_blocks(src)?, dst),
        GgmlType::Q8_1 => k::dequantize_row_q8_1(&as_blocks(src)?, dst),
        GgmlType::Q2_K => k::dequantize_row_q2_K(&as_blocks(src)?, dst),
        GgmlType::Q3_K => k::dequantize_row_q3_K(&as_blocks(src)?, dst),
        GgmlType::Q4_K => k::dequantize_row_q4_K(&as_blocks(src)?, dst),
        GgmlType::Q5_K => k::dequantize_row_q5_K(&as_blocks(src)?, dst),
        GgmlType::Q6_K => k::dequantize_row_q6_K(&as_blocks(src)?, dst),
        GgmlType::Q8_K => k::dequantize_row_q8_K(&as_blocks(src)?, dst),
    }
    Ok(())
}

/// `out[r] = dot(row r of w, x)` for a weight of `n_rows x n_cols` in GGUF block layout and
/// activations `acts = quantize_acts(ty, x)` with `x.len() == n_cols`.
pub fn matvec(
    ty: GgmlType,
    w: &[u8],
    n_rows: usize,
    n_cols: usize,
    acts: &QuantizedActs,
    out: &mut [f32],
) -> Result<()> {
    matmul(ty, w, n_rows, n_cols, std::slice::from_ref(acts), out)
}

/// `out[t * n_rows + r] = dot(row r of w, x_t)` for several activation vectors (prefill):
/// each weight row is read once and dotted with every vector while it is hot in cache.
pub fn matmul(
    ty: GgmlType,
    w: &[u8],
    n_rows: usize,
    n_cols: usize,
    acts: &[QuantizedActs],
    out: &mut [f32],
) -> Result<()> {
    let row_bytes = ty.row_bytes(n_cols).ok_or_else(|| {
        Error::invalid_argument(format!(
            "{ty} weight with {n_cols} columns: not a multiple of its block size {}",
            ty.block_size()
        ))
    })?;
    if n_rows.checked_mul(row_bytes) != Some(w.len()) {
        return Err(Error::invalid_argument(format!(
            "{ty} weight of {n_rows} x {n_cols} needs {n_rows} * {row_bytes} bytes, got {}",
            w.len()
        )));
    }
    if n_rows.checked_mul(acts.len()) != Some(out.len()) {
        return Err(Error::invalid_argument(format!(
            "matmul output has {} values, expected {} rows x {} vectors",
            out.len(),
            n_rows,
            acts.len()
        )));
    }
    for (t, a) in acts.iter().enumerate() {
        if a.len != n_cols || a.ty() != ty.vec_dot_type() {
            return Err(Error::invalid_argument(format!(
                "activation vector {t} is {} values of {}, but a {ty} weight with {n_cols} \
                 columns needs {n_cols} values quantized with quantize_acts({ty}, ..)",
                a.len,
                a.ty()
            )));
        }
    }
    if n_rows == 0 || acts.is_empty() {
        return Ok(());
    }
    use kernels as k;
    macro_rules! run {
        ($variant:ident, $f:path, $weights:ident) => {{
            let ys: Vec<&[_]> = acts
                .iter()
                .map(|a| match &a.data {
                    ActsData::$variant(v) => &v[..],
                    _ => unreachable!("activation type checked above"),
                })
                .collect();
            for r in 0..n_rows {
                let row = $weights(&w[r * row_bytes..(r + 1) * row_bytes])?;
                for (t, y) in ys.iter().enumerate() {
                    out[t * n_rows + r] = $f(&row, y);
                }
            }
        }};
    }
    match ty {
        GgmlType::F32 => run!(F32, k::vec_dot_f32, as_f32s),
        GgmlType::F16 => run!(F16, k::vec_dot_f16, as_u16s),
        GgmlType::BF16 => run!(BF16, k::vec_dot_bf16, as_u16s),
        GgmlType::Q4_0 => run!(Q8_0, k::vec_dot_q4_0_q8_0, as_blocks),
        GgmlType::Q5_0 => run!(Q8_0, k::vec_dot_q5_0_q8_0, as_blocks),
        GgmlType::Q8_0 => run!(Q8_0, k::vec_dot_q8_0_q8_0, as_blocks),
        GgmlType::Q4_1 => run!(Q8_1, k::vec_dot_q4_1_q8_1, as_blocks),
        GgmlType::Q5_1 => run!(Q8_1, k::vec_dot_q5_1_q8_1, as_blocks),
        GgmlType::Q8_1 => run!(Q8_1, k::vec_dot_q8_1_q8_1, as_blocks),
        GgmlType::Q2_K => run!(Q8K, k::vec_dot_q2_K_q8_K, as_blocks),
        GgmlType::Q3_K => run!(Q8K, k::vec_dot_q3_K_q8_K, as_blocks),
        GgmlType::Q4_K => run!(Q8K, k::vec_dot_q4_K_q8_K, as_blocks),
        GgmlType::Q5_K => run!(Q8K, k::vec_dot_q5_K_q8_K, as_blocks),
        GgmlType::Q6_K => run!(Q8K, k::vec_dot_q6_K_q8_K, as_blocks),
        GgmlType::Q8_K => run!(Q8K, k::vec_dot_q8_K_q8_K, as_blocks),
    }
    Ok(())
}

/// One quantized dot product: a weight row of `ty` (raw bytes) with activations from
/// [`quantize_acts`]`(ty, x)`. Same checks as [`matvec`] with one row.
pub fn vec_dot(ty: GgmlType, w_row: &[u8], acts: &QuantizedActs) -> Result<f32> {
    let mut out = [0.0f32];
    matvec(ty, w_row, 1, acts.len(), acts, &mut out)?;
    Ok(out[0])
}
