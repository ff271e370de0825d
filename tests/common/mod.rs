//! Shared helpers for the native integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run a `pkg-scripts/` helper that prints a path as its last stdout line.
fn script_path(script: &str) -> PathBuf {
    let out = Command::new(repo_root().join("pkg-scripts").join(script))
        .output()
        .unwrap_or_else(|e| panic!("could not run pkg-scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "pkg-scripts/{script} failed:\n{}",
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
        None => script_path("fetch-model"),
    })
    .clone()
}

/// The model's bytes, read once per test binary.
pub fn model_bytes() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| std::fs::read(model_path()).expect("read model"))
}

/// Python with the reference packages (gguf, numpy, tokenizers), from pkg-scripts/python-env.
pub fn python() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| script_path("python-env")).clone()
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
