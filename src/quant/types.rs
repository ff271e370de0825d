//! ggml tensor types: the format table, ids as stored in GGUF, block geometry, and names.
//!
//! [`ggml_types!`] is the one table of the formats this engine decodes. Everything else about a
//! format is generated from it: here the [`GgmlType`] enum, [`GgmlType::ALL`], the const fns
//! (`id`, `name`, `block_size`, `type_size`, `vec_dot_type`, `wgsl_helper`, `has_dot_blk`) and the
//! "supported" list of the unsupported-type error; in `blocks.rs` the [`Block`](super::Block)
//! impls; in `quant/mod.rs` the CPU dispatch (`quantize_acts`, `dequantize_row`, `matmul`); in
//! `backend/gpu/shader.rs` the registry entries of the per-format WGSL helpers.
//!
//! Ids and sizes follow ggml's `ggml_type` enum and `ggml_type_traits` (ggml/src/ggml.c,
//! ggml/include/ggml.h). A quantized row of `n` elements is `n / block_size` blocks of `type_size`
//! bytes each, stored back to back; `n` must be a multiple of `block_size`.

use crate::error::{Error, Result};

/// The format table. `ggml_types!(callback)` expands to `callback! { rows }`; every row is
///
/// `NAME = ggml id { block, bytes, repr, dot, view, dequantize, vec_dot, quantize, wgsl, dot_blk }`
///
/// - `NAME`: the [`GgmlType`] variant, also its ggml name; the id is ggml's type id;
/// - `block`, `bytes`: elements and bytes per block (`ggml_type_traits`' `blck_size`, `type_size`);
/// - `repr`: one element of a row in memory: a block struct of `blocks.rs`, or `f32` / `u16`;
/// - `dot`: the `vec_dot_type` (activations are quantized to it; its row must have a `quantize`);
/// - `view`: raw GGUF bytes to `&[repr]` (`as_blocks`, `as_u16s` or `as_f32s`, in `blocks.rs`);
/// - `dequantize`, `vec_dot`, `quantize`: kernel names in [`super::kernels`] (`quantize` only for
///   activation formats, `-` for the others);
/// - `wgsl`: the GPU decode helper (`dq4`, `dq1`) under `shaders/`, included by
///   `common/dequant.wgsl` through the `W_HELPER` define;
/// - `dot_blk`: the helper has `dot_blk` (decode reads whole blocks, `DOT_BLK` in `linear.wgsl`).
///
/// Order is [`GgmlType::ALL`]'s. A callback matches every row with the same pattern, e.g.
/// ```text
/// $($t:ident = $id:literal { block: $bs:literal, bytes: $bytes:literal, repr: $repr:ty,
///     dot: $dot:ident, view: $view:ident, dequantize: $deq:ident, vec_dot: $vd:ident,
///     quantize: $q:tt, wgsl: $wgsl:literal, dot_blk: $blk:literal }),*
/// ```
macro_rules! ggml_types {
    ($callback:ident) => {
        $callback! {
            F32 = 0 { block: 1, bytes: 4, repr: f32, dot: F32, view: as_f32s,
                dequantize: dequantize_row_f32, vec_dot: vec_dot_f32, quantize: quantize_row_f32,
                wgsl: "common/f32.wgsl", dot_blk: false },
            F16 = 1 { block: 1, bytes: 2, repr: u16, dot: F16, view: as_u16s,
                dequantize: dequantize_row_f16, vec_dot: vec_dot_f16, quantize: quantize_row_f16,
                wgsl: "common/f16w.wgsl", dot_blk: false },
            BF16 = 30 { block: 1, bytes: 2, repr: u16, dot: BF16, view: as_u16s,
                dequantize: dequantize_row_bf16, vec_dot: vec_dot_bf16, quantize: quantize_row_bf16,
                wgsl: "common/bf16.wgsl", dot_blk: false },
            Q4_0 = 2 { block: 32, bytes: 18, repr: BlockQ4_0, dot: Q8_0, view: as_blocks,
                dequantize: dequantize_row_q4_0, vec_dot: vec_dot_q4_0_q8_0, quantize: -,
                wgsl: "common/q4_0.wgsl", dot_blk: false },
            Q4_1 = 3 { block: 32, bytes: 20, repr: BlockQ4_1, dot: Q8_1, view: as_blocks,
                dequantize: dequantize_row_q4_1, vec_dot: vec_dot_q4_1_q8_1, quantize: -,
                wgsl: "common/q4_1.wgsl", dot_blk: false },
            Q5_0 = 6 { block: 32, bytes: 22, repr: BlockQ5_0, dot: Q8_0, view: as_blocks,
                dequantize: dequantize_row_q5_0, vec_dot: vec_dot_q5_0_q8_0, quantize: -,
                wgsl: "common/q5_0.wgsl", dot_blk: true },
            Q5_1 = 7 { block: 32, bytes: 24, repr: BlockQ5_1, dot: Q8_1, view: as_blocks,
                dequantize: dequantize_row_q5_1, vec_dot: vec_dot_q5_1_q8_1, quantize: -,
                wgsl: "common/q5_1.wgsl", dot_blk: false },
            Q8_0 = 8 { block: 32, bytes: 34, repr: BlockQ8_0, dot: Q8_0, view: as_blocks,
                dequantize: dequantize_row_q8_0, vec_dot: vec_dot_q8_0_q8_0, quantize: quantize_row_q8_0,
                wgsl: "common/q8_0.wgsl", dot_blk: true },
            Q8_1 = 9 { block: 32, bytes: 36, repr: BlockQ8_1, dot: Q8_1, view: as_blocks,
                dequantize: dequantize_row_q8_1, vec_dot: vec_dot_q8_1_q8_1, quantize: quantize_row_q8_1,
                wgsl: "common/q8_1.wgsl", dot_blk: false },
            Q2_K = 10 { block: 256, bytes: 84, repr: BlockQ2K, dot: Q8_K, view: as_blocks,
                dequantize: dequantize_row_q2_K, vec_dot: vec_dot_q2_K_q8_K, quantize: -,
                wgsl: "common/q2_k.wgsl", dot_blk: false },
            Q3_K = 11 { block: 256, bytes: 110, repr: BlockQ3K, dot: Q8_K, view: as_blocks,
                dequantize: dequantize_row_q3_K, vec_dot: vec_dot_q3_K_q8_K, quantize: -,
                wgsl: "common/q3_k.wgsl", dot_blk: false },
            Q4_K = 12 { block: 256, bytes: 144, repr: BlockQ4K, dot: Q8_K, view: as_blocks,
                dequantize: dequantize_row_q4_K, vec_dot: vec_dot_q4_K_q8_K, quantize: -,
                wgsl: "common/q4_k.wgsl", dot_blk: true },
            Q5_K = 13 { block: 256, bytes: 176, repr: BlockQ5K, dot: Q8_K, view: as_blocks,
                dequantize: dequantize_row_q5_K, vec_dot: vec_dot_q5_K_q8_K, quantize: -,
                wgsl: "common/q5_k.wgsl", dot_blk: false },
            Q6_K = 14 { block: 256, bytes: 210, repr: BlockQ6K, dot: Q8_K, view: as_blocks,
                dequantize: dequantize_row_q6_K, vec_dot: vec_dot_q6_K_q8_K, quantize: -,
                wgsl: "common/q6_k.wgsl", dot_blk: true },
            Q8_K = 15 { block: 256, bytes: 292, repr: BlockQ8K, dot: Q8_K, view: as_blocks,
                dequantize: dequantize_row_q8_K, vec_dot: vec_dot_q8_K_q8_K, quantize: quantize_row_q8_K,
                wgsl: "common/q8_k.wgsl", dot_blk: false },
        }
    };
}
pub(crate) use ggml_types;

/// Names of every ggml type id, including the ones we cannot decode, so errors can name them.
const GGML_TYPE_NAMES: &[(u32, &str)] = &[
    (0, "F32"), (1, "F16"), (2, "Q4_0"), (3, "Q4_1"), (4, "Q4_2 (removed)"), (5, "Q4_3 (removed)"),
    (6, "Q5_0"), (7, "Q5_1"), (8, "Q8_0"), (9, "Q8_1"), (10, "Q2_K"), (11, "Q3_K"), (12, "Q4_K"),
    (13, "Q5_K"), (14, "Q6_K"), (15, "Q8_K"), (16, "IQ2_XXS"), (17, "IQ2_XS"), (18, "IQ3_XXS"),
    (19, "IQ1_S"), (20, "IQ4_NL"), (21, "IQ3_S"), (22, "IQ2_S"), (23, "IQ4_XS"), (24, "I8"),
    (25, "I16"), (26, "I32"), (27, "I64"), (28, "F64"), (29, "IQ1_M"), (30, "BF16"),
    (34, "TQ1_0"), (35, "TQ2_0"), (39, "MXFP4"),
];

/// The ggml name of a type id, or `None` if ggml has no such id.
pub fn ggml_type_name(id: u32) -> Option<&'static str> {
    GGML_TYPE_NAMES.iter().find(|(i, _)| *i == id).map(|(_, n)| *n)
}

macro_rules! define_types {
    (@has -) => { false };
    (@has $q:ident) => { true };
    (@one $t:ident) => { 1 };
    ($($t:ident = $id:literal { block: $bs:literal, bytes: $bytes:literal, repr: $repr:ty,
        dot: $dot:ident, view: $view:ident, dequantize: $deq:ident, vec_dot: $vd:ident,
        quantize: $q:tt, wgsl: $wgsl:literal, dot_blk: $blk:literal }),* $(,)?) => {
        /// The tensor types this engine can decode (one per row of [`ggml_types!`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types)]
        pub enum GgmlType {
            $($t),*
        }

        impl GgmlType {
            /// Every type, in the table's order.
            pub const ALL: [GgmlType; 0 $(+ define_types!(@one $t))*] = [$(GgmlType::$t),*];

            /// The id stored in GGUF tensor infos.
            pub const fn id(self) -> u32 {
                match self {
                    $(GgmlType::$t => $id),*
                }
            }

            pub const fn name(self) -> &'static str {
                match self {
                    $(GgmlType::$t => stringify!($t)),*
                }
            }

            /// Elements per block.
            pub const fn block_size(self) -> usize {
                match self {
                    $(GgmlType::$t => $bs),*
                }
            }

            /// Bytes per block.
            pub const fn type_size(self) -> usize {
                match self {
                    $(GgmlType::$t => $bytes),*
                }
            }

            /// The format activations are quantized to for a dot product with a weight of this
            /// type (ggml's `vec_dot_type`).
            pub const fn vec_dot_type(self) -> GgmlType {
                match self {
                    $(GgmlType::$t => GgmlType::$dot),*
                }
            }

            /// Activations can be quantized to this type (it has a `quantize_row_*` kernel).
            pub const fn is_act_type(self) -> bool {
                match self {
                    $(GgmlType::$t => define_types!(@has $q)),*
                }
            }

            /// The GPU decode helper of this type, a path under `shaders/`.
            pub const fn wgsl_helper(self) -> &'static str {
                match self {
                    $(GgmlType::$t => $wgsl),*
                }
            }

            /// The GPU decode helper has `dot_blk`: decode (one token) reads whole blocks.
            pub const fn has_dot_blk(self) -> bool {
                match self {
                    $(GgmlType::$t => $blk),*
                }
            }
        }
    };
}

ggml_types!(define_types);

// Every vec_dot type is an activation format whose own vec_dot type is itself.
const _: () = {
    let mut i = 0;
    while i < GgmlType::ALL.len() {
        let dot = GgmlType::ALL[i].vec_dot_type();
        assert!(dot.is_act_type() && dot.vec_dot_type() as u32 == dot as u32);
        assert!(GgmlType::ALL[i].block_size() % dot.block_size() == 0);
        i += 1;
    }
};

impl GgmlType {
    /// The type for a GGUF type id. Ids ggml knows but we cannot decode are `UNSUPPORTED_QUANT`;
    /// ids ggml does not know are `BAD_GGUF`. Both messages name the id.
    pub fn from_id(id: u32) -> Result<GgmlType> {
        if let Some(t) = GgmlType::ALL.iter().find(|t| t.id() == id) {
            return Ok(*t);
        }
        match ggml_type_name(id) {
            Some(name) => Err(Error::unsupported_quant(format!(
                "tensor type {name} (ggml type id {id}) is not supported by browser-llm; supported: {}",
                GgmlType::supported_list()
            ))),
            None => Err(Error::bad_gguf(format!("unknown ggml tensor type id {id}"))),
        }
    }

    /// Every decodable type's name, comma-separated, in the table's order.
    pub fn supported_list() -> String {
        GgmlType::ALL.map(GgmlType::name).join(", ")
    }

    /// Bytes of a row of `n` elements, or `None` if `n` is not a whole number of blocks.
    pub const fn row_bytes(self, n: usize) -> Option<usize> {
        if n % self.block_size() != 0 {
            return None;
        }
        Some(n / self.block_size() * self.type_size())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
