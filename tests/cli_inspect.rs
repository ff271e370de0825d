//! `browser-llm inspect` on the real model and on files that are not GGUF.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn inspect(model: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_browser-llm"))
        .args(["inspect", "--model"])
        .arg(model)
        .output()
        .expect("run browser-llm")
}

/// The output lines with runs of spaces collapsed, so checks do not depend on column widths.
fn lines(out: &[u8]) -> Vec<String> {
    String::from_utf8(out.to_vec())
        .expect("utf-8 output")
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[track_caller]
fn has(lines: &[String], want: &str) {
    assert!(lines.iter().any(|l| l == want), "no line {want:?} in:\n{}", lines.join("\n"));
}

#[test]
fn inspect_real_model() {
    let out = inspect(&common::model_path());
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let l = lines(&out.stdout);
    assert_eq!(
        l[0],
        "GGUF v3, 253113024 bytes (241.4 MiB); 33 metadata entries, 236 tensors; alignment 32, \
         tensor data at 6525120"
    );
    has(&l, "KEY TYPE VALUE");
    has(&l, "general.architecture string \"gemma3\"");
    has(&l, "gemma3.block_count u32 18");
    has(&l, "tokenizer.ggml.add_bos_token bool true");
    let tokens = l.iter().find(|l| l.starts_with("tokenizer.ggml.tokens ")).expect("tokens line");
    assert!(tokens.starts_with(r#"tokenizer.ggml.tokens array[string] [string; 262144] ["<pad>", "<eos>", "<bos>""#));
    assert!(tokens.ends_with(", …]") && tokens.len() < 300, "abbreviated: {tokens}");

    has(&l, "NAME TYPE DIMS BYTES OFFSET");
    has(&l, "token_embd.weight Q8_0 640 x 262144 178257920 6527680");
    has(&l, "blk.17.post_ffw_norm.weight F32 640 2560 253110464");
    assert_eq!(l.iter().filter(|l| l.starts_with("blk.")).count(), 234);

    has(&l, "TYPE TENSORS ELEMENTS BYTES SIZE");
    has(&l, "Q8_0 10 169246720 179824640 171.5 MiB");
    has(&l, "total 236 268098176 246587904 235.2 MiB");
    assert_eq!(l.last().map(String::as_str), Some("total 236 268098176 246587904 235.2 MiB"));
}

#[test]
fn inspect_rejects_files_that_are_not_gguf() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let cases: [(&str, &[u8], &str); 3] = [
        ("not-gguf.txt", b"hello, this is not a model\n", "not a GGUF file"),
        ("empty.gguf", b"", "truncated"),
        ("v1.gguf", b"GGUF\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", "version 1"),
    ];
    for (name, bytes, why) in cases {
        let path = dir.join(format!("cli-inspect-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let out = inspect(&path);
        std::fs::remove_file(&path).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: stderr: {stderr}");
        assert!(stderr.starts_with("error[BAD_GGUF]: "), "{name}: {stderr}");
        assert!(stderr.contains(why), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
    }
}

#[test]
fn inspect_usage_and_missing_file() {
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-inspect-no-such-file.gguf");
    let out = inspect(&missing);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error[INVALID_ARGUMENT]: cannot read model file"));

    let out = Command::new(env!("CARGO_BIN_EXE_browser-llm")).arg("inspect").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model <PATH>"), "names the missing flag");
}

#[test]
fn unknown_or_malformed_flags_are_usage_errors_and_help_lists_every_flag() {
    let cli = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_browser-llm")).args(args).output().unwrap();
    let model = common::model_path();
    let model = model.to_str().unwrap();
    for (args, says) in [
        (&["generate", "--model", model, "--prompt", "hi", "--bogus-flag", "7"][..], "Usage: browser-llm generate"),
        (&["generate", "--model", model, "--prompt", "hi", "--max-tokens", "many"], "--max-tokens"),
        (&["generate", "--model", model, "--prompt", "hi", "--backend", "webgpu"], "possible values: cpu, gpu, auto"),
        (&["synth", "--shape", "qwen2-1.5b", "--out", "/dev/null", "--layers", "99"], "--layers must be 1..=28"),
        (&["frobnicate"], "Usage: browser-llm <COMMAND>"),
    ] {
        let out = cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        // An unknown flag or command prints the usage; a bad value points to --help.
        assert!(err.contains(says) && (err.contains("Usage:") || err.contains("--help")), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing runs");
    }
    let help = cli(&["generate", "--help"]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--model", "--prompt", "--max-tokens", "--temperature", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--seed", "--stop", "--ctx", "--threads", "--backend", "--ignore-eos", "--json", "--json-schema", "--grammar", "--regex", "--gpu-layout", "--no-subgroups"] {
        assert!(help.contains(&format!("{flag} ")), "--help lists {flag}:\n{help}");
    }
    assert!(help.contains("[default: 256]") && help.contains("[default: cpu]"), "with defaults:\n{help}");
}
