//! [`Tokenizer::from_gguf`]: the vocabulary, its attributes, merges and special ids from
//! `tokenizer.ggml.*`, checked (llama.cpp `llama_vocab::load`).

use crate::hash::{seeded, HashMap};
use super::pretok::PreTokenizer;
use super::texts::Texts;
use super::{attr, unicode, Tokenizer, VocabType};
use crate::error::{Error, Result};
use crate::gguf::Gguf;

/// Texts that make a token an end-of-generation token (llama.cpp's list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] =
    &["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"];
const FIM_SUF_TEXTS: &[&str] =
    &["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"];
const FIM_MID_TEXTS: &[&str] =
    &["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// Per-pre-tokenizer flags: splitter, `ignore_merges`, default `add_bos`, `clean_spaces`.
fn pre_tokenizer(name: &str) -> Option<(PreTokenizer, bool, bool, bool)> {
    use PreTokenizer::*;
    Some(match name {
        "" | "default" => (Default, false, false, true),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" => (Llama3, true, true, true),
        "dbrx" | "smaug-bpe" => (Llama3, false, false, true),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" => (Qwen2, false, false, false),
        "megrez" | "stablelm2" => (Qwen2, false, false, true),
        "smollm" | "command-r" => (Smollm, false, false, false),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => (Smollm, false, false, true),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum"
        | "modern-bert" | "exaone4" | "mpt" | "olmo" | "jais" => (Gpt2, false, false, true),
        "trillion" | "granite-docling" => (Gpt2, false, false, false),
        _ => return None,
    })
}

impl Tokenizer {
    /// Build the tokenizer from `tokenizer.ggml.*` metadata.
    ///
    /// Errors: `UNSUPPORTED_MODEL` when the file has no tokenizer or an unknown vocabulary type or
    /// pre-tokenizer; `BAD_GGUF` when the tokenizer metadata is missing parts or has the wrong types.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer> {
        let model = g.get_str("tokenizer.ggml.model").ok_or_else(|| {
            Error::unsupported_model("the GGUF has no tokenizer (metadata key tokenizer.ggml.model is missing)")
        })?;
        let pre = g.get_str("tokenizer.ggml.pre").unwrap_or("");

        // Defaults per vocabulary type (llama.cpp `llama_vocab::impl::load`).
        let (vocab_type, mut bos, mut eos, mut unk, ignore_merges, mut add_bos, mut add_eos, mut add_space_prefix, clean_spaces) =
            match model {
                "llama" => (VocabType::Spm, Some(1), Some(2), Some(0), false, true, false, true, false),
                "gpt2" => {
                    let (pt, ignore_merges, add_bos, clean) = pre_tokenizer(pre).ok_or_else(|| {
                        Error::unsupported_model(format!(
                            "unsupported pre-tokenizer '{pre}' (tokenizer.ggml.pre); supported: default, llama3/llama-bpe, qwen2, smollm, gpt-2 and their aliases"
                        ))
                    })?;
                    (VocabType::Bpe(pt), Some(11), Some(11), None, ignore_merges, add_bos, false, false, clean)
                }
                other => {
                    return Err(Error::unsupported_model(format!(
                        "unsupported tokenizer type '{other}' (tokenizer.ggml.model); supported: llama (SentencePiece), gpt2 (byte-level BPE)"
                    )))
                }
            };
        if let Some(v) = g.get_bool("tokenizer.ggml.add_space_prefix") {
            add_space_prefix = v;
        }

        let texts_in = g
            .get_array("tokenizer.ggml.tokens")
            .and_then(|a| a.as_strings())
            .ok_or_else(|| Error::bad_gguf("tokenizer.ggml.tokens is missing or not a string array"))?;
        let n = texts_in.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::bad_gguf(format!("tokenizer.ggml.tokens has {n} tokens")));
        }

        let scores: Vec<f32> = match g.get_array("tokenizer.ggml.scores") {
            None => vec![0.0; n],
            Some(a) => {
                let s: Vec<f32> = match a.as_f32s() {
                    Some(s) => s.to_vec(),
                    None => a
                        .to_i64s()
                        .ok_or_else(|| Error::bad_gguf("tokenizer.ggml.scores is not a float or integer array"))?
                        .into_iter()
                        .map(|x| x as f32)
                        .collect(),
                };
                if s.len() < n {
                    return Err(Error::bad_gguf(format!("tokenizer.ggml.scores has {} entries for {n} tokens", s.len())));
                }
                s[..n].to_vec()
            }
        };

        let mut attrs: Vec<u16> = match g.get_array("tokenizer.ggml.token_type") {
            None => vec![attr::NORMAL; n],
            Some(a) => {
                let t = a.to_i64s().ok_or_else(|| Error::bad_gguf("tokenizer.ggml.token_type is not an integer array"))?;
                if t.len() < n {
                    return Err(Error::bad_gguf(format!("tokenizer.ggml.token_type has {} entries for {n} tokens", t.len())));
                }
                t[..n]
                    .iter()
                    .map(|&ty| match ty {
                        1 => attr::NORMAL,
                        2 => attr::UNKNOWN,
                        3 => attr::CONTROL,
                        4 => attr::USER_DEFINED,
                        5 => attr::UNUSED,
                        6 => attr::BYTE,
                        _ => attr::UNDEFINED,
                    })
                    .collect()
            }
        };

        // Texts; llama.cpp renames empty tokens so that every text is unique and non-empty.
        let texts = Texts::new(if texts_in.iter().any(str::is_empty) {
            texts_in.iter().enumerate().map(|(i, t)| if t.is_empty() { format!("[EMPTY_{i}]") } else { t.to_owned() }).collect()
        } else {
            texts_in.clone()
        });
        let text = |id: u32| texts.get(id).unwrap_or("");

        let mut bpe_ranks: HashMap<Box<[u8]>, u32> = HashMap::with_hasher(seeded());
        if let VocabType::Bpe(_) = vocab_type {
            let merges = g
                .get_array("tokenizer.ggml.merges")
                .and_then(|a| a.as_strings())
                .ok_or_else(|| Error::bad_gguf("tokenizer.ggml.merges is missing or not a string array"))?;
            bpe_ranks.reserve(merges.len());
            for (rank, m) in merges.iter().enumerate() {
                // Split at the first space after the first byte; a merge without one becomes ("", "").
                // (Byte search: the first character may be multi-byte, e.g. "Ġ".)
                let (first, second) = match m.as_bytes().iter().skip(1).position(|&b| b == b' ') {
                    Some(p) => (&m[..p + 1], &m[p + 2..]),
                    None => ("", ""),
                };
                // The first occurrence of a pair keeps its rank (`emplace`).
                bpe_ranks.entry(pair_key(first, second)).or_insert(rank as u32);
            }
        }

        // Special token ids: defaults that fall outside the vocabulary are disabled; metadata ids
        // outside it are ignored.
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let meta_id = |key: &str, default: Option<u32>| -> Option<u32> {
            let default = in_range(default);
            match g.get_u64(key) {
                // Compared as u64: `as usize` would truncate 2^32 + 1 to 1 on wasm32.
                Some(v) if v < n as u64 => Some(v as u32),
                _ => default,
            }
        };
        bos = meta_id("tokenizer.ggml.bos_token_id", bos);
        eos = meta_id("tokenizer.ggml.eos_token_id", eos);
        let mut eot = meta_id("tokenizer.ggml.eot_token_id", None);
        let mut eom = meta_id("tokenizer.ggml.eom_token_id", None);
        unk = meta_id("tokenizer.ggml.unknown_token_id", unk);
        let mut fim_pre = meta_id("tokenizer.ggml.fim_pre_token_id", None);
        let mut fim_suf = meta_id("tokenizer.ggml.fim_suf_token_id", None);
        let mut fim_mid = meta_id("tokenizer.ggml.fim_mid_token_id", None);
        let mut fim_pad = meta_id("tokenizer.ggml.fim_pad_token_id", None);
        let mut fim_rep = meta_id("tokenizer.ggml.fim_rep_token_id", None);
        let mut fim_sep = meta_id("tokenizer.ggml.fim_sep_token_id", None);
        // Deprecated keys, read after the new ones as llama.cpp does.
        fim_pre = meta_id("tokenizer.ggml.prefix_token_id", fim_pre);
        fim_suf = meta_id("tokenizer.ggml.suffix_token_id", fim_suf);
        fim_mid = meta_id("tokenizer.ggml.middle_token_id", fim_mid);

        if let Some(v) = g.get_bool("tokenizer.ggml.add_bos_token") {
            add_bos = v;
        }
        if let Some(v) = g.get_bool("tokenizer.ggml.add_eos_token") {
            add_eos = v;
        }

        // Find unset special tokens by their text, forcing them to control tokens. llama.cpp walks a hash
        // map here, so with several candidates its pick is unspecified; we take the lowest id.
        let find = |list: &[&str]| -> Option<u32> { list.iter().filter_map(|t| texts.id(t)).min() };
        for (slot, list) in [
            (&mut eot, EOT_TEXTS),
            (&mut eom, EOM_TEXTS),
            (&mut fim_pre, FIM_PRE_TEXTS),
            (&mut fim_suf, FIM_SUF_TEXTS),
            (&mut fim_mid, FIM_MID_TEXTS),
            (&mut fim_pad, FIM_PAD_TEXTS),
            (&mut fim_rep, FIM_REP_TEXTS),
            (&mut fim_sep, FIM_SEP_TEXTS),
        ] {
            if slot.is_none() {
                *slot = find(list);
                if let Some(id) = *slot {
                    attrs[id as usize] |= attr::CONTROL;
                }
            }
        }

        // Control tokens whose text says "unused" are unused (no effect on encoding or pieces).
        for (i, a) in attrs.iter_mut().enumerate() {
            if *a & attr::CONTROL != 0 && text(i as u32).contains("unused") {
                *a |= attr::UNUSED;
            }
        }

        // End-of-generation set.
        let mut eog: Vec<u32> = Vec::new();
        eog.extend(fim_pad);
        eog.extend(fim_rep);
        eog.extend(fim_sep);
        for t in EOG_TEXTS {
            if let Some(id) = texts.id(t) {
                eog.push(id);
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        // gpt-oss: these are always rendered.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = texts.id(t) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend(eos);
        eog.extend(eot);
        eog.extend(eom);
        eog.sort_unstable();
        eog.dedup();
        // o200k_harmony / solar-open: "<|end|>" is not an end of generation when "<|return|>" and
        // "<|call|>" (or "<|calls|>" and "<|flush|>") exist.
        {
            let has = |t: &str| eog.iter().any(|&id| text(id) == t);
            let has_call = has("<|call|>") || has("<|calls|>");
            if (has("<|return|>") && has_call && has("<|end|>")) || (has_call && has("<|flush|>") && has("<|end|>")) {
                let end = *eog.iter().find(|&&id| text(id) == "<|end|>").unwrap();
                eog.retain(|&id| id != end);
                attrs[end as usize] = attr::USER_DEFINED;
            }
            // Gemma 4 / PaddleOCR: "</s>" is not an end of generation when "<|tool_response>" is.
            let has = |t: &str| eog.iter().any(|&id| text(id) == t);
            if has("<|tool_response>") && has("</s>") {
                let s = *eog.iter().find(|&&id| text(id) == "</s>").unwrap();
                eog.retain(|&id| id != s);
                attrs[s as usize] = attr::NORMAL;
            }
        }

        // Special tokens for partitioning, longest text first.
        let mut special_tokens: Vec<u32> = (0..n as u32)
            .filter(|&i| attrs[i as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
            .collect();
        special_tokens.sort_by_key(|&id| std::cmp::Reverse(text(id).len()));

        // Per-model attributes llama.cpp sets by name: Phi-3 strips spaces right of special tokens.
        let name = g.get_str("general.name").unwrap_or("").to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &special_tokens {
                attrs[id as usize] |= attr::RSTRIP;
            }
            if let Some(id) = texts.id("</s>") {
                attrs[id as usize] |= attr::RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(id) = texts.id(t) {
                    attrs[id as usize] &= !attr::RSTRIP;
                }
            }
        }

        // Byte fallback: "<0xNN>", else the one-byte string (llama.cpp `byte_to_token`).
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            *slot = texts.id(&hex).or_else(|| {
                if b < 0x80 {
                    texts.id(&(b as u8 as char).to_string())
                } else {
                    None
                }
            });
        }

        Ok(Tokenizer {
            vocab_type,
            texts,
            scores,
            attrs,
            bpe_ranks,
            special_tokens,
            byte_tokens,
            byte_to_char: unicode::byte_to_char_table(),
            bos,
            eos,
            eot,
            unk,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            ignore_merges,
            clean_spaces,
        })
    }
}

pub(super) fn pair_key(first: &str, second: &str) -> Box<[u8]> {
    let mut k = Vec::with_capacity(first.len() + second.len() + 1);
    k.extend_from_slice(first.as_bytes());
    k.push(0xFF);
    k.extend_from_slice(second.as_bytes());
    k.into_boxed_slice()
}
