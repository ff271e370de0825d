//! Test models shared by the integration tests, written with the crate's GGUF writer
//! (`browser_llm::gguf::write`): [`TinyModel`], a tiny valid model written entirely in Rust (no
//! Python), so hostile variants can be built on every target, wasm32 included.
#![allow(dead_code)]

use browser_llm::gguf::{Array, Value};
pub use browser_llm::gguf::write::write_gguf;

/// A tiny model with F32 weights and a SentencePiece-style vocabulary: `llama` (2 layers, GQA
/// 2:1) or `gemma3` (adds QK-norm, post-norms and a sliding window). It loads and generates;
/// tests change one metadata value or one tensor to make it hostile.
#[derive(Clone)]
pub struct TinyModel {
    pub arch: &'static str,
    pub kvs: Vec<(String, Value)>,
    /// (name, dims in ggml order, F32 data)
    pub tensors: Vec<(String, Vec<u64>, Vec<f32>)>,
}

pub const N_VOCAB: u64 = 16;
pub const N_EMBD: u64 = 8;
pub const N_LAYER: u64 = 2;
pub const HEAD_DIM: u64 = 4;
pub const N_HEAD: u64 = 2;
pub const N_HEAD_KV: u64 = 1;
pub const N_FF: u64 = 16;

impl TinyModel {
    pub fn new(arch: &'static str) -> TinyModel {
        let tokens: Vec<String> = ["<unk>", "<s>", "</s>"]
            .iter()
            .map(|s| s.to_string())
            .chain((3..N_VOCAB).map(|i| format!("\u{2581}t{i}")))
            .collect();
        let mut m = TinyModel { arch, kvs: Vec::new(), tensors: Vec::new() };
        m = m
            .set("general.architecture", Value::String(arch.into()))
            .set_arch("embedding_length", Value::U32(N_EMBD as u32))
            .set_arch("block_count", Value::U32(N_LAYER as u32))
            .set_arch("attention.head_count", Value::U32(N_HEAD as u32))
            .set_arch("attention.head_count_kv", Value::U32(N_HEAD_KV as u32))
            .set_arch("attention.key_length", Value::U32(HEAD_DIM as u32))
            .set_arch("attention.value_length", Value::U32(HEAD_DIM as u32))
            .set_arch("feed_forward_length", Value::U32(N_FF as u32))
            .set_arch("context_length", Value::U32(64))
            .set_arch("attention.layer_norm_rms_epsilon", Value::F32(1e-6))
            .set_arch("rope.freq_base", Value::F32(10000.0))
            .set("tokenizer.ggml.model", Value::String("llama".into()))
            .set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens.into())))
            .set("tokenizer.ggml.bos_token_id", Value::U32(1))
            .set("tokenizer.ggml.eos_token_id", Value::U32(2));
        if arch == "gemma3" {
            m = m.set_arch("attention.sliding_window", Value::U32(8));
        }
        let (e, ff, hd) = (N_EMBD, N_FF, HEAD_DIM);
        let (qd, kd) = (N_HEAD * hd, N_HEAD_KV * hd);
        m = m.tensor("token_embd.weight", &[e, N_VOCAB]).norm("output_norm.weight", e);
        for il in 0..N_LAYER {
            let n = |s: &str| format!("blk.{il}.{s}");
            m = m
                .norm(&n("attn_norm.weight"), e)
                .tensor(&n("attn_q.weight"), &[e, qd])
                .tensor(&n("attn_k.weight"), &[e, kd])
                .tensor(&n("attn_v.weight"), &[e, kd])
                .tensor(&n("attn_output.weight"), &[qd, e])
                .norm(&n("ffn_norm.weight"), e)
                .tensor(&n("ffn_gate.weight"), &[e, ff])
                .tensor(&n("ffn_up.weight"), &[e, ff])
                .tensor(&n("ffn_down.weight"), &[ff, e]);
            if arch == "gemma3" {
                m = m
                    .norm(&n("attn_q_norm.weight"), hd)
                    .norm(&n("attn_k_norm.weight"), hd)
                    .norm(&n("post_attention_norm.weight"), e)
                    .norm(&n("post_ffw_norm.weight"), e);
            }
        }
        m
    }

    /// Set (replace or append) a metadata value.
    pub fn set(mut self, key: &str, v: Value) -> Self {
        match self.kvs.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = v,
            None => self.kvs.push((key.to_string(), v)),
        }
        self
    }
    /// Set `{arch}.{key}`.
    pub fn set_arch(self, key: &str, v: Value) -> Self {
        let k = format!("{}.{key}", self.arch);
        self.set(&k, v)
    }
    pub fn remove_arch(mut self, key: &str) -> Self {
        let k = format!("{}.{key}", self.arch);
        self.kvs.retain(|(name, _)| *name != k);
        self
    }
    /// A tensor of small deterministic values.
    pub fn tensor(mut self, name: &str, dims: &[u64]) -> Self {
        let n = dims.iter().product::<u64>() as usize;
        let seed = self.tensors.len() as u64 * 7919;
        let data = (0..n as u64).map(|i| ((i * 37 + seed) % 101) as f32 / 101.0 - 0.5).collect();
        self.tensors.push((name.to_string(), dims.to_vec(), data));
        self
    }
    fn norm(mut self, name: &str, n: u64) -> Self {
        self.tensors.push((name.to_string(), vec![n], vec![1.0; n as usize]));
        self
    }
    /// Overwrite every value of tensor `name`.
    pub fn fill(mut self, name: &str, v: f32) -> Self {
        let t = self.tensors.iter_mut().find(|t| t.0 == name).unwrap_or_else(|| panic!("no tensor {name}"));
        t.2.iter_mut().for_each(|x| *x = v);
        self
    }
    /// Drop every tensor whose name starts with `prefix`.
    pub fn drop_tensors(mut self, prefix: &str) -> Self {
        self.tensors.retain(|t| !t.0.starts_with(prefix));
        self
    }

    /// The GGUF v3 file (alignment 32, tensors F32).
    pub fn bytes(&self) -> Vec<u8> {
        let data: Vec<Vec<u8>> = self.tensors.iter().map(|t| t.2.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
        let tensors: Vec<(&str, &[u64], u32, &[u8])> =
            self.tensors.iter().zip(&data).map(|(t, d)| (t.0.as_str(), t.1.as_slice(), 0, d.as_slice())).collect();
        write_gguf(&self.kvs, &tensors)
    }
}

/// One hostile variant of [`TinyModel`]: the audit rule it exercises, what was changed, the file,
/// the context length asked for, and the error code expected (`None`: it must load).
pub struct Hostile {
    pub rule: &'static str,
    pub what: String,
    pub bytes: Vec<u8>,
    pub n_ctx: Option<usize>,
    pub expect: Option<browser_llm::ErrorCode>,
}

/// Every hostile config, for the native tests (tests/hostile.rs, one test per rule) and the same
/// list under wasm32 (tests/wasm.rs), where usize is 32 bits: expected codes differ only where a
/// product overflows on one platform and merely mismatches the tensors on the other.
pub fn hostile_configs() -> Vec<Hostile> {
    use browser_llm::ErrorCode::{BadGguf, InvalidArgument, UnsupportedModel};
    let wasm = cfg!(target_pointer_width = "32");
    let mut out = Vec::new();
    let mut case = |rule, what: &str, m: TinyModel, n_ctx: Option<usize>, expect| {
        out.push(Hostile { rule, what: what.to_string(), bytes: m.bytes(), n_ctx, expect })
    };
    let llama = || TinyModel::new("llama");
    let u64v = |v: u64| Value::U64(v);

    // H1: more layers claimed than the file holds (allocated before any tensor was checked).
    case("H1", "block_count 2^24 - 1", llama().set_arch("block_count", Value::U32((1 << 24) - 1)), None, Some(BadGguf));
    case("H1", "block_count u32::MAX", llama().set_arch("block_count", Value::U32(u32::MAX)), None, Some(BadGguf));
    case("H1", "block_count 2^40", llama().set_arch("block_count", u64v(1 << 40)), None, Some(BadGguf));
    case("H1", "block_count 0", llama().set_arch("block_count", Value::U32(0)), None, Some(BadGguf));
    case("H1", "layer 1 missing", llama().drop_tensors("blk.1."), None, Some(BadGguf));
    case("H1", "block_count a string", llama().set_arch("block_count", Value::String("2".into())), None, Some(BadGguf));
    // L1: never truncated to 32 bits (2^32 + 2 would be a 2-layer model on wasm32).
    case("L1", "block_count 2^32 + 2", llama().set_arch("block_count", u64v((1 << 32) + 2)), None, Some(BadGguf));
    case("L1", "context_length 2^32 + 16", llama().set_arch("context_length", u64v((1 << 32) + 16)), None, if wasm { Some(BadGguf) } else { None });
    case("L1", "embedding_length 2^32 + 8", llama().set_arch("embedding_length", u64v((1 << 32) + 8)), None, Some(if wasm { BadGguf } else { UnsupportedModel }));
    // H4: head and FFN geometry whose products overflow.
    let heads = |v: Value| {
        llama()
            .set_arch("attention.head_count", v.clone())
            .set_arch("attention.head_count_kv", v.clone())
            .set_arch("attention.key_length", v.clone())
            .set_arch("attention.value_length", v)
    };
    case("H4", "heads and head dims 2^32", heads(u64v(1 << 32)), None, Some(BadGguf));
    // 65536 x 65536 wraps to 0 in 32 bits; natively it fits and must still match the tensors.
    case("H4", "heads and head dims 65536", heads(Value::U32(65536)), None, Some(if wasm { BadGguf } else { UnsupportedModel }));
    case("H4", "feed_forward_length 2^63", llama().set_arch("feed_forward_length", u64v(1 << 63)), None, Some(BadGguf));
    case(
        "H4",
        "key_length 2^63 with 2 heads",
        llama().set_arch("attention.key_length", u64v(1 << 63)).set_arch("attention.value_length", Value::U32(4)),
        None,
        Some(BadGguf),
    );
    case("H4", "value_length 2^31 + 1", llama().set_arch("attention.value_length", Value::U32((1 << 31) + 1)), None, Some(if wasm { BadGguf } else { UnsupportedModel }));
    case("H4", "head_count 0", llama().set_arch("attention.head_count", Value::U32(0)), None, Some(BadGguf));
    case("H4", "head_count_kv 0", llama().set_arch("attention.head_count_kv", Value::U32(0)), None, Some(BadGguf));
    case("H4", "head_count 2, head_count_kv 3", llama().set_arch("attention.head_count_kv", Value::U32(3)), None, Some(UnsupportedModel));
    case("H4", "head_count_kv per layer", llama().set_arch("attention.head_count_kv", Value::Array(Array::U32(vec![1, 1]))), None, Some(UnsupportedModel));
    // M3: floats that turn every logit into NaN.
    for v in [f32::NAN, -1e-6, 0.0, f32::INFINITY] {
        case("M3", &format!("layer_norm_rms_epsilon {v}"), llama().set_arch("attention.layer_norm_rms_epsilon", Value::F32(v)), None, Some(BadGguf));
    }
    for v in [f32::NAN, -10000.0, 0.0, f32::NEG_INFINITY] {
        case("M3", &format!("rope.freq_base {v}"), llama().set_arch("rope.freq_base", Value::F32(v)), None, Some(BadGguf));
    }
    for v in [f32::NAN, -2.0, 1e-45, f32::INFINITY] {
        let m = llama().set_arch("rope.scaling.type", Value::String("linear".into())).set_arch("rope.scaling.factor", Value::F32(v));
        case("M3", &format!("rope.scaling.factor {v}"), m, None, Some(BadGguf));
    }
    for v in [f32::NAN, -30.0, f32::INFINITY] {
        case("M3", &format!("final_logit_softcapping {v}"), llama().set_arch("final_logit_softcapping", Value::F32(v)), None, Some(BadGguf));
    }
    // L4: a window of 0 (the CPU saw no keys, the GPU treated it as no window).
    case("L4", "sliding_window 0", TinyModel::new("gemma3").set_arch("attention.sliding_window", Value::U32(0)), None, Some(BadGguf));
    // L3: more embedding/output rows than tokens (sampled ids had no text; llama.cpp rejects it).
    let padded = llama().drop_tensors("token_embd.").tensor("token_embd.weight", &[N_EMBD, N_VOCAB + 4]);
    case("L3", "token_embd rows = tokens + 4", padded, None, Some(BadGguf));
    // L11: a zero training context (every prompt used to be CONTEXT_OVERFLOW).
    case("L11", "context_length 0", llama().set_arch("context_length", Value::U32(0)), None, Some(BadGguf));
    // H5: a legal context whose KV cache cannot be allocated.
    let huge_ctx = || llama().set_arch("context_length", Value::U32(u32::MAX));
    case("H5", "n_ctx 2^31", huge_ctx(), Some(1 << 31), Some(InvalidArgument));
    case("H5", "n_ctx usize::MAX", huge_ctx(), Some(usize::MAX), Some(InvalidArgument));
    case("H5", "default n_ctx of a huge training context", huge_ctx(), None, None);
    // Controls: the unmodified models load.
    case("ok", "llama", llama(), None, None);
    case("ok", "gemma3", TinyModel::new("gemma3"), None, None);
    case("ok", "rope.scaling.factor 0 (none)", llama().set_arch("rope.scaling.type", Value::String("linear".into())).set_arch("rope.scaling.factor", Value::F32(0.0)), None, None);
    out
}
