//! Model definition: [`ModelConfig`] read from GGUF metadata and the one config-driven decoder.

mod config;
mod decoder;

pub use config::{Activation, Arch, ModelConfig, Pooling, RopeStyle};
pub use decoder::{Logits, Model};
