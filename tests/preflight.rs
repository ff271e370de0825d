//! Preflight (`browser_llm::preflight`) on both real models: the shape read from the first 1% of
//! the file agrees with the whole header's (architecture, layers, KV cache, the products' sizes),
//! and the estimate of the CPU's speed is printed beside the speed the engine then measures on
//! the same backend (a benchmark's comparison, not an assertion: the machine is shared).

mod common;

use std::sync::Arc;

use browser_llm::backend::cpu::CpuBackend;
use browser_llm::engine::{Engine, GenerateOptions};
use browser_llm::gguf::{scan_metadata, Gguf};
use browser_llm::preflight::{estimate, fits_cpu, Shape};
use browser_llm::sampling::SamplingParams;

fn check(name: &str, bytes: Arc<Vec<u8>>) {
    let size = bytes.len() as u64;
    let whole = Shape::from_gguf(&Gguf::from_bytes(&bytes).unwrap()).unwrap();
    let prefix = &bytes[..bytes.len() / 100];
    let scanned = scan_metadata(prefix).unwrap();
    assert!(!scanned.complete, "{name}: the header is longer than 1% of the file");
    let guessed = Shape::from_metadata(&scanned, size).unwrap();
    assert!(whole.exact && !guessed.exact);
    assert_eq!(guessed.architecture, whole.architecture, "{name}");
    assert_eq!((guessed.n_layer, guessed.k_dim, guessed.v_dim, guessed.n_ctx_train), (whole.n_layer, whole.k_dim, whole.v_dim, whole.n_ctx_train), "{name}");
    let params = |s: &Shape| s.products.iter().map(|p| (p.rows * p.cols * p.count) as u64).sum::<u64>();
    assert_eq!(params(&guessed), params(&whole), "{name}: the products' sizes");
    let n_ctx = whole.context_length(Some(2048));
    assert_eq!(n_ctx, 2048.min(whole.n_ctx_train));
    let kv = whole.kv_shape(n_ctx).bytes().unwrap();
    assert!(fits_cpu(size, kv).fits);

    let mut b = CpuBackend::with_threads(1);
    let exact = browser_llm::block_on(estimate(&mut b, &whole)).unwrap();
    let inferred = browser_llm::block_on(estimate(&mut b, &guessed)).unwrap();
    let mut e = Engine::load(CpuBackend::with_threads(1), bytes, Some(1024)).unwrap();
    let prompt: Vec<u32> = e.tokenize(&"The history of bridges begins with fallen trees and stepping stones. ".repeat(8));
    let opts = GenerateOptions { max_tokens: 32, sampling: SamplingParams::greedy(), ignore_eos: true, ..Default::default() };
    let r = browser_llm::block_on(e.generate_ids(&prompt, &opts, &mut |_, _| true)).unwrap();
    let t = &r.timings;
    for (what, est) in [("exact types", exact), ("inferred types", inferred)] {
        assert!(est.decode_tokens_per_second.is_finite() && est.decode_tokens_per_second > 0.0);
        assert!(est.prefill_tokens_per_second.is_finite() && est.prefill_tokens_per_second > 0.0);
        println!(
            "{name} ({what}: {:?}), 1 thread: estimated decode {:.1} tok/s, prefill {:.1} tok/s in {:.0} ms; measured decode {:.1}, prefill {:.1} ({} tokens): ratio {:.2} / {:.2}",
            if what == "exact types" { whole.quantization.iter().map(|q| q.0.as_str()).collect::<Vec<_>>() } else { guessed.quantization.iter().map(|q| q.0.as_str()).collect() },
            est.decode_tokens_per_second,
            est.prefill_tokens_per_second,
            est.ms,
            t.decode_tokens_per_s(),
            t.prefill_tokens_per_s(),
            t.prefill_tokens,
            est.decode_tokens_per_second / t.decode_tokens_per_s(),
            est.prefill_tokens_per_second / t.prefill_tokens_per_s(),
        );
    }
}

#[test]
fn gemma3_shape_from_its_first_percent_and_an_estimate() {
    check("gemma3-270m", common::model_arc());
}

#[test]
fn smollm2_shape_from_its_first_percent_and_an_estimate() {
    check("smollm2-135m", common::chat_model_arc());
}
