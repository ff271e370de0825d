//! `browser-llm synth --shape NAME --out PATH [--layers N] [--seed S]`: a GGUF with a real
//! model's shapes and weight formats and random weights, for GPU benchmarks and launch audits
//! where the real file cannot go (a lent GPU machine is offline and takes 64 MiB; a 1.5B model
//! is a gigabyte). Decode speed does not depend on the weights' values; the text is nonsense.
//!
//! Shapes (the formats follow the models' Q4_K_M files where the widths allow K-quants):
//! - `gemma3-270m`: Gemma 3 270M (640 wide, 18 layers, 4/1 heads of 256, vocab 262,144, tied
//!   Q8_0 embeddings; Q5_0 attention and gate/up, Q4_K down).
//! - `qwen2-1.5b`: a Qwen2 1.5B (1536 wide, 8960 FFN, 28 layers, 12/2 heads of 128, q/k/v
//!   biases, vocab 151,936, tied Q8_0 embeddings; Q4_K products, Q6_K down).
//! - `qwen2-7b`: a Qwen2 7B (3584 wide, 18,944 FFN, 28 layers, 28/4 heads of 128, vocab
//!   152,064, a Q6_K output head; Q4_K products, Q6_K down).
//!
//! The vocabulary is SentencePiece-style (`▁t3`, `▁t4`, ...), so a prompt of words `t3 t4 ...`
//! is one token per word. Weights are blocks of random bytes (`quant::random::random_row`) whose
//! f16 scales are then set to +-2^-14, so every weight is below 0.3 in magnitude and activations
//! (and the f16 KV cache) stay finite through every layer; norms are 1, biases 0.

use std::io::Write;

use browser_llm::gguf::write::write_gguf;
use browser_llm::gguf::{Array, Value};
use browser_llm::quant::random::{f16_fields, random_row, Rng};
use browser_llm::quant::{f32_to_f16, GgmlType};

use crate::args::SynthArgs;
use crate::{CliError, CliResult};

/// One synthesizable shape.
struct Shape {
    name: &'static str,
    arch: &'static str,
    n_embd: u64,
    n_ff: u64,
    n_layer: u32,
    n_head: u32,
    n_head_kv: u32,
    head_dim: u64,
    n_vocab: u64,
    /// The embedding table's format, and the output head's when it is not tied.
    embd: GgmlType,
    output: Option<GgmlType>,
    /// q, k, v, o and gate/up; down.
    attn: GgmlType,
    up: GgmlType,
    down: GgmlType,
    qkv_bias: bool,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "gemma3-270m", arch: "gemma3", n_embd: 640, n_ff: 2048, n_layer: 18, n_head: 4, n_head_kv: 1, head_dim: 256,
        n_vocab: 262_144, embd: GgmlType::Q8_0, output: None, attn: GgmlType::Q5_0, up: GgmlType::Q5_0, down: GgmlType::Q4_K,
        qkv_bias: false,
    },
    Shape {
        name: "qwen2-1.5b", arch: "qwen2", n_embd: 1536, n_ff: 8960, n_layer: 28, n_head: 12, n_head_kv: 2, head_dim: 128,
        n_vocab: 151_936, embd: GgmlType::Q8_0, output: None, attn: GgmlType::Q4_K, up: GgmlType::Q4_K, down: GgmlType::Q6_K,
        qkv_bias: true,
    },
    Shape {
        name: "qwen2-7b", arch: "qwen2", n_embd: 3584, n_ff: 18_944, n_layer: 28, n_head: 28, n_head_kv: 4, head_dim: 128,
        n_vocab: 152_064, embd: GgmlType::Q4_K, output: Some(GgmlType::Q6_K), attn: GgmlType::Q4_K, up: GgmlType::Q4_K,
        down: GgmlType::Q6_K, qkv_bias: true,
    },
];

pub fn run(args: &SynthArgs) -> CliResult {
    // (clap has checked the name against the same list.)
    let shape = SHAPES.iter().find(|s| s.name == args.shape).ok_or_else(|| CliError::Usage(format!("unknown shape {:?}", args.shape)))?;
    let out = args.out.display();
    let n_layer = args.layers.unwrap_or(shape.n_layer);
    if n_layer == 0 || n_layer > shape.n_layer {
        return Err(CliError::Usage(format!("--layers must be 1..={} for {}", shape.n_layer, shape.name)));
    }
    let mut rng = Rng::new(args.seed);
    let bytes = synthesize(shape, n_layer, &mut rng);
    let mut f = std::fs::File::create(&args.out).map_err(|e| CliError::Usage(format!("cannot create {out}: {e}")))?;
    f.write_all(&bytes).map_err(|e| CliError::Usage(format!("cannot write {out}: {e}")))?;
    eprintln!("[{}: {n_layer} layers, {:.1} MB written to {out}]", shape.name, bytes.len() as f64 / 1e6);
    Ok(())
}

fn synthesize(s: &Shape, n_layer: u32, rng: &mut Rng) -> Vec<u8> {
    let arch = |k: &str| format!("{}.{k}", s.arch);
    let tokens: Vec<String> =
        ["<unk>", "<s>", "</s>"].iter().map(|t| t.to_string()).chain((3..s.n_vocab).map(|i| format!("\u{2581}t{i}"))).collect();
    let mut kvs: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(s.arch.into())),
        ("general.name".into(), Value::String(format!("synthetic {}", s.name))),
        (arch("embedding_length"), Value::U32(s.n_embd as u32)),
        (arch("feed_forward_length"), Value::U32(s.n_ff as u32)),
        (arch("block_count"), Value::U32(n_layer)),
        (arch("attention.head_count"), Value::U32(s.n_head)),
        (arch("attention.head_count_kv"), Value::U32(s.n_head_kv)),
        (arch("attention.key_length"), Value::U32(s.head_dim as u32)),
        (arch("attention.value_length"), Value::U32(s.head_dim as u32)),
        (arch("context_length"), Value::U32(32_768)),
        (arch("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (arch("rope.freq_base"), Value::F32(1e6)),
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(Array::String(tokens.into()))),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
    ];
    if s.arch == "gemma3" {
        kvs.push((arch("attention.sliding_window"), Value::U32(512)));
    }
    let (e, hd) = (s.n_embd, s.head_dim);
    let (qd, kd) = (s.n_head as u64 * hd, s.n_head_kv as u64 * hd);
    // (name, [cols, rows], format)
    let mut specs: Vec<(String, Vec<u64>, GgmlType)> = vec![("token_embd.weight".into(), vec![e, s.n_vocab], s.embd)];
    if let Some(ty) = s.output {
        specs.push(("output.weight".into(), vec![e, s.n_vocab], ty));
    }
    specs.push(("output_norm.weight".into(), vec![e], GgmlType::F32));
    for il in 0..n_layer {
        let n = |t: &str| format!("blk.{il}.{t}");
        specs.extend([
            (n("attn_norm.weight"), vec![e], GgmlType::F32),
            (n("attn_q.weight"), vec![e, qd], s.attn),
            (n("attn_k.weight"), vec![e, kd], s.attn),
            (n("attn_v.weight"), vec![e, kd], s.attn),
            (n("attn_output.weight"), vec![qd, e], s.attn),
            (n("ffn_norm.weight"), vec![e], GgmlType::F32),
            (n("ffn_gate.weight"), vec![e, s.n_ff], s.up),
            (n("ffn_up.weight"), vec![e, s.n_ff], s.up),
            (n("ffn_down.weight"), vec![s.n_ff, e], s.down),
        ]);
        if s.qkv_bias {
            specs.extend([(n("attn_q.bias"), vec![qd], GgmlType::F32), (n("attn_k.bias"), vec![kd], GgmlType::F32), (n("attn_v.bias"), vec![kd], GgmlType::F32)]);
        }
        if s.arch == "gemma3" {
            specs.extend([
                (n("attn_q_norm.weight"), vec![hd], GgmlType::F32),
                (n("attn_k_norm.weight"), vec![hd], GgmlType::F32),
                (n("post_attention_norm.weight"), vec![e], GgmlType::F32),
                (n("post_ffw_norm.weight"), vec![e], GgmlType::F32),
            ]);
        }
    }
    let data: Vec<Vec<u8>> = specs
        .iter()
        .map(|(name, dims, ty)| match dims[..] {
            // Norms are 1, biases 0: the random products carry the values.
            [n] => {
                let v: f32 = if name.ends_with(".bias") { 0.0 } else { 1.0 };
                (0..n).flat_map(|_| v.to_le_bytes()).collect()
            }
            [cols, rows] => (0..rows).flat_map(|_| small_row(*ty, cols as usize, rng)).collect(),
            _ => unreachable!("one or two dimensions"),
        })
        .collect();
    let tensors: Vec<(&str, &[u64], u32, &[u8])> =
        specs.iter().zip(&data).map(|((name, dims, ty), d)| (name.as_str(), dims.as_slice(), ty.id(), d.as_slice())).collect();
    write_gguf(&kvs, &tensors)
}

/// A random row of `ty` whose blocks' f16 scales are +-2^-14 (see the module docs).
fn small_row(ty: GgmlType, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let mut row = random_row(ty, cols, rng);
    if ty.block_size() > 1 {
        for (i, blk) in row.chunks_exact_mut(ty.type_size()).enumerate() {
            let v = if i % 2 == 0 { 2f32.powi(-14) } else { -(2f32.powi(-14)) };
            for &off in f16_fields(ty) {
                blk[off..off + 2].copy_from_slice(&f32_to_f16(v).to_le_bytes());
            }
        }
    }
    row
}
