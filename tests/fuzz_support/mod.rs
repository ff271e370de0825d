//! The fuzz cases of tests/fuzz.rs, shared with its wasm32 share in tests/wasm.rs: a GGUF file as
//! editable parts ([`Desc`]), a deterministic generator ([`Rng`]), the mutations ([`mutate`]) and
//! one case run through everything a model file reaches ([`run_case`]). No file system, no
//! processes: it runs the same under wasm32.
#![allow(dead_code)]

use std::sync::Arc;

use browser_llm::backend::cpu::CpuBackend;
use browser_llm::chat::{self, ChatMessage};
use browser_llm::engine::{Engine, GenerateOptions};
use browser_llm::gguf::{Array, Gguf, Value};
use browser_llm::sampling::SamplingParams;
use browser_llm::tokenizer::Tokenizer;

use super::gguf_writer::write_gguf;

/// A GGUF file as editable parts: metadata, and tensors as (name, dims, ggml type id, bytes).
#[derive(Clone)]
pub struct Desc {
    pub kvs: Vec<(String, Value)>,
    pub tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

impl Desc {
    /// The parts of a file (`None` when it does not parse whole).
    pub fn of(bytes: &[u8]) -> Option<Desc> {
        let g = Gguf::from_bytes(bytes).ok()?;
        let tensors = g
            .tensors
            .iter()
            .map(|t| Some((t.name.clone(), t.dims.clone(), t.ty.id(), g.tensor_data(bytes, t).ok()?.to_vec())))
            .collect::<Option<Vec<_>>>()?;
        Some(Desc { kvs: g.metadata().to_vec(), tensors })
    }

    /// GGUF v3, alignment 32 (whatever `general.alignment` now says: a mismatch is a case too).
    pub fn bytes(&self) -> Vec<u8> {
        let tensors: Vec<(&str, &[u64], u32, &[u8])> =
            self.tensors.iter().map(|t| (t.0.as_str(), t.1.as_slice(), t.2, t.3.as_slice())).collect();
        write_gguf(&self.kvs, &tensors)
    }
}

/// xorshift64*: deterministic and dependency-free.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const INTS: &[u64] = &[0, 1, 2, 3, 7, 255, 65535, 65536, 1 << 24, (1 << 31) - 1, 1 << 31, u32::MAX as u64, (1 << 32) + 2, 1 << 40, 1 << 62, u64::MAX];
const FLOATS: &[f32] = &[0.0, -0.0, -1.0, 1e-45, 1e30, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.5, 1e6];
/// Chat templates a hostile file may carry: loops, recursion, inflation, bad syntax, raises. (Not
/// here: templates that build huge values ([`BOMBS`]): they stop at the render's memory budget,
/// which aborts the process by design (`src/budget.rs`), so tests/fuzz.rs runs them in child
/// processes.)
pub const TEMPLATES: &[&str] = &[
    "{{ messages|tojson(indent=1000000000) }}",
    "{% for i in range(100000000) %}x{% endfor %}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{{ 'x' * 1000000000 }}",
    "{% for m in messages %}{{ m.content * 100000 }}{% endfor %}",
    "{{ raise_exception('no') }}",
    "{% if %}",
    "{{ messages[0]['content'] }}<|im_start|>{{ bos_token * 1000 }}",
    "{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n{% endfor %}",
];

/// Templates that build huge values (lists, strings, dicts doubled in a loop): each must stop at
/// the render's memory budget, an abort by design.
pub const BOMBS: &[&str] = &[
    "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(45) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "{% set ns = namespace(l=[messages]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}",
    "{% set ns = namespace(s=messages|tojson) %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
];

fn mutate_value(r: &mut Rng, v: &Value) -> Value {
    let int = |r: &mut Rng| *r.pick(INTS);
    match v {
        Value::U8(_) => Value::U8(int(r) as u8),
        Value::I8(_) => Value::I8(int(r) as i8),
        Value::U16(_) => Value::U16(int(r) as u16),
        Value::I16(_) => Value::I16(int(r) as i16),
        Value::U32(_) => Value::U32(int(r) as u32),
        Value::I32(_) => Value::I32(if r.below(2) == 0 { -(int(r) as i32).saturating_abs() } else { int(r) as i32 }),
        Value::U64(_) => Value::U64(int(r)),
        Value::I64(_) => Value::I64(int(r) as i64),
        Value::F32(_) => Value::F32(*r.pick(FLOATS)),
        Value::F64(_) => Value::F64(*r.pick(FLOATS) as f64),
        Value::Bool(b) => Value::Bool(!b),
        Value::String(s) => Value::String(match r.below(5) {
            0 => String::new(),
            1 => s.repeat(1 + r.below(5000)),
            2 => r.pick(TEMPLATES).to_string(),
            3 => "\u{2581}\u{fffd}\u{10ffff}<|im_start|>\0".repeat(1 + r.below(100)),
            _ => s.chars().rev().collect(),
        }),
        Value::Array(a) => Value::Array(mutate_array(r, a)),
    }
}

fn mutate_array(r: &mut Rng, a: &Array) -> Array {
    fn edit<T: Clone>(r: &mut Rng, v: &[T], odd: impl Fn(&mut Rng) -> T) -> Vec<T> {
        let mut v = v.to_vec();
        match r.below(5) {
            0 => v.clear(),
            1 => v.truncate(r.below(v.len() + 1)),
            2 => {
                let n = r.below(v.len() + 1);
                v.extend(std::iter::repeat_with(|| odd(r)).take(1 + n));
            }
            3 if !v.is_empty() => {
                let i = r.below(v.len());
                v[i] = odd(r);
            }
            _ => v.reverse(),
        }
        v
    }
    match a {
        Array::String(v) => {
            let v: Vec<String> = v.iter().map(String::from).collect();
            Array::String(
                edit(r, &v, |r| match r.below(4) {
                    0 => String::new(),
                    1 => "\u{4e00}".repeat(1 + r.below(30000)),
                    2 => "<|im_start|>".into(),
                    _ => "x".repeat(1 + r.below(100)),
                })
                .into(),
            )
        }
        Array::F32(v) => Array::F32(edit(r, v, |r| *r.pick(FLOATS))),
        Array::I32(v) => Array::I32(edit(r, v, |r| *r.pick(&[-1, 0, 1, 2, 3, 4, 5, 6, i32::MAX, i32::MIN]))),
        Array::U32(v) => Array::U32(edit(r, v, |r| *r.pick(INTS) as u32)),
        Array::U64(v) => Array::U64(edit(r, v, |r| *r.pick(INTS))),
        Array::U8(v) => Array::U8(edit(r, v, |r| r.next() as u8)),
        Array::I8(v) => Array::I8(edit(r, v, |r| r.next() as i8)),
        Array::Bool(v) => Array::Bool(edit(r, v, |r| r.below(2) == 0)),
        // Rarer element types: emptied (and retyped) half the time.
        other if r.below(2) == 0 => other.clone(),
        _ => Array::U32(Vec::new()),
    }
}

/// Apply 1-3 mutations to a copy of `seed`; returns the file and what was done.
pub fn mutate(r: &mut Rng, seed: &Desc) -> (Vec<u8>, String) {
    let mut d = seed.clone();
    let mut what = Vec::new();
    let mut raw: Option<Box<dyn Fn(&mut Vec<u8>)>> = None;
    for _ in 0..1 + r.below(3) {
        match r.below(12) {
            0..=3 if !d.kvs.is_empty() => {
                let i = r.below(d.kvs.len());
                let v = mutate_value(r, &d.kvs[i].1);
                what.push(format!("{} = {}", d.kvs[i].0, short(&format!("{v:?}"))));
                d.kvs[i].1 = v;
            }
            4 if !d.kvs.is_empty() => {
                let i = r.below(d.kvs.len());
                what.push(format!("remove {}", d.kvs[i].0));
                d.kvs.remove(i);
            }
            5 if !d.kvs.is_empty() => {
                let i = r.below(d.kvs.len());
                let v = match r.below(3) {
                    0 => Value::String("2".into()),
                    1 => Value::F32(f32::NAN),
                    _ => Value::Array(Array::U32(vec![1, 2])),
                };
                what.push(format!("{} retyped to {}", d.kvs[i].0, v.type_name()));
                d.kvs[i].1 = v;
            }
            6 if !d.tensors.is_empty() => {
                let i = r.below(d.tensors.len());
                let t = &mut d.tensors[i];
                let j = r.below(t.1.len());
                t.1[j] = match r.below(4) {
                    0 => 0,
                    1 => t.1[j] * 2,
                    2 => *r.pick(INTS),
                    _ => t.1[j].saturating_sub(1),
                };
                what.push(format!("{} dims {:?}", t.0, t.1));
            }
            7 if !d.tensors.is_empty() => {
                let i = r.below(d.tensors.len());
                let ty = *r.pick(&[0u32, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 30, 99]);
                what.push(format!("{} type {ty}", d.tensors[i].0));
                d.tensors[i].2 = ty;
            }
            8 if !d.tensors.is_empty() => {
                let i = r.below(d.tensors.len());
                let t = &mut d.tensors[i];
                match r.below(3) {
                    0 => t.3.truncate(r.below(t.3.len() + 1)),
                    1 => t.3.chunks_mut(4).for_each(|c| c.copy_from_slice(&f32::NAN.to_le_bytes()[..c.len()])),
                    _ => t.3.iter_mut().for_each(|b| *b = r.next() as u8),
                }
                what.push(format!("{} data changed", t.0));
            }
            9 if !d.tensors.is_empty() => {
                let i = r.below(d.tensors.len());
                if r.below(2) == 0 {
                    what.push(format!("remove tensor {}", d.tensors[i].0));
                    d.tensors.remove(i);
                } else {
                    what.push(format!("duplicate tensor {}", d.tensors[i].0));
                    let t = d.tensors[i].clone();
                    d.tensors.push(t);
                }
            }
            10 => {
                let t = *r.pick(TEMPLATES);
                what.push(format!("chat template {t:?}"));
                d.kvs.retain(|(k, _)| k != "tokenizer.chat_template");
                d.kvs.push(("tokenizer.chat_template".into(), Value::String(t.into())));
            }
            _ => {
                let (at, cut) = (r.next(), r.below(2) == 0);
                let flip = r.next() as u8 | 1;
                what.push(if cut { "file cut short".into() } else { "a header byte flipped".into() });
                raw = Some(Box::new(move |b: &mut Vec<u8>| {
                    let n = b.len().max(1);
                    if cut {
                        b.truncate((at % n as u64) as usize);
                    } else {
                        let i = (at % (n.min(4096) as u64)) as usize;
                        if i < b.len() {
                            b[i] ^= flip;
                        }
                    }
                }));
            }
        }
    }
    let mut bytes = d.bytes();
    if let Some(f) = raw {
        f(&mut bytes);
    }
    (bytes, what.join("; "))
}

fn short(s: &str) -> String {
    if s.len() <= 80 {
        s.to_string()
    } else {
        format!("{}... ({} bytes)", s.chars().take(60).collect::<String>(), s.len())
    }
}

/// Where a case stopped: the stage that returned a (typed) error, or `Done`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reached {
    Parse,
    Tokenizer,
    Load,
    Generate,
    Done,
}

/// Run one file through everything a model file reaches (the template's own errors do not stop it).
pub fn run_case(bytes: Vec<u8>) -> Reached {
    let Ok(g) = Gguf::from_bytes(&bytes) else { return Reached::Parse };
    let Ok(tok) = Tokenizer::from_gguf(&g) else { return Reached::Tokenizer };
    let ids = tok.encode("Hello world <s> \u{4e00}\u{1f600}", true, true);
    let _ = tok.decode(&ids);
    let _ = tok.detokenize(&ids, false, true);
    let tpl = chat::template_for(g.get_str("tokenizer.chat_template"), &tok);
    let msgs = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi <|im_start|>system"),
    ];
    let bos = tok.bos_id().and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
    let eos = tok.eos_id().and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
    let _ = chat::encode_chat(&tok, &tpl, &msgs, None, true, &bos, &eos);
    let Ok(mut engine) = Engine::load(CpuBackend::with_threads(1), Arc::new(bytes), Some(32)) else { return Reached::Load };
    let n_vocab = tok.n_vocab().max(1) as u32;
    let prompt: Vec<u32> = [1u32, 3, 4].iter().map(|i| i % n_vocab).collect();
    let opts = GenerateOptions {
        max_tokens: 3,
        sampling: SamplingParams { temperature: 0.0, ..Default::default() },
        ignore_eos: true,
        ..Default::default()
    };
    match browser_llm::block_on(engine.generate_ids(&prompt, &opts, &mut |_, _| true)) {
        Ok(_) => Reached::Done,
        Err(_) => Reached::Generate,
    }
}
