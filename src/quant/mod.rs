//! Quantization formats: ggml block structs, scalar reference kernels, the CPU's repacked weights.
//!
//! # Layout and contract
//! In GGUF a weight of `n_rows x n_cols` (ggml `ne0 = n_cols`) is `n_rows` rows of
//! `n_cols / block_size` blocks back to back ([`blocks`] has the structs, after `ggml-common.h`).
//! Storage and the GPU keep that layout; the CPU backend repacks each quantized weight at load
//! into [`packed`]'s layout and multiplies with [`packed::PackedWeight::matmul_band`]. Model code
//! never looks inside either.
//!
//! As in llama.cpp's CPU backend, activations are quantized to the weight's "vec_dot type"
//! ([`quantize_acts`]):
//!
//! | weight              | activations | dot product          |
//! |---------------------|-------------|----------------------|
//! | Q4_0, Q5_0, Q8_0    | Q8_0        | `vec_dot_q4_0_q8_0`… |
//! | Q4_1, Q5_1, Q8_1    | Q8_1        | `vec_dot_q4_1_q8_1`… |
//! | Q2_K..Q6_K, Q8_K    | Q8_K        | `vec_dot_q4_K_q8_K`… |
//! | F16 / BF16 / F32    | same        | f32 products         |
//!
//! # Kernels
//! [`scalar`] is the reference (and serves [`matvec`]/[`matmul`] on GGUF bytes, which the CPU
//! backend still uses for F16/BF16/F32 weights). [`packed`] holds the quantized products the CPU
//! runs: WebAssembly SIMD128 (plus relaxed SIMD in the second wasm build), x86-64 SSE2, or its
//! scalar reference elsewhere. `simd128` has the Q8_0 / Q8_K activation quantizers and the F16
//! kernels for wasm; [`kernels`] picks between it and [`scalar`].
//!
//! # The format table
//! Each format is one row of `ggml_types!` in `types.rs` (id, sizes, block struct, vec-dot type,
//! kernel names, GPU helper). This module's per-format dispatch (`mod dispatch`: one match arm per
//! row for [`quantize_acts`], [`dequantize_row`] and [`matmul`]) and the activation storage
//! (`ActsData`, one variant per activation format) are generated from it. Adding a format: its
//! block struct in `blocks.rs`, its kernels in `scalar.rs`, its unpacking in `packed/mod.rs`
//! (if quantized), its WGSL helper in `shaders/common/`, and one row in the table.

mod blocks;
pub mod packed;
pub mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd128;
#[doc(hidden)]
pub mod random;
mod types;

#[cfg(test)]
mod tests;

pub use blocks::*;
pub use types::{ggml_type_name, GgmlType};
pub(crate) use types::ggml_types;

use crate::error::{Error, Result};

/// The kernels in use: SIMD128 on wasm32 built with `+simd128`, scalar everywhere else.
/// This is the only dispatch site between the two.
pub mod kernels {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    pub use super::simd128::*;
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    pub use super::scalar::*;
}

/// One activation vector, quantized once for all rows of weights of a given type.
/// Holds `len()` elements (the tail block, if any, is zero-padded; [`matvec`] rejects a length
/// that does not match the weight's columns).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedActs {
    len: usize,
    data: ActsData,
}

/// The activation formats' rows: one variant per table row with a `quantize` kernel, named as
/// the [`GgmlType`], holding its `repr` (generated from [`types::ggml_types!`]).
macro_rules! acts_data {
    (@walk [$($v:tt)*]) => {
        #[derive(Clone, Debug, PartialEq)]
        #[allow(non_camel_case_types)]
        enum ActsData {
            $($v)*
        }
        impl ActsData {
            fn ty(&self) -> GgmlType {
                acts_data!(@ty self [$($v)*])
            }
            fn as_bytes(&self) -> &[u8] {
                acts_data!(@bytes self [$($v)*])
            }
        }
    };
    (@walk [$($v:tt)*] $t:ident $repr:ty, -; $($rest:tt)*) => { acts_data!(@walk [$($v)*] $($rest)*); };
    (@walk [$($v:tt)*] $t:ident $repr:ty, $q:ident; $($rest:tt)*) => {
        acts_data!(@walk [$($v)* $t(Vec<$repr>),] $($rest)*);
    };
    (@ty $s:ident [$($t:ident($x:ty),)*]) => { match $s { $(ActsData::$t(_) => GgmlType::$t),* } };
    (@bytes $s:ident [$($t:ident($x:ty),)*]) => { match $s { $(ActsData::$t(v) => pod_bytes(v)),* } };
    ($($t:ident = $id:literal { block: $bs:literal, bytes: $bytes:literal, repr: $repr:ty,
        dot: $dot:ident, view: $view:ident, dequantize: $deq:ident, vec_dot: $vd:ident,
        quantize: $q:tt, wgsl: $wgsl:literal, dot_blk: $blk:literal }),* $(,)?) => {
        acts_data!(@walk [] $($t $repr, $q;)*);
    };
}
types::ggml_types!(acts_data);

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
        self.data.ty()
    }

    /// The stored bytes in GGUF block layout (e.g. to upload or compare with llama.cpp's).
    pub fn as_bytes(&self) -> &[u8] {
        self.data.as_bytes()
    }
}

/// The bytes of activation values: block structs (no padding, `Block`'s contract) or f32 / u16.
fn pod_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: only used with the activation formats' reprs: f32, u16 and `Block` structs, none
    // of which has padding, so every byte is initialized.
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
    let mut data = dispatch::quantize(ty, head, tail, n_blocks);
    if !x.iter().all(|v| v.is_finite()) {
        poison_non_finite(&mut data, x, bs);
    }
    QuantizedActs { len: x.len(), data }
}

/// A block of activations holding NaN or an infinity gets a NaN scale, so every product with it
/// is NaN as the exact product is (the quants alone would round NaN to 0 and give finite
/// garbage; the sampler refuses NaN logits with a typed error). The float formats keep NaN as is.
fn poison_non_finite(data: &mut ActsData, x: &[f32], bs: usize) {
    const F16_NAN: u16 = 0x7e00;
    for (i, chunk) in x.chunks(bs).enumerate() {
        if chunk.iter().all(|v| v.is_finite()) {
            continue;
        }
        match data {
            ActsData::Q8_0(b) => b[i].d = F16_NAN,
            ActsData::Q8_1(b) => (b[i].d, b[i].s) = (F16_NAN, F16_NAN),
            ActsData::Q8_K(b) => b[i].d = f32::NAN,
            _ => {}
        }
    }
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
    dispatch::dequantize(ty, src, dst)
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
    dispatch::matmul(ty, w, row_bytes, n_rows, acts, out)
}

/// One quantized dot product: a weight row of `ty` (raw bytes) with activations from
/// [`quantize_acts`]`(ty, x)`. Same checks as [`matvec`] with one row.
pub fn vec_dot(ty: GgmlType, w_row: &[u8], acts: &QuantizedActs) -> Result<f32> {
    let mut out = [0.0f32];
    matvec(ty, w_row, 1, acts.len(), acts, &mut out)?;
    Ok(out[0])
}

/// The per-format dispatch of [`quantize_acts`], [`dequantize_row`] and [`matmul`], one match arm
/// per row of [`types::ggml_types!`] calling that row's kernels in [`kernels`]. Arguments are
/// checked by the callers.
mod dispatch {
    use super::kernels as k;
    use super::*;

    /// `head` (whole blocks) and the zero-padded `tail` block, if any, as `n_blocks` blocks.
    macro_rules! quantize_blocks {
        ($t:ident, -, $repr:ty, $ty:ident, $head:ident, $tail:ident, $n:ident) => {
            unreachable!("{} is not an activation format (checked in types.rs)", $ty)
        };
        ($t:ident, $q:ident, $repr:ty, $ty:ident, $head:ident, $tail:ident, $n:ident) => {{
            let mut v = vec![<$repr>::default(); $n];
            let whole = $head.len() / $ty.block_size();
            k::$q($head, &mut v[..whole]);
            if let Some(t) = $tail {
                k::$q(t, &mut v[whole..]);
            }
            ActsData::$t(v)
        }};
    }

    /// Every weight row against every activation vector (all of the weight's vec-dot type).
    macro_rules! matmul_rows {
        ($dot:ident, $vd:ident, $view:ident, $w:ident, $row_bytes:ident, $n_rows:ident, $acts:ident, $out:ident) => {{
            let ys: Vec<&[_]> = $acts
                .iter()
                .map(|a| match &a.data {
                    ActsData::$dot(v) => &v[..],
                    #[allow(unreachable_patterns)]
                    _ => unreachable!("activation type checked by the caller"),
                })
                .collect();
            for r in 0..$n_rows {
                let row = $view(&$w[r * $row_bytes..(r + 1) * $row_bytes])?;
                for (t, y) in ys.iter().enumerate() {
                    $out[t * $n_rows + r] = k::$vd(&row, y);
                }
            }
        }};
    }

    macro_rules! dispatch {
        ($($t:ident = $id:literal { block: $bs:literal, bytes: $bytes:literal, repr: $repr:ty,
            dot: $dot:ident, view: $view:ident, dequantize: $deq:ident, vec_dot: $vd:ident,
            quantize: $q:tt, wgsl: $wgsl:literal, dot_blk: $blk:literal }),* $(,)?) => {
            /// `ty` is an activation format ([`GgmlType::is_act_type`]).
            pub(super) fn quantize(ty: GgmlType, head: &[f32], tail: Option<&[f32]>, n_blocks: usize) -> ActsData {
                match ty {
                    $(GgmlType::$t => quantize_blocks!($t, $q, $repr, ty, head, tail, n_blocks),)*
                }
            }

            pub(super) fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
                match ty {
                    $(GgmlType::$t => k::$deq(&$view(src)?, dst),)*
                }
                Ok(())
            }

            pub(super) fn matmul(
                ty: GgmlType,
                w: &[u8],
                row_bytes: usize,
                n_rows: usize,
                acts: &[QuantizedActs],
                out: &mut [f32],
            ) -> Result<()> {
                match ty {
                    $(GgmlType::$t => matmul_rows!($dot, $vd, $view, w, row_bytes, n_rows, acts, out),)*
                }
                Ok(())
            }
        };
    }

    types::ggml_types!(dispatch);
}
