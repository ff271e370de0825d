//! Hostile model files and options (the founders' reliability audit, 2026-11-30): each test is
//! named after the audit rule it covers and loads variants of a tiny model written in Rust
//! (tests/gguf_writer), changed in one metadata value or one tensor.
//!
//! Oracles: the load fails with the expected `ErrorCode` (never a panic), and nothing allocates
//! from a claimed size: a counting allocator records the largest single allocation during the
//! load, which must stay far below what the metadata claims. The same case list runs under wasm32
//! in tests/wasm.rs, where usize is 32 bits.

mod gguf_writer;

use std::sync::Arc;

use browser_llm::backend::cpu::CpuBackend;
use browser_llm::backend::{KvShape, KvType};
use browser_llm::engine::{check_kv_budget, Engine, GenerateOptions};
use browser_llm::gguf::Gguf;
use browser_llm::model::Model;
use browser_llm::sampling::SamplingParams;
use browser_llm::ErrorCode;
use browser_llm::budget::largest_alloc;
use gguf_writer::{hostile_configs, TinyModel};

/// No single allocation of a hostile load may exceed this (the tiny model's file is ~10 KB, its
/// KV cache at the default context 64 KB).
const MAX_ALLOC: usize = 1 << 20;

/// Load every case of `rule` with the engine (tokenizer, config, weights, KV cache) and check its
/// code and its largest allocation.
fn run_rule(rule: &str) {
    let cases: Vec<_> = hostile_configs().into_iter().filter(|c| c.rule == rule).collect();
    assert!(!cases.is_empty(), "no cases for {rule}");
    for c in cases {
        let bytes = Arc::new(c.bytes);
        let (r, largest) = largest_alloc(|| Engine::load(CpuBackend::with_threads(1), bytes.clone(), c.n_ctx));
        match (&r, c.expect) {
            (Err(e), Some(code)) => {
                assert_eq!(e.code, code, "{rule} {}: wrong code; message: {}", c.what, e.message);
                assert!(!e.message.is_empty());
                eprintln!("{rule} {}: {e}", c.what);
            }
            (Ok(_), None) => {}
            (Err(e), None) => panic!("{rule} {}: expected to load, got {e}", c.what),
            (Ok(_), Some(code)) => panic!("{rule} {}: loaded, expected {code}", c.what),
        }
        assert!(largest <= MAX_ALLOC, "{rule} {}: an allocation of {largest} bytes", c.what);
        // The decoder alone (without the engine's checks first) refuses the same files.
        let g = Gguf::from_bytes(&bytes).unwrap();
        let m = Model::load(&mut CpuBackend::with_threads(1), &g, &bytes);
        // (H5 and L3 are the engine's checks: the KV budget, the tokenizer against the weights.)
        if c.expect.is_some() && rule != "H5" && rule != "L3" {
            assert!(m.is_err(), "{rule} {}: Model::load accepted it", c.what);
        }
    }
}

#[test]
fn h1_block_count_beyond_the_layers_in_the_file_is_bad_gguf() {
    run_rule("H1");
}

#[test]
fn l1_metadata_integers_are_never_truncated() {
    run_rule("L1");
}

#[test]
fn h4_head_and_ffn_products_are_checked_against_overflow_and_tensor_dims() {
    run_rule("H4");
}

#[test]
fn m3_nan_or_non_positive_eps_rope_and_softcap_are_bad_gguf() {
    run_rule("M3");
}

#[test]
fn l4_sliding_window_zero_is_bad_gguf() {
    run_rule("L4");
}

#[test]
fn l3_embedding_rows_must_match_the_tokenizer() {
    run_rule("L3");
}

#[test]
fn l11_context_length_zero_is_bad_gguf() {
    run_rule("L11");
}

#[test]
fn h5_kv_cache_over_the_budget_is_invalid_argument_before_allocating() {
    run_rule("H5");
    // The message gives the size and the largest context that fits.
    let bytes = Arc::new(TinyModel::new("llama").set_arch("context_length", browser_llm::gguf::Value::U32(u32::MAX)).bytes());
    let e = Engine::load(CpuBackend::with_threads(1), bytes, Some(1 << 31)).err().expect("over the budget");
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert!(e.message.contains("MiB") && e.message.contains("largest context that fits is"), "{}", e.message);
    // A q8_0 cache needs heads of whole 32-value blocks (this model's are 4 wide): refused before
    // anything is allocated, naming the way out.
    let tiny = Arc::new(TinyModel::new("llama").bytes());
    let cache = browser_llm::engine::CacheOptions { n_ctx: Some(16), kv_type: KvType::Q8_0 };
    let e = Engine::load(CpuBackend::with_threads(1), tiny.clone(), cache).err().expect("heads of 4 values");
    assert!(e.code == ErrorCode::InvalidArgument && e.message.contains("multiples of 32") && e.message.contains("\"f16\""), "{}", e.message);
    assert!(Engine::load(CpuBackend::with_threads(1), tiny, Some(16)).is_ok());
    assert_eq!(KvType::parse("q4_0").unwrap_err().code, ErrorCode::InvalidArgument);
    // The arithmetic itself: exactly at the budget fits, one position more does not, and a shape
    // whose size overflows a u64 is refused too.
    let shape = KvShape { n_layer: 2, k_dim: 4, v_dim: 4, n_ctx: 1024, ty: KvType::F16 };
    let size = 2 * 1024 * 8 * 2;
    assert_eq!(shape.bytes(), Some(size));
    assert!(check_kv_budget(shape, shape.bytes(), size).is_ok());
    let over = KvShape { n_ctx: 1025, ..shape };
    let e = check_kv_budget(over, over.bytes(), size).unwrap_err();
    assert!(e.message.contains("is 1024 tokens"), "{}", e.message);
    let huge = KvShape { n_layer: usize::MAX, k_dim: usize::MAX, v_dim: 1, n_ctx: usize::MAX, ty: KvType::F16 };
    let e = check_kv_budget(huge, huge.bytes(), size).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
}

#[test]
fn hostile_controls_load() {
    run_rule("ok");
}

/// M3: weights that make every logit NaN give a typed error at the first sampled token, on every
/// readback (argmax, top-k, full), instead of emitting id 0 until max_tokens.
#[test]
fn m3_nan_logits_are_an_error_not_token_0() {
    let good = Arc::new(TinyModel::new("llama").bytes());
    let bad = Arc::new(TinyModel::new("llama").fill("output_norm.weight", f32::NAN).bytes());
    for sampling in [
        SamplingParams::greedy(),
        SamplingParams { temperature: 0.8, top_k: 5, ..Default::default() },
        SamplingParams { temperature: 0.8, top_k: 0, ..Default::default() },
        SamplingParams { repeat_penalty: 1.1, ..SamplingParams::greedy() },
    ] {
        let opts = GenerateOptions { max_tokens: 4, sampling, stop: vec![], ignore_eos: true, ..Default::default() };
        let mut e = Engine::load(CpuBackend::with_threads(1), good.clone(), None).unwrap();
        let g = browser_llm::block_on(e.generate_ids(&[1, 5, 7], &opts, &mut |_, _| true)).unwrap();
        assert_eq!(g.ids.len(), 4);
        let mut e = Engine::load(CpuBackend::with_threads(1), bad.clone(), None).unwrap();
        let err = browser_llm::block_on(e.generate_ids(&[1, 5, 7], &opts, &mut |_, _| true)).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedModel, "{err}");
        assert!(err.message.contains("NaN"), "{err}");
    }
}
