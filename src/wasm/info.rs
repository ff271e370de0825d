//! `engine.info()`: what the loaded model is and where it runs, built once at load.

use serde::Serialize;

use crate::gguf::Gguf;
use crate::load::AnyEngine;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    pub architecture: String,
    pub name: Option<String>,
    pub parameters: u64,
    pub file_size: u64,
    /// Tensor type -> bytes, largest first.
    pub quantization: Vec<(String, u64)>,
    pub context_length: usize,
    /// What the KV cache stores ("f16" or "q8_0", the `kvCache` load option) and its bytes at
    /// the full context (the CPU's layout; the GPU keeps q8_0 scales as f32, 36 bytes per 32).
    pub kv_cache: &'static str,
    pub kv_cache_bytes: u64,
    pub training_context_length: usize,
    pub vocab_size: usize,
    pub layers: usize,
    pub embedding_size: usize,
    pub backend: String,
    pub backend_reason: String,
    /// The WebAssembly build in use: "relaxed-simd" (SIMD128 + relaxed SIMD's dot product) or
    /// "simd128" (engines without relaxed SIMD, e.g. Safari, Node 20).
    pub cpu_kernels: String,
    /// Threads the CPU backend uses for matrix products (1 on the GPU, in the plain builds, and where
    /// the page is not cross-origin isolated).
    pub cpu_threads: usize,
    /// "gguf" (the file's own template) or the built-in one used.
    pub chat_template: String,
    /// How `embeddings.create` pools token states: "mean", "cls" or "last".
    pub pooling: &'static str,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

impl ModelInfo {
    pub fn new(gguf: &Gguf, file_size: u64, engine: &AnyEngine, backend_reason: String, chat_template: &str) -> ModelInfo {
        let mut by_type: Vec<(String, u64)> = Vec::new();
        let mut params = 0u64;
        for t in &gguf.tensors {
            params += t.n_elements();
            let name = t.ty.name();
            match by_type.iter_mut().find(|(n, _)| n == name) {
                Some((_, b)) => *b += t.n_bytes,
                None => by_type.push((name.to_string(), t.n_bytes)),
            }
        }
        by_type.sort_by(|a, b| b.1.cmp(&a.1));
        let c = engine.config();
        let tok = engine.tokenizer();
        let text = |id: Option<u32>| id.and_then(|id| tok.token_text(id)).map(str::to_string);
        ModelInfo {
            architecture: c.arch.name().to_string(),
            name: gguf.get_str("general.name").map(str::to_string),
            parameters: params,
            file_size,
            quantization: by_type,
            context_length: engine.n_ctx(),
            kv_cache: engine.kv_shape().ty.name(),
            kv_cache_bytes: engine.kv_shape().bytes().unwrap_or(u64::MAX),
            training_context_length: c.n_ctx_train,
            vocab_size: c.n_vocab,
            layers: c.n_layer,
            embedding_size: c.n_embd,
            // The load option's name for it (`backend: "webgpu"`).
            backend: match engine.backend_name() {
                "gpu" => "webgpu".to_string(),
                other => other.to_string(),
            },
            backend_reason,
            cpu_kernels: crate::quant::packed::KERNELS.to_string(),
            cpu_threads: engine.cpu_threads(),
            chat_template: chat_template.to_string(),
            pooling: engine.config().pooling.as_str(),
            bos_token: text(tok.bos_id()),
            eos_token: text(tok.eos_id()),
        }
    }
}
