//! Constrained decoding (`src/constrain.rs`) with the real models' vocabularies.
//!
//! - Property: for random JSON schemas (nested objects, arrays, enums, numbers, strings, required
//!   and optional fields) and random instances valid under them, the mask allows every token of
//!   the instance's own tokenization, and an end-of-generation token at its end: a mask never
//!   forbids what the grammar needs.
//! - With the instruct model, greedy: output under a nested schema parses and validates; a GBNF
//!   grammar and a regex are matched; logprobs agree with the greedy choice.

mod common;

use std::sync::Arc;

use browser_llm::backend::cpu::CpuBackend;
use browser_llm::constrain::{Constraint, ConstraintSpec, Vocab};
use browser_llm::engine::{Engine, GenerateOptions, Step};
use browser_llm::gguf::Gguf;
use browser_llm::sampling::{Rng, SamplingParams};
use browser_llm::tokenizer::Tokenizer;
use serde_json::{json, Map, Value};

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.next_u64() as usize % items.len()]
}

fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

fn random_string(rng: &mut Rng) -> String {
    const PARTS: &[&str] = &["a", "Zebra", " ", "42", "é", "中文", "\"", "\\", "/", "-", "ok", "_x", "!?", "naïve", "😀"];
    (0..below(rng, 5)).map(|_| *pick(rng, PARTS)).collect()
}

/// A random schema of at most `depth` levels of nesting.
fn random_schema(rng: &mut Rng, depth: u32) -> Value {
    let kinds: &[&str] =
        if depth == 0 { &["string", "integer", "number", "boolean", "enum"] } else { &["string", "integer", "number", "boolean", "enum", "array", "object", "object"] };
    match *pick(rng, kinds) {
        "string" => json!({ "type": "string", "maxLength": 12 }),
        "integer" => json!({ "type": "integer", "minimum": -50, "maximum": 5000 }),
        "number" => json!({ "type": "number" }),
        "boolean" => json!({ "type": "boolean" }),
        "enum" => json!({ "enum": ["red", "green", "dark blue", "naïve"] }),
        "array" => json!({ "type": "array", "items": random_schema(rng, depth - 1), "maxItems": 3 }),
        _ => {
            let mut props = Map::new();
            let mut required = Vec::new();
            for i in 0..1 + below(rng, 4) {
                let name = format!("{}{i}", pick(rng, &["name", "age", "tags", "x", "długość", "is_ok"]));
                if below(rng, 3) > 0 {
                    required.push(Value::String(name.clone()));
                }
                props.insert(name, random_schema(rng, depth - 1));
            }
            json!({ "type": "object", "properties": props, "required": required, "additionalProperties": false })
        }
    }
}

/// A random instance valid under `schema` (properties in the schema's order).
fn random_instance(rng: &mut Rng, schema: &Value) -> Value {
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        return pick(rng, e).clone();
    }
    match schema["type"].as_str().unwrap() {
        "string" => {
            let s: String = random_string(rng).chars().take(12).collect();
            Value::String(s)
        }
        "integer" => json!(below(rng, 5051) as i64 - 50),
        "number" => json!(*pick(rng, &[0.5, -3.25, 1e-3, 12345.0, 0.0, -7.0])),
        "boolean" => json!(below(rng, 2) == 0),
        "array" => Value::Array((0..below(rng, 4)).map(|_| random_instance(rng, &schema["items"])).collect()),
        _ => {
            let required: Vec<&str> = schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            let mut out = Map::new();
            for (k, sub) in schema["properties"].as_object().unwrap() {
                if required.contains(&k.as_str()) || below(rng, 2) == 0 {
                    out.insert(k.clone(), random_instance(rng, sub));
                }
            }
            Value::Object(out)
        }
    }
}

fn tokenizer(bytes: &[u8]) -> Arc<Tokenizer> {
    Arc::new(Tokenizer::from_gguf(&Gguf::from_bytes(bytes).unwrap()).unwrap())
}

/// Walk `text`'s tokens through a constraint for `spec`: every token allowed, then an end.
/// Returns the masks computed and the time they took (the per-token cost of a constraint).
fn walk(vocab: &Vocab, tok: &Tokenizer, spec: &ConstraintSpec, text: &str) -> Result<(usize, std::time::Duration), String> {
    let mut c = Constraint::new(vocab, spec).map_err(|e| e.message)?;
    let mut logits = vec![0.0f32; tok.n_vocab()];
    let (mut masks, mut spent) = (0, std::time::Duration::ZERO);
    for (i, id) in tok.encode(text, false, false).into_iter().enumerate() {
        logits.fill(0.0);
        let t0 = std::time::Instant::now();
        c.mask(&mut logits).map_err(|e| e.message)?;
        spent += t0.elapsed();
        masks += 1;
        if logits[id as usize] == f32::NEG_INFINITY {
            return Err(format!("token {i} ({id} = {:?}) forbidden", String::from_utf8_lossy(&tok.token_bytes(id))));
        }
        c.commit(id).map_err(|e| e.message)?;
    }
    if !c.is_done() {
        logits.fill(0.0);
        c.mask(&mut logits).map_err(|e| e.message)?;
        if !tok.eog_ids().iter().any(|&e| logits[e as usize] == 0.0) {
            return Err("no end-of-generation token allowed at the end".into());
        }
    }
    Ok((masks, spent))
}

fn masks_allow_valid_instances(tok: Arc<Tokenizer>, cases: u64, seed: u64) {
    let vocab = Vocab::new(tok.clone()).unwrap();
    let mut rng = Rng::new(seed);
    let (mut masks, mut spent) = (0, std::time::Duration::ZERO);
    for case in 0..cases {
        let schema = random_schema(&mut rng, 3);
        let instance = random_instance(&mut rng, &schema);
        let text = serde_json::to_string(&instance).unwrap();
        let spec = ConstraintSpec::JsonSchema(schema.clone());
        match walk(&vocab, &tok, &spec, &text) {
            Ok((n, t)) => (masks, spent) = (masks + n, spent + t),
            Err(e) => panic!("case {case}: {e}\nschema: {schema}\ninstance: {text}"),
        }
    }
    // A measurement, not a check (timing belongs to benchmarks): the cost of a mask per token.
    println!("{masks} masks over a {}-token vocabulary, {:.0} µs each", tok.n_vocab(), spent.as_secs_f64() * 1e6 / masks.max(1) as f64);
}

#[test]
fn masks_never_forbid_what_a_random_schema_needs_smollm2_bpe() {
    masks_allow_valid_instances(tokenizer(&common::chat_model_arc()), 60, 1);
}

#[test]
fn masks_never_forbid_what_a_random_schema_needs_gemma3_spm() {
    masks_allow_valid_instances(tokenizer(common::model_bytes()), 25, 2);
}

#[test]
fn grammars_and_regexes_accept_their_language() {
    let tok = tokenizer(&common::chat_model_arc());
    let vocab = Vocab::new(tok.clone()).unwrap();
    let gbnf = ConstraintSpec::Grammar("root ::= (\"yes\" | \"no\") \", because \" [a-z ]{1,30} \".\"".into());
    walk(&vocab, &tok, &gbnf, "no, because it rains.").unwrap();
    assert!(walk(&vocab, &tok, &gbnf, "maybe.").is_err());
    let lark = ConstraintSpec::Grammar("start: item (\",\" item)*\nitem: /[0-9]+/".into());
    walk(&vocab, &tok, &lark, "12,7,300").unwrap();
    let re = ConstraintSpec::Regex(r"\d{3}-\d{4}".into());
    walk(&vocab, &tok, &re, "555-1234").unwrap();
    assert!(walk(&vocab, &tok, &re, "555-12345").is_err());
    walk(&vocab, &tok, &ConstraintSpec::JsonObject, r#"{"a": [1, {"b": null}]}"#).unwrap();
    // Bad constraints are typed errors, not panics.
    for bad in [
        ConstraintSpec::Grammar("root ::= (".into()),
        ConstraintSpec::Regex("(".into()),
        ConstraintSpec::JsonSchema(json!({ "type": "no-such-type" })),
        ConstraintSpec::JsonSchema(json!(["not", "an", "object"])),
        ConstraintSpec::JsonSchema(json!({ "$ref": "#/$defs/missing" })),
    ] {
        let e = Constraint::new(&vocab, &bad).err().unwrap_or_else(|| panic!("{bad:?} compiled"));
        assert_eq!(e.code, browser_llm::ErrorCode::InvalidArgument, "{}", e.message);
    }
}

fn chat_prompt(tok: &Tokenizer, user: &str) -> Vec<u32> {
    tok.encode(&format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"), false, true)
}

#[test]
fn greedy_output_under_a_nested_schema_parses_and_validates_and_logprobs_agree() {
    let mut engine = Engine::load(CpuBackend::new(), common::chat_model_arc(), Some(1024)).unwrap();
    let schema = json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "maxLength": 20 },
            "age": { "type": "integer", "minimum": 0, "maximum": 120 },
            "height_m": { "type": "number" },
            "pets": { "type": "array", "maxItems": 2, "items": {
                "type": "object",
                "properties": { "kind": { "enum": ["cat", "dog", "fish"] }, "name": { "type": "string", "maxLength": 12 } },
                "required": ["kind", "name"], "additionalProperties": false,
            } },
        },
        "required": ["name", "age", "height_m", "pets"],
        "additionalProperties": false,
    });
    let prompt = chat_prompt(&engine.tokenizer, "Describe a person and their pets as JSON.");
    let opts = GenerateOptions {
        max_tokens: 200,
        sampling: SamplingParams::greedy(),
        constraint: Some(ConstraintSpec::JsonSchema(schema)),
        logprobs: Some(3),
        ..Default::default()
    };
    let mut g = engine.begin(&prompt, &opts).unwrap();
    let mut lps = Vec::new();
    while let Some(step) = browser_llm::block_on(engine.step(&mut g)).unwrap() {
        if let Step::Token { logprob: Some(lp), .. } = step {
            lps.push(lp);
        }
    }
    let r = g.into_generation();
    println!("{} ({:?})", r.text, r.finish_reason);
    assert_eq!(r.finish_reason.as_str(), "stop", "the grammar completed before max_tokens");
    let v: Value = serde_json::from_str(&r.text).unwrap_or_else(|e| panic!("{e}: {}", r.text));
    let age = v["age"].as_i64().unwrap();
    assert!((0..=120).contains(&age) && v["name"].is_string() && v["height_m"].is_number(), "{v}");
    for p in v["pets"].as_array().unwrap() {
        assert!(["cat", "dog", "fish"].contains(&p["kind"].as_str().unwrap()) && p["name"].is_string(), "{v}");
    }
    // Logprobs: one per token; the raw distribution's best token is the greedy choice wherever
    // the constraint allowed it; every logprob is at most the best one.
    assert_eq!(lps.len(), r.ids.len());
    for (lp, &id) in lps.iter().zip(&r.ids) {
        assert_eq!(lp.id, id);
        assert_eq!(lp.top.len(), 3);
        assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(lp.logprob <= lp.top[0].1 + 1e-6 && lp.logprob < 0.0 + 1e-6);
    }
    // Unconstrained, the greedy token is always the raw top.
    let opts = GenerateOptions { max_tokens: 16, sampling: SamplingParams::greedy(), logprobs: Some(2), ..Default::default() };
    let mut g = engine.begin(&prompt, &opts).unwrap();
    while let Some(step) = browser_llm::block_on(engine.step(&mut g)).unwrap() {
        if let Step::Token { id, logprob: Some(lp), .. } = step {
            assert_eq!(lp.top[0].0, id);
            assert!((lp.top[0].1 - lp.logprob).abs() < 1e-6);
        }
    }
}
