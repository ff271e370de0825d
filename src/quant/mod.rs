//! Quantization formats: ggml block structs, scalar reference kernels, SIMD128 kernels.

mod types;
pub use types::{ggml_type_name, GgmlType};
