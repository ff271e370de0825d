//! Prompt-lookup speculation (`browser_llm::speculate`) on the CPU: greedy output is the same
//! token for token with and without it, on every tiny architecture and both real models; on text
//! the model repeats, more than one token is accepted per pass (printed, with the speeds: a
//! benchmark's numbers, not asserted).

mod common;

use std::sync::Arc;

use browser_llm::backend::cpu::CpuBackend;
use browser_llm::engine::{Engine, GenerateOptions, Generation};
use browser_llm::sampling::SamplingParams;

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
