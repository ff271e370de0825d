//! Embeddings against llama.cpp's (`tests/golden/embeddings.json`, made by
//! `tests/reference/make_embedding_goldens.py`: llama.cpp's mean pooling over its final hidden
//! states): the same token count, and vectors whose cosine similarity is at least
//! [`MIN_COSINE`] (both engines quantize activations to Q8 blocks for the matrix products and
//! round differently, as the logit tolerances of the goldens allow).

mod common;

use std::sync::Arc;

use browser_llm::backend::cpu::CpuBackend;
use browser_llm::engine::Engine;
use serde_json::Value;

/// The lowest cosine similarity to llama.cpp's vector accepted (measured: 0.99936 to 0.99995 on
/// these texts, both models).
const MIN_COSINE: f64 = 0.998;

fn check(model: Arc<Vec<u8>>, golden: &Value) {
    let mut engine = Engine::load(CpuBackend::new(), model, Some(512)).unwrap();
    for row in golden.as_array().unwrap() {
        let text = row["text"].as_str().unwrap();
        let want: Vec<f64> = row["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let (got, tokens) = browser_llm::block_on(engine.embed(text)).unwrap();
        assert_eq!(tokens, row["prompt_ids"].as_array().unwrap().len(), "{text}");
        assert_eq!(got.len(), want.len());
        let cos: f64 = got.iter().zip(&want).map(|(&a, &b)| a as f64 * b).sum();
        let norm: f64 = got.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
        println!("{text:?}: cosine {cos:.6}, |v| {norm:.6}");
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        assert!(cos >= MIN_COSINE, "{text:?}: cosine {cos} < {MIN_COSINE}");
    }
}

#[test]
fn smollm2_embeddings_equal_llama_cpps() {
    check(common::chat_model_arc(), &common::golden_json("embeddings.json")["smollm2-135m-instruct-q4_1"]);
}

#[test]
fn gemma3_embeddings_equal_llama_cpps() {
    check(common::model_arc(), &common::golden_json("embeddings.json")["gemma-3-270m-q4_k_m"]);
}
