//! Benchmark of the wasm32 (SIMD128) CPU engine under Node, run by `pkg-scripts/bench` (ignored
//! in the test suite: it measures, it asserts nothing about speed).
#![cfg(target_arch = "wasm32")]

mod wasm_support;

use std::sync::Arc;

use browser_llm::backend::cpu::CpuBackend;
use browser_llm::engine::{now_ms, Engine, GenerateOptions};
use browser_llm::sampling::SamplingParams;
use wasm_support::{env, read_file_sync};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

#[wasm_bindgen_test]
#[ignore]
fn bench_wasm_cpu() {
    let path = env("BROWSER_LLM_MODEL").expect("BROWSER_LLM_MODEL");
    let prompt = env("BENCH_PROMPT").expect("BENCH_PROMPT");
    let n_gen: usize = env("BENCH_TOKENS").and_then(|s| s.parse().ok()).unwrap_or(64);
    let t0 = now_ms();
    let mut e = Engine::load(CpuBackend::new(), Arc::new(read_file_sync(&path)), Some(1024)).unwrap();
    let load_ms = now_ms() - t0;
    let opts = GenerateOptions { max_tokens: n_gen, sampling: SamplingParams::greedy(), stop: vec![], ignore_eos: true, speculation: None, ..Default::default() };
    let r = browser_llm::block_on(e.generate(&prompt, &opts, &mut |_, _| true)).unwrap();
    console_log!(
        "BENCH wasm-simd128 load_ms={load_ms:.0} prefill_tokens={} prefill_tok_s={:.2} decode_tokens={} decode_tok_s={:.2}",
        r.timings.prefill_tokens,
        r.timings.prefill_tokens_per_s(),
        r.timings.decode_tokens,
        r.timings.decode_tokens_per_s()
    );
}
