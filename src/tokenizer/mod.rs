//! Tokenizers built from GGUF metadata, matching llama.cpp token for token.
//!
//! Two vocabulary types are supported, selected by `tokenizer.ggml.model`:
//! - `llama`: SentencePiece-style (Gemma, LLaMA 1/2, Mistral): spaces become `▁`, pieces are merged by
//!   token score, characters missing from the vocabulary fall back to `<0xNN>` byte tokens, an optional
//!   space is prefixed to every text fragment (`tokenizer.ggml.add_space_prefix`, default on).
//! - `gpt2`: byte-level BPE (LLaMA 3, Qwen 2, SmolLM, GPT-2): a pre-tokenizer chosen by
//!   `tokenizer.ggml.pre` splits the text into words, bytes are mapped to printable code points, and
//!   pairs are merged by rank from `tokenizer.ggml.merges`.
//!
//! Behaviour follows llama.cpp (`src/llama-vocab.cpp`, `src/unicode.cpp`, as bundled by
//! node-llama-cpp 3.22.1, llama.cpp commit de3ff81): token attributes from `tokenizer.ggml.token_type`,
//! the same default special ids and add-BOS/EOS flags per vocabulary type, the same end-of-generation
//! set (found partly by token text), special-token partitioning of the input (longest token first;
//! user-defined tokens always, control tokens only when `parse_special`), and `token_to_piece` /
//! `llama_detokenize` for the way back. The golden tests in `tests/tokenizer.rs` compare with
//! llama.cpp itself.
//!
//! The library never touches the file system: build a [`Tokenizer`] from a parsed [`Gguf`].

mod hash;
mod merge;
mod pretok;
mod unicode;

use std::ops::Deref;

use crate::error::{Error, Result};
use crate::gguf::Gguf;
use hash::FxHashMap;
pub use pretok::PreTokenizer;

/// Token attribute bits, as llama.cpp's `llama_token_attr`.
pub mod attr {
    pub const UNDEFINED: u16 = 0;
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const NORMALIZED: u16 = 1 << 6;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;
}

/// The vocabulary type (llama.cpp `llama_vocab_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabType {
    /// SentencePiece-style (`tokenizer.ggml.model = "llama"`).
    Spm,
    /// GPT-2 byte-level BPE (`tokenizer.ggml.model = "gpt2"`).
    Bpe(PreTokenizer),
}

/// A tokenizer built from GGUF metadata.
pub struct Tokenizer {
    vocab_type: VocabType,
    /// `[n_vocab]` token texts as stored (`▁` for spaces in SPM, byte-mapped code points in BPE).
    texts: Vec<String>,
    /// `[n_vocab]` SentencePiece scores (0 when absent).
    scores: Vec<f32>,
    /// `[n_vocab]` [`attr`] bits.
    attrs: Vec<u16>,
    token_to_id: FxHashMap<Box<str>, u32>,
    /// BPE merges: key `left ++ 0xFF ++ right` (0xFF never occurs in UTF-8), value the rank.
    bpe_ranks: FxHashMap<Box<[u8]>, u32>,
    /// Control, user-defined and unknown tokens, longest text first (the partition order).
    special_tokens: Vec<u32>,
    /// SPM byte fallback: the `<0xNN>` token of each byte.
    byte_tokens: [Option<u32>; 256],
    /// GPT-2 byte-to-code-point map.
    byte_to_char: [char; 256],
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    unk: Option<u32>,
    /// Sorted, unique.
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    ignore_merges: bool,
    clean_spaces: bool,
}

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

/// A piece of input text during special-token partitioning.
#[derive(Clone, Copy, Debug)]
enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
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
        let texts: Vec<String> = texts_in
            .iter()
            .enumerate()
            .map(|(i, t)| if t.is_empty() { format!("[EMPTY_{i}]") } else { t.clone() })
            .collect();
        let mut token_to_id: FxHashMap<Box<str>, u32> = FxHashMap::with_capacity_and_hasher(n, Default::default());
        for (i, t) in texts.iter().enumerate() {
            // Later duplicates win, as in llama.cpp (`token_to_id[word] = i`).
            token_to_id.insert(t.as_str().into(), i as u32);
        }

        let mut bpe_ranks: FxHashMap<Box<[u8]>, u32> = FxHashMap::default();
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
        let find = |list: &[&str]| -> Option<u32> { list.iter().filter_map(|t| token_to_id.get(*t).copied()).min() };
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
        for i in 0..n {
            if attrs[i] & attr::CONTROL != 0 && texts[i].contains("unused") {
                attrs[i] |= attr::UNUSED;
            }
        }

        // End-of-generation set.
        let mut eog: Vec<u32> = Vec::new();
        eog.extend(fim_pad);
        eog.extend(fim_rep);
        eog.extend(fim_sep);
        for t in EOG_TEXTS {
            if let Some(&id) = token_to_id.get(*t) {
                eog.push(id);
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        // gpt-oss: these are always rendered.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = token_to_id.get(t) {
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
            let has = |t: &str| eog.iter().any(|&id| texts[id as usize] == t);
            let has_call = has("<|call|>") || has("<|calls|>");
            if (has("<|return|>") && has_call && has("<|end|>")) || (has_call && has("<|flush|>") && has("<|end|>")) {
                let end = *eog.iter().find(|&&id| texts[id as usize] == "<|end|>").unwrap();
                eog.retain(|&id| id != end);
                attrs[end as usize] = attr::USER_DEFINED;
            }
            // Gemma 4 / PaddleOCR: "</s>" is not an end of generation when "<|tool_response>" is.
            let has = |t: &str| eog.iter().any(|&id| texts[id as usize] == t);
            if has("<|tool_response>") && has("</s>") {
                let s = *eog.iter().find(|&&id| texts[id as usize] == "</s>").unwrap();
                eog.retain(|&id| id != s);
                attrs[s as usize] = attr::NORMAL;
            }
        }

        // Special tokens for partitioning, longest text first.
        let mut special_tokens: Vec<u32> = (0..n as u32)
            .filter(|&i| attrs[i as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
            .collect();
        special_tokens.sort_by(|&a, &b| texts[b as usize].len().cmp(&texts[a as usize].len()));

        // Per-model attributes llama.cpp sets by name: Phi-3 strips spaces right of special tokens.
        let name = g.get_str("general.name").unwrap_or("").to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &special_tokens {
                attrs[id as usize] |= attr::RSTRIP;
            }
            if let Some(&id) = token_to_id.get("</s>") {
                attrs[id as usize] |= attr::RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(&id) = token_to_id.get(t) {
                    attrs[id as usize] &= !attr::RSTRIP;
                }
            }
        }

        // Byte fallback: "<0xNN>", else the one-byte string (llama.cpp `byte_to_token`).
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            *slot = token_to_id.get(hex.as_str()).copied().or_else(|| {
                if b < 0x80 {
                    token_to_id.get(&*(b as u8 as char).to_string()).copied()
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
            token_to_id,
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

    pub fn vocab_type(&self) -> VocabType {
        self.vocab_type
    }
    pub fn n_vocab(&self) -> usize {
        self.texts.len()
    }
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }
    /// The end-of-turn token, if the vocabulary has one.
    pub fn eot_id(&self) -> Option<u32> {
        self.eot
    }
    /// All end-of-generation ids (eos, eot, eom, and tokens such as `<end_of_turn>`, `<|im_end|>`),
    /// sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }
    /// Whether `encode(.., add_special = true, ..)` prepends BOS / appends EOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
    /// The token's [`attr`] bits (0 for ids outside the vocabulary).
    pub fn token_attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(attr::UNDEFINED)
    }
    pub fn is_control(&self, id: u32) -> bool {
        self.token_attr(id) & attr::CONTROL != 0
    }
    /// The token's text as stored in the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(|s| s.as_str())
    }
    /// The id of the token whose stored text is exactly `text`.
    pub fn token_to_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// Text to token ids (llama.cpp `llama_tokenize`). `add_special` adds BOS/EOS as the model asks;
    /// `parse_special` lets control tokens written in the text (`<start_of_turn>`) be recognized.
    /// User-defined tokens are always recognized.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        self.encode_fragments(self.partition(text, parse_special), text.len(), add_special)
    }

    /// [`Tokenizer::encode`] with `parse_special` for all of `text` except the byte ranges in
    /// `plain` (sorted, disjoint, on char boundaries): text there is never a control token, however
    /// it is spelled. A chat prompt's message contents are such ranges: only the template's own
    /// markup becomes turn tokens. Text either side of a range is tokenized as one piece with it,
    /// so a prompt without control-token text in its contents gives the same ids as `encode`.
    pub fn encode_with_plain(&self, text: &str, plain: &[std::ops::Range<usize>], add_special: bool) -> Vec<u32> {
        /// Append `t` (a slice of `text`), merged with a text fragment that ends where it starts.
        fn push<'a>(text: &'a str, frags: &mut Vec<Fragment<'a>>, f: Fragment<'a>) {
            if let (Some(Fragment::Text(prev)), Fragment::Text(t)) = (frags.last_mut(), &f) {
                let start = prev.as_ptr() as usize - text.as_ptr() as usize;
                if start + prev.len() == t.as_ptr() as usize - text.as_ptr() as usize {
                    *prev = &text[start..start + prev.len() + t.len()];
                    return;
                }
            }
            frags.push(f);
        }
        let mut frags = Vec::new();
        let mut at = 0;
        for r in plain.iter().cloned().chain(std::iter::once(text.len()..text.len())) {
            let r = r.start.clamp(at, text.len())..r.end.clamp(at, text.len());
            for f in self.partition(&text[at..r.start], true).into_iter().chain(self.partition(&text[r.clone()], false)) {
                push(text, &mut frags, f);
            }
            at = r.end;
        }
        self.encode_fragments(frags, text.len(), add_special)
    }

    fn encode_fragments(&self, fragments: Vec<Fragment<'_>>, text_len: usize, add_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text_len / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        match self.vocab_type {
            VocabType::Spm => {
                let mut prev_special = true; // a space is prefixed to the first fragment too
                let mut buf = String::new();
                for f in fragments {
                    match f {
                        Fragment::Text(t) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push('▁');
                            }
                            for c in t.chars() {
                                buf.push(if c == ' ' { '▁' } else { c });
                            }
                            self.spm_encode(&buf, &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            VocabType::Bpe(pre) => {
                for f in fragments {
                    match f {
                        Fragment::Text(t) => self.bpe_encode(pre, t, &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// Split the text at special tokens (llama.cpp `tokenizer_st_partition`): for each special token,
    /// longest first, every occurrence inside a remaining text fragment becomes a token fragment.
    /// Whether `text`, parsed as a raw prompt is, would contain a control token.
    pub fn spells_control_token(&self, text: &str) -> bool {
        self.partition(text, true).iter().any(|f| matches!(f, Fragment::Token(_)))
    }

    fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text(text));
        // Adjacent byte pairs present in the text: a token with any other pair cannot occur (a cheap
        // pre-filter for vocabularies with thousands of control tokens, such as Gemma's <unusedN>).
        let mut pairs = vec![0u64; 1024];
        let mut bytes_present = [false; 256];
        for w in text.as_bytes().windows(2) {
            let k = (w[0] as usize) << 8 | w[1] as usize;
            pairs[k >> 6] |= 1 << (k & 63);
        }
        for &b in text.as_bytes() {
            bytes_present[b as usize] = true;
        }
        let may_occur = |tok: &str| {
            let b = tok.as_bytes();
            b.iter().all(|&x| bytes_present[x as usize])
                && b.windows(2).all(|w| {
                    let k = (w[0] as usize) << 8 | w[1] as usize;
                    pairs[k >> 6] & (1 << (k & 63)) != 0
                })
        };
        for &id in &self.special_tokens {
            let a = self.attrs[id as usize];
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let tok = self.texts[id as usize].as_str();
            if !may_occur(tok) {
                continue;
            }
            if !frags.iter().any(|f| matches!(f, Fragment::Text(t) if t.contains(tok))) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(mut rest) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(pos) = rest.find(tok) {
                    let mut left = &rest[..pos];
                    if a & attr::LSTRIP != 0 {
                        left = left.trim_end_matches(is_c_space);
                    }
                    if !left.is_empty() {
                        next.push(Fragment::Text(left));
                    }
                    next.push(Fragment::Token(id));
                    rest = &rest[pos + tok.len()..];
                    if a & attr::RSTRIP != 0 {
                        rest = rest.trim_start_matches(is_c_space);
                    }
                }
                if !rest.is_empty() {
                    next.push(Fragment::Text(rest));
                }
            }
            frags = next;
        }
        frags
    }

    fn spm_encode(&self, text: &str, out: &mut Vec<u32>) {
        let pieces = merge::spm(text, |t| self.token_to_id.get(t).map(|&id| self.scores[id as usize]));
        for r in pieces {
            let piece = &text[r];
            if let Some(&id) = self.token_to_id.get(piece) {
                out.push(id);
                continue;
            }
            for &b in piece.as_bytes() {
                // llama.cpp throws when the vocabulary has no token for a byte; we fall back to <unk>.
                if let Some(id) = self.byte_tokens[b as usize].or(self.unk) {
                    out.push(id);
                }
            }
        }
    }

    fn bpe_encode(&self, pre: PreTokenizer, text: &str, out: &mut Vec<u32>) {
        let mut word = String::new();
        let mut key = Vec::new();
        for r in pretok::split(pre, text) {
            word.clear();
            for &b in text[r].as_bytes() {
                word.push(self.byte_to_char[b as usize]);
            }
            if self.ignore_merges {
                if let Some(&id) = self.token_to_id.get(word.as_str()) {
                    out.push(id);
                    continue;
                }
            }
            let pieces = merge::bpe(&word, |l, r| {
                key.clear();
                key.extend_from_slice(l.as_bytes());
                key.push(0xFF);
                key.extend_from_slice(r.as_bytes());
                self.bpe_ranks.get(key.as_slice()).copied()
            });
            for r in pieces {
                let piece = &word[r];
                if let Some(&id) = self.token_to_id.get(piece) {
                    out.push(id);
                    continue;
                }
                // llama.cpp looks up each byte of the symbol as a one-byte string; only ASCII can match.
                for &b in piece.as_bytes() {
                    if b < 0x80 {
                        if let Some(&id) = self.token_to_id.get(&*(b as char).to_string()) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }

    /// The bytes a token stands for (llama.cpp `token_to_piece` with no space stripping). Control and
    /// unknown tokens give their text only when `special`; user-defined tokens always do.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        let Some(text) = self.texts.get(id as usize) else { return Vec::new() };
        let a = self.attrs[id as usize];
        if !special && a & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return Vec::new();
        }
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        if a & attr::NORMAL != 0 {
            return match self.vocab_type {
                VocabType::Spm => text.replace('▁', " ").into_bytes(),
                VocabType::Bpe(_) => bpe_decode_text(text),
            };
        }
        if a & attr::BYTE != 0 {
            if let Some(b) = text.get(3..5).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                return vec![b];
            }
        }
        Vec::new()
    }

    /// The bytes a token stands for in generated text: `token_to_piece(id, false)`.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.token_to_piece(id, false)
    }

    /// Ids to text, as llama.cpp `llama_detokenize(.., remove_special = false, unparse_special = false)`.
    /// Invalid UTF-8 (a cut byte-fallback sequence) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.detokenize(ids, false, false)
    }

    /// llama.cpp `llama_detokenize`: concatenated pieces; with `remove_special`, a leading BOS and a
    /// trailing EOS are dropped when the model adds them; the first piece loses one leading space when
    /// the vocabulary prefixes one; control tokens are rendered only with `unparse_special`; BPE
    /// vocabularies flagged `clean_spaces` get llama.cpp's clean-up (" ," -> ",", " 's" -> "'s", ...).
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> String {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if remove_special && self.add_bos && !ids.is_empty() && Some(ids[0]) == self.bos {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special && self.add_eos && !ids.is_empty() && Some(ids[ids.len() - 1]) == self.eos {
            ids = &ids[..ids.len() - 1];
        }
        let mut text = Vec::new();
        for &id in ids {
            let piece = self.token_to_piece(id, unparse_special);
            let piece = if remove_space { piece.strip_prefix(b" ").unwrap_or(&piece) } else { &piece[..] };
            text.extend_from_slice(piece);
            remove_space = false;
        }
        if self.clean_spaces {
            clean_up_spaces(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// An incremental detokenizer for streaming generated tokens.
    pub fn detokenizer(&self) -> Detokenizer<&Tokenizer> {
        Detokenizer::new(self)
    }
}

/// C `isspace` (the partition's LSTRIP/RSTRIP test).
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
}

fn pair_key(first: &str, second: &str) -> Box<[u8]> {
    let mut k = Vec::with_capacity(first.len() + second.len() + 1);
    k.extend_from_slice(first.as_bytes());
    k.push(0xFF);
    k.extend_from_slice(second.as_bytes());
    k.into_boxed_slice()
}

/// Inverse of the GPT-2 byte map.
fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    if cp < 256 {
        return if printable(cp) { Some(cp as u8) } else { None };
    }
    // U+0100 + k is the k-th non-printable byte.
    let k = cp - 256;
    (0..256u32).filter(|&b| !printable(b)).nth(k as usize).map(|b| b as u8)
}

/// llama.cpp's three `clean_spaces` passes over detokenized bytes, in place.
fn clean_up_spaces(text: &mut Vec<u8>) {
    // 1: drop a space before ? ! . ,
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
    // 2: " ' " -> "'"
    let n = text.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = text[i];
        if x == b'\'' && i + 1 < n && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    text.truncate(total);
    // 3: " 's", " 'm", " 're", " 've" -> no space
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = text[i + 1];
            if x1 == b's' || x1 == b'm' {
                total -= 1;
            } else if x1 != b't' && x1 != b'd' && i + 2 < n {
                let x2 = text[i + 2];
                if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                    total -= 1;
                }
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

/// Incremental detokenizer: turns a stream of token ids into text without ever splitting a UTF-8
/// character across two returned strings (byte-fallback tokens of one emoji arrive one by one).
///
/// The concatenation of all `push` results and `finish()` equals `String::from_utf8_lossy` of the
/// concatenated pieces, which is [`Tokenizer::decode`] for vocabularies without llama.cpp's
/// `clean_spaces` step (all SentencePiece ones, Qwen 2, SmolLM). Holds the tokenizer by any pointer
/// (`&Tokenizer`, `Arc<Tokenizer>`, `Rc<Tokenizer>`).
pub struct Detokenizer<T: Deref<Target = Tokenizer>> {
    tok: T,
    pending: Vec<u8>,
    first: bool,
}

impl<T: Deref<Target = Tokenizer>> Detokenizer<T> {
    pub fn new(tok: T) -> Self {
        Detokenizer { tok, pending: Vec::new(), first: true }
    }
    /// Add one token; returns the newly complete text (possibly empty). Control tokens render as
    /// nothing.
    pub fn push(&mut self, id: u32) -> String {
        let piece = self.tok.token_to_piece(id, false);
        let piece = if self.first && self.tok.add_space_prefix { piece.strip_prefix(b" ").unwrap_or(&piece) } else { &piece[..] };
        self.first = false;
        self.pending.extend_from_slice(piece);
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[start..start + valid]).unwrap());
                    match e.error_len() {
                        // A sequence that can never become valid: replace it now.
                        Some(len) => {
                            out.push('\u{FFFD}');
                            start += valid + len;
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            start += valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }
    /// Flush what is left (an incomplete character becomes U+FFFD) and reset for a new sequence.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        self.first = true;
        out
    }
}

/// Undo the GPT-2 byte map (llama.cpp `llama_decode_text`). A char outside the map (only in a
/// malformed vocabulary) becomes `[UNK_BYTE_0x<utf-8 hex><token text>]` as in llama.cpp, except that
/// the token text is written for the first such char only: llama.cpp repeats it for every one,
/// which is quadratic (a 90 KB token asked for 1.5 GB; audit M2).
fn bpe_decode_text(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut text_written = false;
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                if !text_written {
                    out.extend_from_slice(text.as_bytes());
                    text_written = true;
                }
                out.push(b']');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m2_unmapped_chars_decode_in_linear_size() {
        assert_eq!(bpe_decode_text("a中"), "a[UNK_BYTE_0xe4b8ada中]".as_bytes());
        assert_eq!(bpe_decode_text("中中"), "[UNK_BYTE_0xe4b8ad中中][UNK_BYTE_0xe4b8ad]".as_bytes());
        let long = "中".repeat(30_000); // a 90 KB token
        let out = bpe_decode_text(&long);
        assert!(out.len() < 20 * long.len(), "{} bytes from a {}-byte token", out.len(), long.len());
    }

    #[test]
    fn char_to_byte_inverts_the_map() {
        let t = unicode::byte_to_char_table();
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(t[b as usize]), Some(b));
        }
        assert_eq!(char_to_byte('中'), None);
    }

    #[test]
    fn clean_spaces_passes() {
        let mut t = b"Hello , world . It ' s he 's ok 're".to_vec();
        clean_up_spaces(&mut t);
        assert_eq!(String::from_utf8(t).unwrap(), "Hello, world. It's he's ok're");
    }
}
