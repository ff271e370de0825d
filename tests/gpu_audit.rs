//! The launch audit: `browser-llm generate --backend gpu --gpu-layout hardware --json` on the real
//! models (Gemma 3 270M, SmolLM2-135M) and a 1.5B-class shape (`browser-llm synth --shape
//! qwen2-1.5b`, two of its layers: every product shape of the model, its 151,936-token head
//! included) reports every dispatch of the last decoded token (the fifth: the first tokens fill
//! the bind-group cache; Gemma's is full from the fourth). In the hardware layout, what a
//! real GPU needs holds: every weight-streaming dispatch of at least 512 rows launches at least
//! 16,384 invocations (enough in flight to cover memory latency), one submit and one compute pass
//! per token, nothing created per token (buffers, bind groups, pipelines), and no pipeline
//! created after load (the load's first-token check runs a prefill and a decoded token, so a
//! multi-token prompt compiles nothing new). The software
//! layout's numbers are printed beside them for SmolLM2, not asserted (per-row products are what
//! CPU-emulated adapters run fastest).
//!
//! Natively on Mesa lavapipe; without an adapter the test prints a message and passes, unless
//! `BROWSER_LLM_REQUIRE_GPU=1` (CI), where it fails.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const CLI: &str = env!("CARGO_BIN_EXE_browser-llm");

/// One `generate --json` run on the GPU in `layout`; `None` when there is no adapter (and CI
/// does not require one).
fn audit(model: &Path, prompt: &str, layout: &str) -> Option<Value> {
    let out = Command::new(CLI)
        .args(["generate", "--backend", "gpu", "--gpu-layout", layout, "--max-tokens", "5", "--ignore-eos", "--no-speculation", "--json", "--prompt", prompt, "--model"])
        .arg(model)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if (stderr.contains("GPU_UNAVAILABLE") || stderr.contains("DEVICE_LOST")) && std::env::var_os("BROWSER_LLM_REQUIRE_GPU").is_none() {
            eprintln!("skipping: no GPU ({stderr})");
            return None;
        }
        panic!("generate failed: {stderr}");
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// `layouts`: "hardware" is asserted; "software" only printed (and the audit's own count checked),
/// so CI runs it on the smallest model only (each run on lavapipe takes about half a minute).
fn check(name: &str, model: &Path, prompt: &str, layouts: &[&str]) {
    for &layout in layouts {
        let Some(j) = audit(model, prompt, layout) else { return };
        assert_eq!(j["gpu_layout"], layout, "{name}");
        let dispatches = j["dispatch_audit"].as_array().unwrap();
        let n = |k: &str| j[k].as_f64().unwrap_or_else(|| panic!("{name}: no {k}"));
        let thin: Vec<&Value> = dispatches.iter().filter(|d| d["rows"].as_u64().unwrap() >= 512 && d["invocations"].as_u64().unwrap() < 16_384).collect();
        let weight = dispatches.iter().filter(|d| d["rows"].as_u64().unwrap() > 0).count();
        let fewest = dispatches.iter().filter(|d| d["rows"].as_u64().unwrap() >= 512).map(|d| d["invocations"].as_u64().unwrap()).min();
        eprintln!(
            "{name} [{layout}]: {} dispatches ({weight} weight-streaming; fewest invocations of one with >= 512 rows: {fewest:?}; {} under 16,384), \
             {} submits and {} compute passes per token; created in the last token: {} buffers, {} bind groups, {} pipelines; \
             pipelines created after load: {}; device {}",
            dispatches.len(),
            thin.len(),
            n("submits_per_token"),
            n("compute_passes_per_token"),
            n("buffers_created_per_token"),
            n("bind_groups_created_per_token"),
            n("pipelines_created_per_token"),
            n("pipelines_created_after_load"),
            j["device"]
        );
        assert_eq!(n("dispatches_per_token") as usize, dispatches.len(), "{name} [{layout}]: the audit lists the whole token");
        if layout == "hardware" {
            assert!(thin.is_empty(), "{name}: weight-streaming dispatches with too few invocations: {thin:?}");
            assert_eq!(n("submits_per_token"), 1.0, "{name}");
            assert_eq!(n("compute_passes_per_token"), 1.0, "{name}");
            for k in ["buffers_created_per_token", "bind_groups_created_per_token", "pipelines_created_per_token", "pipelines_created_after_load"] {
                assert_eq!(n(k), 0.0, "{name}: {k}");
            }
        }
    }
}

#[test]
fn launch_audit_gemma3_270m() {
    check("Gemma 3 270M", &common::model_path(), "The capital of France is", &["hardware"]);
}

#[test]
fn launch_audit_smollm2_135m() {
    check("SmolLM2-135M", &common::chat_model_path(), "The capital of France is", &["software", "hardware"]);
}

#[test]
fn launch_audit_qwen2_1_5b_shape() {
    let path = std::env::temp_dir().join(format!("browser-llm-audit-qwen2-1.5b-{}.gguf", std::process::id()));
    let out = Command::new(CLI).args(["synth", "--shape", "qwen2-1.5b", "--layers", "2", "--out"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "synth: {}", String::from_utf8_lossy(&out.stderr));
    check("Qwen2 1.5B shape (2 layers)", &path, "t5 t9 t12 t40 t77 t100", &["hardware"]);
    std::fs::remove_file(&path).ok();
}
