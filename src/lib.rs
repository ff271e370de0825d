//! browser-llm: run quantized LLMs (GGUF) entirely in the browser.
//!
//! Data flow (see docs/ARCHITECTURE.md):
//! source bytes -> [`gguf`] header + tensor infos -> weights in GGUF block layout ([`quant`]) ->
//! [`tokenizer`] built from GGUF metadata -> decoder -> sampler -> incremental detokenizer.
//!
//! The crate builds natively (tests, the `browser-llm` CLI, benchmarks) and for
//! `wasm32-unknown-unknown` with SIMD128 (the npm package).

pub mod backend;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod storage;
pub mod tokenizer;

pub use error::{Error, ErrorCode, Result};
