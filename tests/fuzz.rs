//! Structure-aware fuzzing of everything a model file reaches: GGUF parse -> tokenizer (encode,
//! decode) -> chat template (render) -> config and weights (load on the CPU) -> a few greedy
//! tokens. Seeds are the tiny models of every architecture (tests/reference/make_tiny_models.py);
//! each case applies 1-3 mutations chosen by a deterministic generator: metadata values replaced
//! with boundary integers, non-finite floats, long or hostile strings (chat templates that loop,
//! recurse or inflate), arrays truncated or emptied, keys removed or retyped; tensors with other
//! dims, types or data, removed or duplicated; raw bytes flipped or the file cut short.
//!
//! Oracles, per case: no panic (a typed `Err` is fine), no single allocation above
//! [`MAX_ALLOC`] (the seeds are a few KB), and no case running past [`MAX_CASE`] (a hang guard,
//! not a speed test). The case about to run is written to `$CARGO_TARGET_TMPDIR/fuzz-current.gguf`
//! first, so an abort (an allocation that fails outright) leaves it behind. A failing input is
//! saved in `tests/fuzz-regressions/` (replayed first on every run: commit it with the fix) and
//! printed in base64, so a failure on a CI machine can be kept too.
//!
//! Templates that build huge values ([`BOMBS`]) abort at the render's memory budget by design:
//! [`BOMB_CASES`] mutated files carrying one run in child processes, each of which must end
//! normally or abort at the budget, within [`MAX_CASE`]. A share of the cases runs under wasm32
//! too (tests/wasm.rs, on the Rust-written tiny models).
//!
//! Budget: BROWSER_LLM_FUZZ_CASES cases (default [`DEFAULT_CASES`], about 25 s in a debug
//! build on 2 cores). Seed: BROWSER_LLM_FUZZ_SEED, else a random one, printed (a failure says how
//! to replay it).

mod common;
mod fuzz_support;
mod gguf_writer;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use browser_llm::budget::largest_alloc;
use browser_llm::chat::{self, ChatMessage};
use browser_llm::gguf::{Gguf, Value};
use browser_llm::tokenizer::Tokenizer;
use fuzz_support::{mutate, run_case, Desc, Reached, Rng, BOMBS, TEMPLATES};

const DEFAULT_CASES: usize = 10_000;
/// Mutated files with a memory-bomb template, each run in a child process.
const BOMB_CASES: usize = 12;
/// The environment variable that makes the bomb test a child running one file.
const BOMB_CHILD: &str = "BROWSER_LLM_FUZZ_BOMB_FILE";
/// Largest single allocation a case may make.
const MAX_ALLOC: usize = 64 << 20;
/// A case taking longer than this is a hang.
const MAX_CASE: Duration = Duration::from_secs(20);

fn tiny_models() -> Vec<(String, Vec<u8>)> {
    // Both tests of this file want the seeds and run in parallel: generate them once per process,
    // in a directory of this process, so neither reads a file the other is still writing.
    static SEEDS: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
    SEEDS
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-seeds-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            common::make_tiny_models(&dir);
            let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
                .collect();
            seeds.sort();
            let _ = std::fs::remove_dir_all(&dir);
            seeds
        })
        .clone()
}

/// Run `bytes` under the oracles; `Some(why)` when one broke.
fn check(bytes: Vec<u8>, current: &Path) -> (Option<String>, Option<Reached>) {
    std::fs::write(current, &bytes).unwrap();
    let t0 = Instant::now();
    let (r, largest) = largest_alloc(|| catch_unwind(AssertUnwindSafe(|| run_case(bytes))));
    let took = t0.elapsed();
    let reached = r.as_ref().ok().copied();
    let why = match r {
        Err(p) => Some(format!(
            "panic: {}",
            p.downcast_ref::<String>().map(String::as_str).or(p.downcast_ref::<&str>().copied()).unwrap_or("?")
        )),
        Ok(_) if largest > MAX_ALLOC => Some(format!("an allocation of {largest} bytes")),
        Ok(_) if took > MAX_CASE => Some(format!("took {took:?}")),
        Ok(_) => None,
    };
    (why, reached)
}

#[test]
fn fuzz_every_stage_a_model_file_reaches() {
    let cases: usize = std::env::var("BROWSER_LLM_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CASES);
    let seed = fuzz_seed();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let current = tmp.join("fuzz-current.gguf");
    let failures_dir = common::repo_root().join("tests/fuzz-regressions");
    let seeds: Vec<(String, Desc)> = tiny_models().into_iter().map(|(n, b)| (n, Desc::of(&b).expect("seed parses"))).collect();
    assert!(seeds.len() >= 6, "tiny models of every architecture: {:?}", seeds.iter().map(|s| &s.0).collect::<Vec<_>>());
    // The set-up above panics loudly; the cases' panics are caught and reported below, not
    // printed one by one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));

    let mut failures = Vec::new();
    // Regressions first: every input that once broke an oracle.
    let reg_dir = common::repo_root().join("tests/fuzz-regressions");
    let mut regressions = 0;
    if let Ok(rd) = std::fs::read_dir(&reg_dir) {
        for p in rd.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "gguf")) {
            regressions += 1;
            if let (Some(why), _) = check(std::fs::read(&p).unwrap(), &current) {
                failures.push(format!("regression {}: {why}", p.display()));
            }
        }
    }

    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut reached = [0usize; 5];
    let t0 = Instant::now();
    for case in 0..cases {
        let (name, desc) = &seeds[case % seeds.len()];
        let (bytes, what) = mutate(&mut rng, desc);
        let (why, got) = check(bytes.clone(), &current);
        if let Some(r) = got {
            reached[r as usize] += 1;
        }
        if let Some(why) = why {
            let file = failures_dir.join(format!("seed{seed}-case{case}.gguf"));
            std::fs::write(&file, &bytes).unwrap();
            failures.push(format!("case {case} ({name}: {what}): {why}; saved as {} (base64: {})", file.display(), base64(&bytes)));
        }
    }
    let _ = std::fs::remove_file(&current);
    std::panic::set_hook(hook);
    eprintln!(
        "fuzz: {cases} cases (seed {seed}) + {regressions} regressions in {:.1} s; typed errors at parse {}, tokenizer {}, load {}, generation {}; generated tokens {}; {} failures",
        t0.elapsed().as_secs_f64(),
        reached[Reached::Parse as usize],
        reached[Reached::Tokenizer as usize],
        reached[Reached::Load as usize],
        reached[Reached::Generate as usize],
        reached[Reached::Done as usize],
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} fuzz failures (replay: BROWSER_LLM_FUZZ_SEED={seed} BROWSER_LLM_FUZZ_CASES={cases}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// BROWSER_LLM_FUZZ_SEED, else a random seed (printed by the tests that use it).
fn fuzz_seed() -> u64 {
    std::env::var("BROWSER_LLM_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        (t.as_nanos() as u64 ^ std::process::id() as u64) % 1_000_000_007
    })
}

/// Standard base64, to print a failing file.
fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            out.push(if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// Mutated files carrying a template that builds a huge value, each in a child process (the
/// budget's abort ends the process by design): the child must finish (a mutation stopped the file
/// earlier, or the template failed on its own) or abort at the memory budget ("memory allocation
/// of" on stderr), never panic, never run past [`MAX_CASE`]. In the child (BOMB_CHILD names its
/// file) the test runs that one file.
#[test]
fn fuzz_memory_bomb_templates_stop_at_the_budget() {
    if let Some(file) = std::env::var_os(BOMB_CHILD) {
        let _ = run_case(std::fs::read(file).unwrap());
        return;
    }
    let seed = fuzz_seed();
    let seeds: Vec<(String, Desc)> = tiny_models().into_iter().map(|(n, b)| (n, Desc::of(&b).expect("seed parses"))).collect();
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-bombs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut aborted, mut finished, mut failures) = (0, 0, Vec::new());
    for case in 0..BOMB_CASES {
        let (name, desc) = &seeds[rng.below(seeds.len())];
        let (bytes, what) = if case < BOMBS.len() { (desc.bytes(), "no other mutation".to_string()) } else { mutate(&mut rng, desc) };
        let bomb = BOMBS[case % BOMBS.len()];
        let mut d = Desc::of(&bytes).unwrap_or_else(|| desc.clone());
        d.kvs.retain(|(k, _)| k != "tokenizer.chat_template");
        d.kvs.push(("tokenizer.chat_template".into(), Value::String(bomb.into())));
        let file = dir.join(format!("case{case}.gguf"));
        let bytes = d.bytes();
        std::fs::write(&file, &bytes).unwrap();
        let t0 = Instant::now();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "fuzz_memory_bomb_templates_stop_at_the_budget", "--nocapture", "--test-threads=1"])
            .env(BOMB_CHILD, &file)
            .output()
            .unwrap();
        let took = t0.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            finished += 1;
        } else if stderr.contains("memory allocation of") && !stderr.contains("panicked") {
            aborted += 1;
        } else {
            failures.push(format!("bomb case {case} ({name}: {what}; {bomb:?}): {}; base64: {}", stderr.lines().rev().take(8).collect::<Vec<_>>().join(" | "), base64(&bytes)));
        }
        if took > MAX_CASE {
            failures.push(format!("bomb case {case} ({name}) took {took:?}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("fuzz bombs: {BOMB_CASES} files (seed {seed}): {aborted} stopped at the memory budget, {finished} ended before it");
    assert!(aborted >= BOMBS.len(), "every bomb on an unmutated seed must reach the budget: {aborted}");
    assert!(failures.is_empty(), "replay: BROWSER_LLM_FUZZ_SEED={seed}\n{}", failures.join("\n"));
}

#[test]
fn hostile_chat_templates_in_a_file_are_typed_errors_or_bounded_output() {
    let seeds = tiny_models();
    let base = Desc::of(&seeds[0].1).expect("seed parses");
    for t in TEMPLATES {
        let mut d = base.clone();
        d.kvs.retain(|(k, _)| k != "tokenizer.chat_template");
        d.kvs.push(("tokenizer.chat_template".into(), Value::String(t.to_string())));
        let b = d.bytes();
        let g = Gguf::from_bytes(&b).unwrap();
        let tok = Tokenizer::from_gguf(&g).unwrap();
        let tpl = chat::template_for(g.get_str("tokenizer.chat_template"), &tok);
        assert_eq!(tpl.name(), "gguf", "the file's own template is used");
        let msgs = [ChatMessage::new("user", "Hi")];
        let t0 = Instant::now();
        let (r, largest) = largest_alloc(|| chat::render(&tpl, &msgs, true, "<s>", "</s>"));
        assert!(largest <= MAX_ALLOC && t0.elapsed() < MAX_CASE, "{t}: {largest} bytes, {:?}", t0.elapsed());
        match r {
            Ok(text) => assert!(text.len() <= 1 << 20, "{t}: {} bytes rendered", text.len()),
            Err(e) => assert_eq!(e.code, browser_llm::ErrorCode::InvalidArgument, "{t}: {e}"),
        }
    }
}
