//! Shared helpers for the native integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};

pub mod corrupt;
pub mod tolerance;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run a `pkg-scripts/` helper that prints a path as its last stdout line.
fn script_path(script: &str, args: &[&str]) -> PathBuf {
    let out = Command::new(repo_root().join("pkg-scripts").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run pkg-scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "pkg-scripts/{script} {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8 path");
    PathBuf::from(stdout.lines().last().expect("a path on the last line").trim())
}

/// The real model (Gemma 3 270M Q4_K_M), fetched and verified once into the user cache.
/// `BROWSER_LLM_MODEL` overrides the path.
pub fn model_path() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| match std::env::var_os("BROWSER_LLM_MODEL") {
        Some(p) => PathBuf::from(p),
        None => script_path("fetch-model", &[]),
    })
    .clone()
}

/// The instruct model (SmolLM2-135M-Instruct Q4_1, ChatML), fetched and verified once into the
/// user cache (`pkg-scripts/fetch-model smollm2-135m-instruct`). `BROWSER_LLM_CHAT_MODEL`
/// overrides the path.
pub fn chat_model_path() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| match std::env::var_os("BROWSER_LLM_CHAT_MODEL") {
        Some(p) => PathBuf::from(p),
        None => script_path("fetch-model", &["smollm2-135m-instruct"]),
    })
    .clone()
}

/// The instruct model's bytes, read once per test binary.
pub fn chat_model_arc() -> Arc<Vec<u8>> {
    static B: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    B.get_or_init(|| Arc::new(std::fs::read(chat_model_path()).expect("read chat model"))).clone()
}

/// The model's bytes, read once per test binary and shared (the engine keeps an `Arc` of them).
pub fn model_arc() -> Arc<Vec<u8>> {
    static B: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    B.get_or_init(|| Arc::new(std::fs::read(model_path()).expect("read model"))).clone()
}

pub fn model_bytes() -> &'static [u8] {
    static B: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    B.get_or_init(model_arc)
}

/// A golden JSON file (see [`golden`]).
pub fn golden_json(name: &str) -> serde_json::Value {
    let path = golden(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read golden {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse golden {}: {e}", path.display()))
}

/// Write the tiny models of every architecture into `dir` (tests/reference/make_tiny_models.py;
/// deterministic).
pub fn make_tiny_models(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let out = std::process::Command::new(python())
        .arg(repo_root().join("tests/reference/make_tiny_models.py"))
        .arg(dir)
        .output()
        .expect("run make_tiny_models.py");
    assert!(out.status.success(), "make_tiny_models.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Python with the reference packages (gguf, numpy, tokenizers), from pkg-scripts/python-env.
pub fn python() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| script_path("python-env", &[])).clone()
}

/// Path of a golden file shared by the founders (`../shared/golden/NAME`) or kept in the repo
/// (`tests/golden/NAME`); the repo copy wins.
pub fn golden(name: &str) -> PathBuf {
    let local = repo_root().join("tests/golden").join(name);
    if local.exists() {
        return local;
    }
    repo_root().join("../shared/golden").join(name)
}

/// Teacher-forced evaluation against a llama.cpp golden: run `prompt + gen[..n-1]` through the
/// decoder in chunks and compare, at every generated step, our argmax with llama.cpp's token and
/// our log-probabilities of llama.cpp's top-5 tokens with its own.
pub mod teacher {
    use browser_llm::backend::{cpu::CpuBackend, Backend, KvType};
    use browser_llm::model::{Logits, Model};
    use browser_llm::logits::argmax;
    use serde_json::Value;

    pub struct Report {
        /// (step, llama.cpp's token, ours, llama.cpp's top1-top2 margin)
        pub flips: Vec<(usize, u32, u32, f32)>,
        pub max_logprob_err: f32,
    }

    /// One golden step: `top5 = [[id, (raw logit,) log-prob] x5]`, `margin` = top1 - top2 raw logit.
    pub struct Step {
        pub top5: Vec<(usize, f32)>,
        pub margin: f32,
    }

    pub fn ids(v: &Value) -> Vec<u32> {
        v.as_array().expect("id array").iter().map(|x| x.as_u64().unwrap() as u32).collect()
    }

    /// Steps in the harness format: `steps[i] = {"top5": [[id, logit, logprob]..], "margin": m}`.
    pub fn steps(v: &Value) -> Vec<Step> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| Step {
                top5: s["top5"].as_array().unwrap().iter().map(|t| (t[0].as_u64().unwrap() as usize, t[2].as_f64().unwrap() as f32)).collect(),
                margin: s["margin"].as_f64().unwrap() as f32,
            })
            .collect()
    }

    /// Steps of a founders' golden prompt (`gemma3-270m.json`), which keeps the top-5 log-probs
    /// and the margins of its 64-token run in separate arrays.
    pub fn founders_steps(p: &Value) -> Vec<Step> {
        let margins = p["top1_top2_margin_per_step_64"].as_array().unwrap();
        p["top5_logprobs_per_step_64"]
            .as_array()
            .unwrap()
            .iter()
            .zip(margins)
            .map(|(t, m)| Step {
                top5: t.as_array().unwrap().iter().map(|x| (x[0].as_u64().unwrap() as usize, x[1].as_f64().unwrap() as f32)).collect(),
                margin: m.as_f64().unwrap() as f32,
            })
            .collect()
    }

    pub fn log_softmax(l: &[f32]) -> Vec<f32> {
        let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + l.iter().map(|&v| ((v - max) as f64).exp()).sum::<f64>().ln() as f32;
        l.iter().map(|&v| v - lse).collect()
    }

    /// Run the comparison; `on_row(step, logits)` sees every step's logits (for extra checks).
    pub fn run(
        m: &Model<CpuBackend>,
        prompt: &[u32],
        gen: &[u32],
        steps: &[Step],
        n_ctx: usize,
        on_row: impl FnMut(usize, &[f32]),
    ) -> Report {
        run_on(m, &mut CpuBackend::new(), prompt, gen, steps, n_ctx, on_row)
    }

    /// [`run`] on any backend (the GPU tests).
    pub fn run_on<B: Backend>(
        m: &Model<B>,
        b: &mut B,
        prompt: &[u32],
        gen: &[u32],
        steps: &[Step],
        n_ctx: usize,
        on_row: impl FnMut(usize, &[f32]),
    ) -> Report {
        run_with_cache(m, b, KvType::F16, prompt, gen, steps, n_ctx, on_row)
    }

    /// [`run_on`] with a KV cache of type `ty`.
    #[allow(clippy::too_many_arguments)]
    pub fn run_with_cache<B: Backend>(
        m: &Model<B>,
        b: &mut B,
        ty: KvType,
        prompt: &[u32],
        gen: &[u32],
        steps: &[Step],
        n_ctx: usize,
        mut on_row: impl FnMut(usize, &[f32]),
    ) -> Report {
        assert_eq!(gen.len(), steps.len());
        let mut kv = b.kv_cache(m.config.kv_shape(n_ctx).with_type(ty)).unwrap();
        let mut seq = prompt.to_vec();
        seq.extend_from_slice(&gen[..gen.len() - 1]);
        let n_vocab = m.config.n_vocab;
        let first_out = prompt.len() - 1;
        let mut report = Report { flips: Vec::new(), max_logprob_err: 0.0 };
        let mut step = 0;
        let mut pos = 0;
        while pos < seq.len() {
            // Chunks bound the memory of all-row logits on a 256k vocabulary.
            let end = (pos + 64).min(seq.len());
            let which = if end <= first_out { Logits::Last } else { Logits::From(first_out.saturating_sub(pos)) };
            let out = browser_llm::block_on(m.forward(b, &mut kv, &seq[pos..end], pos, which)).unwrap();
            if end > first_out {
                for row in out.chunks_exact(n_vocab) {
                    let ours = argmax(row);
                    if ours != gen[step] {
                        report.flips.push((step, gen[step], ours, steps[step].margin));
                    }
                    let lp = log_softmax(row);
                    for &(id, want) in &steps[step].top5 {
                        report.max_logprob_err = report.max_logprob_err.max((lp[id] - want).abs());
                    }
                    on_row(step, row);
                    step += 1;
                }
            }
            pos = end;
        }
        assert_eq!(step, gen.len());
        report
    }

    /// Teacher forcing through the decode path: the prompt in one forward, then each golden
    /// token alone (one-row products: the GPU's decode kernels, whose layout tests choose),
    /// over the first `gen.len()` steps.
    pub fn run_decode_on<B: Backend>(m: &Model<B>, b: &mut B, prompt: &[u32], gen: &[u32], steps: &[Step], n_ctx: usize) -> Report {
        run_decode_with_cache(m, b, KvType::F16, prompt, gen, steps, n_ctx)
    }

    /// [`run_decode_on`] with a KV cache of type `ty`.
    pub fn run_decode_with_cache<B: Backend>(m: &Model<B>, b: &mut B, ty: KvType, prompt: &[u32], gen: &[u32], steps: &[Step], n_ctx: usize) -> Report {
        let mut kv = b.kv_cache(m.config.kv_shape(n_ctx).with_type(ty)).unwrap();
        let mut report = Report { flips: Vec::new(), max_logprob_err: 0.0 };
        let mut row = browser_llm::block_on(m.forward(b, &mut kv, prompt, 0, Logits::Last)).unwrap();
        for (step, &want) in gen.iter().enumerate() {
            let ours = argmax(&row);
            if ours != want {
                report.flips.push((step, want, ours, steps[step].margin));
            }
            let lp = log_softmax(&row);
            for &(id, lp_want) in &steps[step].top5 {
                report.max_logprob_err = report.max_logprob_err.max((lp[id] - lp_want).abs());
            }
            if step + 1 < gen.len() {
                row = browser_llm::block_on(m.forward(b, &mut kv, &[want], prompt.len() + step, Logits::Last)).unwrap();
            }
        }
        report
    }

    /// Every flip must be at a near-tie of llama.cpp's, and log-probs within `logprob_tol`.
    pub fn check(name: &str, r: &Report, near_tie: f32, logprob_tol: f32) {
        for &(s, want, got, margin) in &r.flips {
            assert!(
                margin < near_tie,
                "{name}: step {s}: llama.cpp chose {want}, we chose {got}, but its top-1/top-2 margin is {margin} (>= {near_tie})"
            );
        }
        assert!(r.max_logprob_err < logprob_tol, "{name}: top-5 log-prob error {} >= {logprob_tol}", r.max_logprob_err);
        eprintln!("{name}: {} near-tie flips {:?}, max top-5 log-prob error {:.4}", r.flips.len(), r.flips, r.max_logprob_err);
    }
}

