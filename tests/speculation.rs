//! Prompt-lookup speculation (`browser_llm::speculate`) on the CPU: greedy output is the same
//! token for token with and without it, on every tiny architecture and both real models; on text
//! the model repeats, more than one token is accepted per pass (printed, with the speeds: a
//! benchmark's numbers, not asserted).

mod common;

use std::sync::Arc;

use browser_llm::backend::cpu::CpuBackend;
use browser_llm::engine::{Engine, GenerateOptions, Generation, Step};
use browser_llm::gguf::Gguf;
use browser_llm::load::{load, AnyEngine, BackendChoice, LoadOptions};
use browser_llm::sampling::SamplingParams;
use browser_llm::speculate::Speculation;

fn greedy(bytes: &Arc<Vec<u8>>, prompt: &str, n: usize, speculation: bool) -> (Vec<u32>, Generation) {
    let mut e = Engine::load(CpuBackend::with_threads(1), bytes.clone(), Some(1024)).unwrap();
    let ids = e.tokenize(prompt);
    let opts = GenerateOptions {
        max_tokens: n,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        speculation: speculation.then(Default::default),
        ..Default::default()
    };
    let r = browser_llm::block_on(e.generate_ids(&ids, &opts, &mut |_, _| true)).unwrap();
    // The cache holds the conversation's own tokens only: no unconfirmed draft is left behind.
    let mut held = ids.clone();
    held.extend_from_slice(&r.ids[..r.ids.len() - 1]);
    assert!(e.cached_tokens().starts_with(&held) && e.cached_tokens().len() <= held.len() + 1, "the cache after speculation");
    (r.ids.clone(), r)
}

fn check(name: &str, bytes: Arc<Vec<u8>>, prompt: &str, n: usize) -> f64 {
    let (plain, p) = greedy(&bytes, prompt, n, false);
    let (spec, s) = greedy(&bytes, prompt, n, true);
    assert_eq!(spec, plain, "{name}: speculation changed the greedy tokens");
    assert_eq!(p.timings.accepted_per_pass(), 1.0);
    println!(
        "{name}: {n} tokens equal; accepted per pass {:.2}; decode {:.1} tok/s with speculation, {:.1} without ({:.2}x)",
        s.timings.accepted_per_pass(),
        s.timings.decode_tokens_per_s(),
        p.timings.decode_tokens_per_s(),
        s.timings.decode_tokens_per_s() / p.timings.decode_tokens_per_s()
    );
    s.timings.accepted_per_pass()
}

const REWRITE: &str = "Copy the text exactly.\nText: The old lighthouse keeper climbed the narrow stairs every evening, \
lit the great lamp, and watched the ships pass safely through the dark strait.\nCopy: The old lighthouse keeper climbed";

#[test]
fn smollm2_speculation_gives_the_same_tokens() {
    let accepted = check("smollm2-135m, rewrite", common::chat_model_arc(), REWRITE, 48);
    assert!(accepted > 1.5, "a text being copied accepts drafts: {accepted:.2} tokens per pass");
    check("smollm2-135m, free", common::chat_model_arc(), "Once upon a time, in a small village,", 48);
}

#[test]
fn gemma3_speculation_gives_the_same_tokens() {
    check("gemma3-270m, rewrite", common::model_arc(), REWRITE, 48);
    check("gemma3-270m, free", common::model_arc(), "Once upon a time, in a small village,", 48);
}

/// Load `bytes` on `backend` (1 CPU thread), or `None` where that backend is not here.
fn engine(bytes: &Arc<Vec<u8>>, backend: BackendChoice) -> Option<AnyEngine> {
    let gguf = Gguf::from_bytes(bytes).unwrap();
    let opts = LoadOptions { backend, n_ctx: Some(1024), cpu_threads: Some(1), ..Default::default() };
    match browser_llm::block_on(load(&gguf, bytes, &opts)) {
        Ok(l) => Some(l.engine),
        Err(e) if backend == BackendChoice::Gpu && std::env::var_os("BROWSER_LLM_REQUIRE_GPU").is_none() => {
            eprintln!("GPU part skipped: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// The tokens of `prompt` under `opts`, and each step's margin between the two best logits
/// where `opts` asks for logprobs.
fn run(e: &mut AnyEngine, prompt: &str, opts: &GenerateOptions) -> (Generation, Vec<f32>) {
    e.reset();
    let ids = e.tokenize(prompt);
    let mut g = e.begin(&ids, opts).unwrap();
    let mut margins = Vec::new();
    while let Some(step) = browser_llm::block_on(e.step(&mut g)).unwrap() {
        if let Step::Token { logprob: Some(lp), .. } = step {
            margins.push(lp.top[0].1 - lp.top[1].1);
        }
    }
    (g.into_generation(), margins)
}

/// Sampling with speculation draws the same tokens for a seed as without it (top-k read back
/// as candidates, and every logit read back for penalties): each row's logits equal one-token
/// decode's and the sampler draws once per token, a drafted token kept exactly when the draw
/// equals it.
#[test]
fn sampled_speculation_gives_the_same_tokens() {
    let mut e = engine(&common::chat_model_arc(), BackendChoice::Cpu).unwrap();
    let samplings = [
        SamplingParams { temperature: 0.7, top_k: 40, top_p: 1.0, min_p: 0.0, seed: 1, ..Default::default() },
        SamplingParams { temperature: 0.9, top_k: 0, top_p: 0.95, repeat_penalty: 1.1, seed: 2, ..Default::default() },
        SamplingParams { temperature: 0.5, seed: 3, ..Default::default() },
    ];
    for sampling in samplings {
        let opts = GenerateOptions { max_tokens: 40, sampling: sampling.clone(), ignore_eos: true, speculation: None, ..Default::default() };
        let (plain, _) = run(&mut e, REWRITE, &opts);
        let sampled = Speculation { requested: true, adaptive: false, ..Default::default() };
        let (fast, _) = run(&mut e, REWRITE, &GenerateOptions { speculation: Some(sampled), ..opts });
        assert_eq!(fast.ids, plain.ids, "{sampling:?}");
        println!("smollm2-135m, rewrite, sampled (seed {}): 40 tokens equal; accepted per pass {:.2}", sampling.seed, fast.timings.accepted_per_pass());
    }
}

/// On the GPU a draft's rows come from the batched kernels, one-token decode from the decode
/// kernels: greedy tokens agree up to the first near-tie of plain decoding (SmolLM2 here: Gemma
/// 3's 262k-row logits read back for the margins take minutes on a software GPU). 20 tokens:
/// lavapipe decodes SmolLM2 at about 1 token/s on CI's 2 cores (40 took 3 minutes).
#[test]
fn gpu_speculation_agrees_up_to_near_ties() {
    for (name, bytes) in [("smollm2-135m", common::chat_model_arc())] {
        let Some(mut e) = engine(&bytes, BackendChoice::Gpu) else { return };
        let opts = GenerateOptions { max_tokens: 20, sampling: SamplingParams::greedy(), ignore_eos: true, speculation: None, ..Default::default() };
        let (plain, margins) = run(&mut e, REWRITE, &GenerateOptions { logprobs: Some(2), ..opts.clone() });
        let asked = Speculation { requested: true, ..Default::default() };
        let (fast, _) = run(&mut e, REWRITE, &GenerateOptions { speculation: Some(asked), ..opts });
        if let Some(i) = fast.ids.iter().zip(&plain.ids).position(|(a, b)| a != b) {
            assert!(margins[i] < common::tolerance::NEAR_TIE, "{name}: token {i} differs at margin {}", margins[i]);
        }
        assert!(fast.timings.accepted_per_pass() > 1.5, "{name}: {:.2} accepted per pass", fast.timings.accepted_per_pass());
        println!("{name} (GPU), rewrite: accepted per pass {:.2}; {} passes for {} tokens", fast.timings.accepted_per_pass(), fast.timings.decode_passes, fast.timings.decode_tokens);
    }
}
