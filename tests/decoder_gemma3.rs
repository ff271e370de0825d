//! Gemma 3 270M (the real model) against llama.cpp's greedy goldens.
//!
//! Teacher forcing: the prompt plus the golden continuation run as one batch; at every step our
//! argmax must equal llama.cpp's, except where llama.cpp's own top-1 vs top-2 margin is below
//! `NEAR_TIE` logits (sound implementations with different accumulation orders flip those; see
//! DESIGN.md §7: llama.cpp's own wasm build differs from its native build at a 0.196 margin).
//! We also compare log-probabilities of llama.cpp's top-5 tokens, and check that the incremental
//! decode path (one token at a time through the KV cache) produces the same greedy tokens.

mod common;

use std::sync::{Arc, OnceLock};

use browser_llm::backend::cpu::CpuBackend;
use browser_llm::engine::{Engine, GenerateOptions};
use browser_llm::gguf::Gguf;
use browser_llm::model::{Logits, Model};
use browser_llm::sampling::{argmax, SamplingParams};
use serde_json::Value;

/// Accept a different argmax only where llama.cpp's top-1/top-2 margin is below this.
/// Calibration (tests/reference/llama_ref.py, teacher-forced on these goldens): llama.cpp's own
/// build for this machine (same commit, haswell CPU backend instead of the golden's zen4) flips 5
/// steps at margins up to 0.196 with flash attention off, 3 with it on; wllama flips one at 0.196.
/// The 0.1 is below llama.cpp's own cross-build noise on this model.
const NEAR_TIE: f32 = 0.25;
/// Max |our log-prob - llama.cpp's| over the reference top-5 tokens at any step. Same calibration:
/// llama.cpp's haswell build is off by up to 0.94 (flash attention on) on these goldens; Q8
/// activation rounding on Gemma's outlier-heavy activations moves low-probability tokens a lot.
const LOGPROB_TOL: f32 = 1.5;

fn golden(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(common::golden(name)).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn model() -> &'static (Arc<Vec<u8>>, Gguf) {
    static M: OnceLock<(Arc<Vec<u8>>, Gguf)> = OnceLock::new();
    M.get_or_init(|| {
        let bytes = Arc::new(common::model_bytes().to_vec());
        let g = Gguf::from_bytes(&bytes).unwrap();
        (bytes, g)
    })
}

fn log_softmax(l: &[f32]) -> Vec<f32> {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + l.iter().map(|&v| ((v - max) as f64).exp()).sum::<f64>().ln() as f32;
    l.iter().map(|&v| v - lse).collect()
}

struct StepCheck {
    mismatches: Vec<(usize, u32, u32, f32)>,
    max_logprob_err: f32,
}

/// Teacher-forced comparison of one golden sequence.
fn teacher_forced(prompt: &[u32], gen: &[u32], margins: &[f32], top5: Option<&Vec<Value>>, n_ctx: usize) -> StepCheck {
    let (bytes, g) = model();
    let mut b = CpuBackend::new();
    let m = Model::load(&mut b, g, bytes).unwrap();
    let mut kv = browser_llm::backend::Backend::kv_cache(&mut b, &m.config, n_ctx).unwrap();
    let mut seq = prompt.to_vec();
    seq.extend_from_slice(&gen[..gen.len() - 1]);
    let n_vocab = m.config.n_vocab;
    // Run in chunks so long sequences keep memory bounded.
    let mut logits = Vec::new();
    let first_out = prompt.len() - 1;
    let chunk = 256;
    let mut pos = 0;
    while pos < seq.len() {
        let end = (pos + chunk).min(seq.len());
        let which = if end <= first_out { Logits::Last } else { Logits::From(first_out.saturating_sub(pos)) };
        let out = m.forward(&mut b, &mut kv, &seq[pos..end], pos, which).unwrap();
        if end > first_out {
            logits.extend_from_slice(&out);
        }
        pos = end;
    }
    assert_eq!(logits.len(), gen.len() * n_vocab);
    let mut check = StepCheck { mismatches: Vec::new(), max_logprob_err: 0.0 };
    for (s, row) in logits.chunks_exact(n_vocab).enumerate() {
        let ours = argmax(row);
        if ours != gen[s] {
            check.mismatches.push((s, gen[s], ours, margins[s]));
        }
        if let Some(top5) = top5 {
            let lp = log_softmax(row);
            for pair in top5[s].as_array().unwrap() {
                let id = pair[0].as_u64().unwrap() as usize;
                let want = pair[1].as_f64().unwrap() as f32;
                check.max_logprob_err = check.max_logprob_err.max((lp[id] - want).abs());
            }
        }
    }
    check
}

fn assert_near_ties_only(name: &str, c: &StepCheck) {
    for &(s, want, got, margin) in &c.mismatches {
        assert!(
            margin < NEAR_TIE,
            "{name}: step {s}: llama.cpp chose {want}, we chose {got}, but its top-1/top-2 margin is {margin} (>= {NEAR_TIE})"
        );
    }
    assert!(c.max_logprob_err < LOGPROB_TOL, "{name}: log-prob error {} >= {LOGPROB_TOL}", c.max_logprob_err);
    eprintln!("{name}: {} near-tie flips, max top-5 log-prob error {:.4}", c.mismatches.len(), c.max_logprob_err);
}

#[test]
fn golden_prompts_teacher_forced_64_tokens() {
    let g = golden("gemma3-270m.json");
    for p in g["prompts"].as_array().unwrap() {
        let name = p["prompt"].as_str().unwrap();
        let margins: Vec<f32> = p["top1_top2_margin_per_step_64"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let c = teacher_forced(
            &ids(&p["prompt_ids"]),
            &ids(&p["gen_ids_64"]),
            &margins,
            p["top5_logprobs_per_step_64"].as_array(),
            512,
        );
        assert_near_ties_only(name, &c);
    }
}

#[test]
fn greedy_decode_matches_golden_through_the_engine() {
    let g = golden("gemma3-270m.json");
    let (bytes, _) = model();
    let mut e = Engine::load(CpuBackend::new(), bytes.clone(), Some(512)).unwrap();
    let opts = GenerateOptions { max_tokens: 32, sampling: SamplingParams::greedy(), stop: vec![], ignore_eos: true };
    for p in g["prompts"].as_array().unwrap() {
        let prompt = p["prompt"].as_str().unwrap();
        let want = ids(&p["gen_ids"]);
        let margins: Vec<f64> = p["top1_top2_margin_per_step"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        e.reset();
        let r = e.generate(prompt, &opts, &mut |_, _| true).unwrap();
        assert_eq!(r.prompt_ids, ids(&p["prompt_ids"]), "{prompt}: prompt ids");
        // Identical up to the first near-tie; after a flip the continuations legitimately diverge.
        if let Some(i) = r.ids.iter().zip(&want).position(|(a, b)| a != b) {
            assert!(margins[i] < NEAR_TIE as f64, "{prompt}: step {i}: got {} want {} (margin {})", r.ids[i], want[i], margins[i]);
        }
        assert_eq!(r.ids.len(), 32);
        assert_eq!(r.text, e.tokenizer.decode(&r.ids), "{prompt}: streamed text equals decode(ids)");
    }
}

#[test]
fn long_goldens_cross_the_sliding_window() {
    let path = common::golden("gemma3-270m-long.json");
    assert!(path.exists(), "missing golden {}", path.display());
    let g = golden("gemma3-270m-long.json");
    for case in g["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let gen = ids(&case["gen_ids"]);
        let margins: Vec<f32> = case["margins"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let n_ctx = case["n_ctx"].as_u64().unwrap() as usize;
        let c = teacher_forced(&ids(&case["prompt_ids"]), &gen, &margins, case["top5"].as_array(), n_ctx);
        assert!(ids(&case["prompt_ids"]).len() + gen.len() > 512, "{name} must cross the 512-token window");
        assert_near_ties_only(name, &c);
    }
}

#[test]
fn context_overflow_is_a_typed_error() {
    let (bytes, _) = model();
    let mut e = Engine::load(CpuBackend::new(), bytes.clone(), Some(8)).unwrap();
    let err = e.generate_ids(&[2; 9], &GenerateOptions::default(), &mut |_, _| true).unwrap_err();
    assert_eq!(err.code, browser_llm::ErrorCode::ContextOverflow);
    // Generation that reaches the end of the context stops with "length", not garbage or a panic.
    let opts = GenerateOptions { max_tokens: 100, sampling: SamplingParams::greedy(), stop: vec![], ignore_eos: true };
    let r = e.generate_ids(&[2, 818, 5279], &opts, &mut |_, _| true).unwrap();
    assert_eq!(r.ids.len(), 5);
    assert_eq!(r.finish_reason.as_str(), "length");
}
