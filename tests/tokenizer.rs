//! Tokenizer tests. Oracle: llama.cpp itself (goldens written by tests/reference/tokenize-golden.mjs
//! with the libllama that npm node-llama-cpp 3.22.1 ships).
//!
//! - Real model (Gemma 3 270M, SentencePiece vocabulary of 262144): tests/golden/tokenizer-gemma3-270m.json.
//! - Instruct model (SmolLM2-135M-Instruct, GPT-2 BPE of 49152, pre-tokenizer `smollm`, ChatML
//!   special tokens): tests/golden/tokenizer-smollm2-135m.json.
//! - Byte-level BPE: a real BPE vocabulary (trained with `tokenizers`, tests/reference/bpe-vocab.json)
//!   in tiny llama GGUFs written at test time by tests/reference/make_bpe_gguf.py, one per
//!   pre-tokenizer; goldens tests/golden/tokenizer-bpe-<pre>.json.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use browser_llm::gguf::Gguf;
use browser_llm::tokenizer::{Detokenizer, Tokenizer};
use browser_llm::ErrorCode;
use serde_json::Value;

fn gemma() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let g = Gguf::from_bytes(common::model_bytes()).expect("parse model");
        Tokenizer::from_gguf(&g).expect("tokenizer")
    })
}

fn smollm2() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let g = Gguf::from_bytes(&common::chat_model_arc()).expect("parse chat model");
        Tokenizer::from_gguf(&g).expect("tokenizer")
    })
}

use common::golden_json as load_golden;
use common::teacher::ids as ids_of;

/// The pre-tokenizers with a BPE golden (tokenizer.ggml.pre values).
const BPE_PRES: &[&str] = &["llama-bpe", "qwen2", "smollm", "default", "gpt-2"];

/// Tiny llama GGUF with the test BPE vocabulary and the given pre-tokenizer, written once per test run
/// into the target directory by the reference Python script.
fn bpe_gguf(pre: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tokenizer-bpe");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("bpe-{pre}.gguf"));
    // Regenerate every run (cheap) so that a changed script or vocabulary is always picked up; write to
    // a unique temp name first because test threads may race.
    let tmp = dir.join(format!("bpe-{pre}.{}.{:?}.tmp", std::process::id(), std::thread::current().id()));
    let out = Command::new(common::python())
        .arg(common::repo_root().join("tests/reference/make_bpe_gguf.py"))
        .arg("--pre")
        .arg(pre)
        .arg("--out")
        .arg(&tmp)
        .output()
        .expect("run make_bpe_gguf.py");
    assert!(out.status.success(), "make_bpe_gguf.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn bpe(pre: &str) -> Arc<Tokenizer> {
    static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<String, Arc<Tokenizer>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(t) = cache.lock().unwrap().get(pre) {
        return t.clone();
    }
    let bytes = std::fs::read(bpe_gguf(pre)).unwrap();
    let g = Gguf::from_bytes(&bytes).expect("parse bpe gguf");
    let t = Arc::new(Tokenizer::from_gguf(&g).expect("bpe tokenizer"));
    cache.lock().unwrap().insert(pre.to_string(), t.clone());
    t
}

/// Compare everything a golden file records; returns (cases, mismatch descriptions).
fn check_golden(tok: &Tokenizer, golden: &Value) -> (usize, Vec<String>) {
    let mut bad = Vec::new();
    let meta = &golden["tokenizer"];
    assert_eq!(tok.n_vocab() as u64, meta["n_vocab"].as_u64().unwrap(), "n_vocab");
    assert_eq!(tok.bos_id().map(u64::from), meta["bos"].as_u64(), "bos");
    assert_eq!(tok.eos_id().map(u64::from), meta["eos"].as_u64(), "eos");
    assert_eq!(tok.add_bos(), meta["add_bos"].as_bool().unwrap(), "add_bos");
    assert_eq!(tok.add_eos(), meta["add_eos"].as_bool().unwrap(), "add_eos");
    assert_eq!(tok.eog_ids(), ids_of(&meta["eog"]).as_slice(), "eog ids");
    for (id, a) in golden["attrs"].as_object().unwrap() {
        let id: u32 = id.parse().unwrap();
        let want = a.as_u64().unwrap() as u16;
        if tok.token_attr(id) != want {
            bad.push(format!("attr of {id} ({:?}): ours {:#x}, llama.cpp {want:#x}", tok.token_text(id), tok.token_attr(id)));
        }
    }
    let cases = golden["cases"].as_array().unwrap();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let text = c["text"].as_str().unwrap();
        let want = ids_of(&c["ids"]);
        let got = tok.encode(text, true, true);
        if got != want {
            bad.push(diff(name, "ids", &got, &want, tok));
        }
        let want_plain = ids_of(&c["ids_plain"]);
        let got_plain = tok.encode(text, false, false);
        if got_plain != want_plain {
            bad.push(diff(name, "ids_plain", &got_plain, &want_plain, tok));
        }
        // Detokenize llama.cpp's ids, so a tokenization mismatch is not counted twice.
        for (key, special) in [("detok", false), ("detok_special", true)] {
            let got = tok.detokenize(&want, false, special);
            let want_s = c[key].as_str().unwrap();
            if got != want_s {
                bad.push(format!("{name}: {key}: ours {got:?}, llama.cpp {want_s:?}"));
            }
        }
        if let Some(pieces) = c.get("pieces").and_then(|p| p.as_array()) {
            for (&id, p) in want.iter().zip(pieces) {
                let got = String::from_utf8_lossy(&tok.token_to_piece(id, true)).into_owned();
                if got != p.as_str().unwrap() {
                    bad.push(format!("{name}: piece of {id}: ours {got:?}, llama.cpp {p}"));
                }
            }
        }
    }
    (cases.len(), bad)
}

fn diff(name: &str, what: &str, got: &[u32], want: &[u32], tok: &Tokenizer) -> String {
    let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    let show = |ids: &[u32]| -> Vec<String> {
        ids.iter().skip(i.saturating_sub(2)).take(6).map(|&id| format!("{id}:{:?}", tok.token_text(id).unwrap_or("?"))).collect()
    };
    format!(
        "{name}: {what} differ at index {i} (ours {} ids, llama.cpp {}): ours {:?} / llama.cpp {:?}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    )
}

fn assert_golden(tok: &Tokenizer, file: &str) {
    let (n, bad) = check_golden(tok, &load_golden(file));
    assert!(bad.is_empty(), "{file}: {} mismatches in {n} cases:\n{}", bad.len(), bad.join("\n"));
    eprintln!("{file}: all {n} cases match llama.cpp");
}

#[test]
fn gemma_matches_llama_cpp() {
    assert_golden(gemma(), "tokenizer-gemma3-270m.json");
}

#[test]
fn smollm2_matches_llama_cpp() {
    assert_golden(smollm2(), "tokenizer-smollm2-135m.json");
}

/// The plain and ChatML prompts of the SmolLM2 model golden (llama_tokenize with special tokens).
#[test]
fn smollm2_matches_model_golden_prompts() {
    let g = load_golden("smollm2-135m.json");
    for p in g["prompts"].as_array().unwrap() {
        let ids = smollm2().encode(p["prompt"].as_str().unwrap(), true, true);
        assert_eq!(ids, ids_of(&p["prompt_ids"]), "prompt {}", p["name"]);
        let pieces: Vec<String> =
            ids_of(&p["gen_ids"]).iter().map(|&id| String::from_utf8_lossy(&smollm2().token_to_piece(id, true)).into_owned()).collect();
        let want: Vec<String> = p["gen_pieces"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
        assert_eq!(pieces, want, "pieces of {}", p["name"]);
    }
}

#[test]
fn gemma_matches_model_golden_prompts() {
    let g = load_golden("gemma3-270m.json");
    for p in g["prompts"].as_array().unwrap() {
        let ids = gemma().encode(p["prompt"].as_str().unwrap(), true, true);
        assert_eq!(ids, ids_of(&p["prompt_ids"]), "prompt {}", p["prompt"]);
        let pieces: Vec<String> =
            ids.iter().map(|&id| String::from_utf8_lossy(&gemma().token_to_piece(id, true)).into_owned()).collect();
        let want: Vec<String> =
            p["prompt_pieces"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
        assert_eq!(pieces, want);
    }
}

#[test]
fn gemma_special_tokens() {
    let t = gemma();
    assert_eq!(t.bos_id(), Some(2));
    let eot = t.token_to_id("<end_of_turn>").unwrap();
    assert!(t.eog_ids().contains(&eot) && t.eog_ids().contains(&1));
    assert!(t.is_control(eot) && t.is_control(2));
    assert!(!t.is_control(t.token_to_id("The").unwrap()));
    // Without parse_special, control tokens in the text are plain text.
    let ids = t.encode("<start_of_turn>", false, false);
    assert!(ids.len() > 1, "{ids:?}");
    assert_eq!(t.encode("<start_of_turn>", false, true), vec![t.token_to_id("<start_of_turn>").unwrap()]);
    assert_eq!(t.token_bytes(2), b"");
    assert_eq!(t.token_to_piece(2, true), b"<bos>");
}

#[test]
fn bpe_matches_llama_cpp() {
    let mut failures = Vec::new();
    for pre in BPE_PRES {
        let tok = bpe(pre);
        let file = format!("tokenizer-bpe-{pre}.json");
        let (n, bad) = check_golden(&tok, &load_golden(&file));
        if bad.is_empty() {
            eprintln!("{file}: all {n} cases match llama.cpp");
        } else {
            failures.push(format!("{file}: {} mismatches in {n} cases:\n{}", bad.len(), bad.join("\n")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every golden text: decode(encode(x)) gives x back where llama.cpp's own round trip does.
#[test]
fn round_trip_where_llama_cpp_does() {
    let mut checked = 0;
    let mut tokenizers: Vec<(String, Arc<Tokenizer>)> = BPE_PRES.iter().map(|p| (format!("bpe-{p}"), bpe(p))).collect();
    let g = Gguf::from_bytes(common::model_bytes()).unwrap();
    tokenizers.push(("gemma3-270m".into(), Arc::new(Tokenizer::from_gguf(&g).unwrap())));
    for (name, tok) in &tokenizers {
        let golden = load_golden(&format!("tokenizer-{name}.json"));
        for c in golden["cases"].as_array().unwrap() {
            let text = c["text"].as_str().unwrap();
            // llama.cpp round-trips this text when its detokenization of its plain ids is the text.
            let llama_rt = tok.detokenize(&ids_of(&c["ids_plain"]), false, false) == text;
            let ours = tok.decode(&tok.encode(text, false, false));
            if llama_rt {
                assert_eq!(ours, text, "{name}/{}: round trip", c["name"]);
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} round trips checked");
}

/// Feed byte-fallback and multi-byte pieces one token at a time: no emitted string may hold a broken
/// character, and the concatenation equals decode().
#[test]
fn detokenizer_never_splits_characters() {
    let t = gemma();
    let texts = [
        "𓀀𓀁 \u{10FFFD}\u{E000} 🫨🪿 mixed 中文 and 👨‍👩‍👧‍👦",
        "plain ascii",
        "👍🏽👍🏿🏳️‍🌈",
        "",
    ];
    let mut saw_byte_tokens = false;
    for text in texts {
        let ids = t.encode(text, true, true);
        saw_byte_tokens |= ids.iter().any(|&id| t.token_text(id).is_some_and(|s| s.starts_with("<0x")));
        let mut d = Detokenizer::new(t);
        let mut all = String::new();
        for &id in &ids {
            let s = d.push(id);
            // A String is valid UTF-8 by construction; what must not happen is a replacement
            // character standing for a split sequence.
            assert!(!s.contains('\u{FFFD}'), "{text:?}: emitted {s:?}");
            all.push_str(&s);
        }
        all.push_str(&d.finish());
        assert_eq!(all, t.decode(&ids), "{text:?}");
        assert_eq!(all, text, "{text:?}");
    }
    assert!(saw_byte_tokens, "the test texts must exercise byte-fallback tokens");

    // Through an Arc, and for the BPE vocabularies (every non-ASCII character is several byte tokens).
    for pre in BPE_PRES {
        let tok = bpe(pre);
        let text = "日本語 👩🏾‍💻 ∑ x² naïve";
        let ids = tok.encode(text, false, false);
        let mut d = Detokenizer::new(tok.clone());
        let mut all = String::new();
        for &id in &ids {
            let s = d.push(id);
            assert!(!s.contains('\u{FFFD}'), "{pre}: emitted {s:?}");
            all.push_str(&s);
        }
        all.push_str(&d.finish());
        assert_eq!(all, text, "{pre}");
    }

    // A cut sequence is flushed as U+FFFD by finish().
    let id = t.token_to_id("<0xF0>").unwrap();
    let mut d = t.detokenizer();
    assert_eq!(d.push(id), "");
    assert_eq!(d.finish(), "\u{FFFD}");
    // An impossible byte is replaced at once, and following text still flows.
    let bad = t.token_to_id("<0xFF>").unwrap();
    assert_eq!(d.push(bad), "\u{FFFD}");
    assert_eq!(d.push(t.token_to_id("The").unwrap()), "The");
}

#[test]
fn missing_tokenizer_metadata_is_a_typed_error() {
    let py = r#"
import sys, gguf, numpy as np
w = gguf.GGUFWriter(sys.argv[1], "llama")
w.add_block_count(1)
mode = sys.argv[2]
if mode in ("no_tokens", "bad_pre", "no_merges"):
    w.add_tokenizer_model("gpt2" if mode != "no_tokens" else "llama")
if mode == "bad_pre":
    w.add_tokenizer_pre("no-such-pre")
    w.add_token_list(["a", "b"])
    w.add_token_merges(["a b"])
if mode == "no_merges":
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(["a", "b"])
if mode == "bad_model":
    w.add_tokenizer_model("t5-unknown")
    w.add_token_list(["a", "b"])
w.add_tensor("x", np.zeros(4, dtype=np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
"#;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (mode, code) in [
        ("no_tokenizer", ErrorCode::UnsupportedModel),
        ("no_tokens", ErrorCode::BadGguf),
        ("bad_pre", ErrorCode::UnsupportedModel),
        ("no_merges", ErrorCode::BadGguf),
        ("bad_model", ErrorCode::UnsupportedModel),
    ] {
        let path = dir.join(format!("tokenizer-err-{mode}.gguf"));
        let out = Command::new(common::python()).arg("-c").arg(py).arg(&path).arg(mode).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&path).unwrap();
        let g = Gguf::from_bytes(&bytes).unwrap();
        let err = Tokenizer::from_gguf(&g).err().unwrap_or_else(|| panic!("{mode}: expected an error"));
        assert_eq!(err.code, code, "{mode}: {err}");
    }
}

#[test]
fn cli_tokenize_prints_one_json_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_browser-llm"))
        .args(["tokenize", "--model"])
        .arg(common::model_path())
        .args(["--text", "The capital of France is"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    let g = load_golden("gemma3-270m.json");
    let p = &g["prompts"][0];
    assert_eq!(v["ids"], p["prompt_ids"]);
    assert_eq!(v["pieces"], p["prompt_pieces"]);

    let out = Command::new(env!("CARGO_BIN_EXE_browser-llm"))
        .args(["tokenize", "--no-special", "--model"])
        .arg(common::model_path())
        .args(["--text", "<start_of_turn>"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert!(v["ids"].as_array().unwrap().len() > 1, "{v}");
}

/// Speed on the real vocabulary. The budget is loose in debug builds; the numbers are printed.
#[test]
fn gemma_speed() {
    let g = Gguf::from_bytes(common::model_bytes()).unwrap();
    let t0 = Instant::now();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let build = t0.elapsed();
    let golden = load_golden("tokenizer-gemma3-270m.json");
    let long = golden["cases"].as_array().unwrap().iter().find(|c| c["name"] == "long_mixed").unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(long.chars().count() >= 1000, "{}", long.chars().count());
    let t1 = Instant::now();
    let n = 20;
    for _ in 0..n {
        std::hint::black_box(tok.encode(&long, true, true));
    }
    let encode = t1.elapsed() / n;
    eprintln!("gemma: build {build:?}, encode of {} chars {encode:?}", long.chars().count());
    let release = !cfg!(debug_assertions);
    assert!(build.as_secs_f64() < if release { 1.0 } else { 5.0 }, "build took {build:?}");
    assert!(encode.as_secs_f64() < if release { 0.01 } else { 0.1 }, "encode took {encode:?}");
}

/// Minimal GGUF v3 writer for metadata-only files (no tensors).
enum Kv {
    U32(u32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
}

fn gguf_bytes(kvs: &[(&str, Kv)]) -> Vec<u8> {
    fn s(out: &mut Vec<u8>, v: &str) {
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // tensors
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        s(&mut out, k);
        let arr_header = |out: &mut Vec<u8>, ty: u32, n: usize| {
            out.extend_from_slice(&9u32.to_le_bytes());
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&(n as u64).to_le_bytes());
        };
        match v {
            Kv::U32(x) => {
                out.extend_from_slice(&4u32.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }
            Kv::Bool(x) => {
                out.extend_from_slice(&7u32.to_le_bytes());
                out.push(*x as u8);
            }
            Kv::Str(x) => {
                out.extend_from_slice(&8u32.to_le_bytes());
                s(&mut out, x);
            }
            Kv::Strs(xs) => {
                arr_header(&mut out, 8, xs.len());
                for x in xs {
                    s(&mut out, x);
                }
            }
            Kv::F32s(xs) => {
                arr_header(&mut out, 6, xs.len());
                xs.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            }
            Kv::I32s(xs) => {
                arr_header(&mut out, 5, xs.len());
                xs.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            }
        }
    }
    // Data section alignment (32) with no tensors.
    while out.len() % 32 != 0 {
        out.push(0);
    }
    out
}

/// The Gemma vocabulary with `add_space_prefix = true` (LLaMA 2-style SentencePiece): a space is
/// prefixed to the text and after every special token. Golden from the same vocabulary-only GGUF
/// (`make_bpe_gguf.py --spm-from`), loaded by llama.cpp.
#[test]
fn spm_space_prefix_matches_llama_cpp() {
    let g = Gguf::from_bytes(common::model_bytes()).unwrap();
    let arr = |k: &str| g.get_array(k).unwrap();
    let types: Vec<i32> = arr("tokenizer.ggml.token_type").to_i64s().unwrap().into_iter().map(|x| x as i32).collect();
    let id = |k: &str| g.get_u64(k).unwrap() as u32;
    let bytes = gguf_bytes(&[
        ("general.architecture", Kv::Str("llama".into())),
        ("general.name", Kv::Str("spm-space-prefix-test".into())),
        ("tokenizer.ggml.model", Kv::Str("llama".into())),
        ("tokenizer.ggml.tokens", Kv::Strs(arr("tokenizer.ggml.tokens").as_strings().unwrap().iter().map(String::from).collect())),
        ("tokenizer.ggml.scores", Kv::F32s(arr("tokenizer.ggml.scores").as_f32s().unwrap().to_vec())),
        ("tokenizer.ggml.token_type", Kv::I32s(types)),
        ("tokenizer.ggml.bos_token_id", Kv::U32(id("tokenizer.ggml.bos_token_id"))),
        ("tokenizer.ggml.eos_token_id", Kv::U32(id("tokenizer.ggml.eos_token_id"))),
        ("tokenizer.ggml.unknown_token_id", Kv::U32(id("tokenizer.ggml.unknown_token_id"))),
        ("tokenizer.ggml.add_space_prefix", Kv::Bool(true)),
    ]);
    let tok = Tokenizer::from_gguf(&Gguf::from_bytes(&bytes).unwrap()).unwrap();
    assert_golden(&tok, "tokenizer-spm-space-prefix.json");
    // The streaming detokenizer strips the prefixed space of the first token, as decode() does.
    let ids = tok.encode("Hello world", false, false);
    let mut d = Detokenizer::new(&tok);
    let s: String = ids.iter().map(|&i| d.push(i)).collect::<String>() + &d.finish();
    assert_eq!(s, "Hello world");
    assert_eq!(tok.decode(&ids), "Hello world");
}
