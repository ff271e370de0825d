//! The engine compiled to wasm32 with SIMD128, run under Node by wasm-bindgen-test-runner
//! (`cargo test --target wasm32-unknown-unknown --test wasm`, part of pkg-scripts/test).
//!
//! It loads the real model from the path in `BROWSER_LLM_MODEL` (pkg-scripts/test sets it) and
//! must produce llama.cpp's greedy tokens on the golden prompts, as the native build does. It also
//! loads the hostile variants of a tiny model that tests/hostile.rs loads natively: with a 32-bit
//! usize, a metadata integer must never be truncated nor a product wrap (audit rules L1, H4, H5).
#![cfg(target_arch = "wasm32")]

mod fuzz_support;
mod gguf_writer;
mod wasm_support;

use std::sync::Arc;

use browser_llm::backend::cpu::CpuBackend;
use browser_llm::engine::{Engine, GenerateOptions};
use browser_llm::sampling::SamplingParams;
use wasm_support::{env, read_file_sync};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

#[path = "common/tolerance.rs"]
mod tolerance;

/// Same near-tie rule as the native golden tests (tests/common/tolerance.rs).
const NEAR_TIE: f64 = tolerance::NEAR_TIE as f64;

/// The fuzz cases of tests/fuzz.rs under wasm32 (usize of 32 bits, the SIMD128 kernels): mutated
/// tiny models (llama, gemma3: written in Rust, no Python here) through parse, tokenizer, chat
/// template, load and a few tokens. Oracles: no panic (a panic aborts this test), no single
/// allocation above 64 MiB. The seed is random and printed; BROWSER_LLM_FUZZ_SEED replays one.
#[wasm_bindgen_test]
fn fuzz_share_under_wasm32() {
    const CASES: usize = 400;
    let seed = env("BROWSER_LLM_FUZZ_SEED").and_then(|v| v.parse().ok()).unwrap_or_else(|| js_sys::Date::now() as u64 % 1_000_000_007);
    let seeds = [fuzz_support::Desc::of(&gguf_writer::TinyModel::new("llama").bytes()).unwrap(), fuzz_support::Desc::of(&gguf_writer::TinyModel::new("gemma3").bytes()).unwrap()];
    let mut rng = fuzz_support::Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut done = 0;
    for case in 0..CASES {
        let (bytes, what) = fuzz_support::mutate(&mut rng, &seeds[case % seeds.len()]);
        console_log!("wasm32 fuzz seed {seed} case {case}: {what}");
        let (reached, largest) = browser_llm::budget::largest_alloc(|| fuzz_support::run_case(bytes));
        assert!(largest <= 64 << 20, "seed {seed} case {case} ({what}): an allocation of {largest} bytes");
        done += (reached == fuzz_support::Reached::Done) as usize;
    }
    console_log!("wasm32 fuzz: {CASES} cases (seed {seed}), {done} generated tokens; replay with BROWSER_LLM_FUZZ_SEED={seed}");
}

#[wasm_bindgen_test]
fn simd128_is_compiled_in() {
    assert!(cfg!(target_feature = "simd128"), "the wasm tests must exercise the SIMD128 kernels");
}

/// Every hostile config of tests/gguf_writer (the native run is tests/hostile.rs) gives its typed
/// error under wasm32 too; e.g. `block_count = 2^32 + 2` is an error, not a 2-layer model.
#[wasm_bindgen_test]
fn hostile_configs_are_typed_errors_in_wasm32() {
    assert_eq!(usize::BITS, 32);
    let cases = gguf_writer::hostile_configs();
    assert!(cases.iter().any(|c| c.what == "block_count 2^32 + 2"));
    for c in cases {
        let r = Engine::load(CpuBackend::new(), Arc::new(c.bytes), c.n_ctx);
        match (r, c.expect) {
            (Err(e), Some(code)) => assert_eq!(e.code, code, "{} {}: {}", c.rule, c.what, e.message),
            (Ok(_), None) => {}
            (Err(e), None) => panic!("{} {}: expected to load, got {e}", c.rule, c.what),
            (Ok(_), Some(code)) => panic!("{} {}: loaded, expected {code}", c.rule, c.what),
        }
    }
}

#[wasm_bindgen_test]
fn greedy_tokens_match_llama_cpp_in_wasm() {
    let path = env("BROWSER_LLM_MODEL").expect("BROWSER_LLM_MODEL must name the model file (pkg-scripts/test sets it)");
    let bytes = Arc::new(read_file_sync(&path));
    let golden: serde_json::Value = serde_json::from_str(include_str!("golden/gemma3-270m.json")).unwrap();
    let mut e = Engine::load(CpuBackend::new(), bytes, Some(512)).unwrap();
    let opts = GenerateOptions { max_tokens: 32, sampling: SamplingParams::greedy(), stop: vec![], ignore_eos: true, ..Default::default() };
    for p in golden["prompts"].as_array().unwrap() {
        let prompt = p["prompt"].as_str().unwrap();
        let want: Vec<u32> = p["gen_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let prompt_ids: Vec<u32> = p["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let margins: Vec<f64> = p["top1_top2_margin_per_step"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        e.reset();
        let r = browser_llm::block_on(e.generate(prompt, &opts, &mut |_, _| true)).unwrap();
        assert_eq!(r.prompt_ids, prompt_ids, "{prompt}: prompt ids");
        assert_eq!(r.ids.len(), want.len());
        if let Some(i) = r.ids.iter().zip(&want).position(|(a, b)| a != b) {
            assert!(margins[i] < NEAR_TIE, "{prompt}: step {i}: got {} want {} (margin {})", r.ids[i], want[i], margins[i]);
        }
        console_log!(
            "{prompt:?}: {} tokens, prefill {:.1} tok/s, decode {:.1} tok/s",
            r.ids.len(),
            r.timings.prefill_tokens_per_s(),
            r.timings.decode_tokens_per_s()
        );
    }
}
