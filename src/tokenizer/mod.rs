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
//! The library never touches the file system: build a [`Tokenizer`] from a parsed
//! [`crate::gguf::Gguf`] ([`Tokenizer::from_gguf`], `load.rs`). `encode.rs` is text to ids
//! (special-token partitioning, SentencePiece and BPE merges), `decode.rs` the way back
//! (`token_to_piece`, `detokenize`, the incremental [`Detokenizer`]).

mod decode;
mod encode;
mod load;
mod merge;
mod pretok;
mod texts;
mod unicode;

pub use decode::Detokenizer;
use crate::hash::HashMap;
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
    /// `[n_vocab]` token texts as stored (`▁` for spaces in SPM, byte-mapped code points in BPE),
    /// and the id of each text.
    texts: texts::Texts,
    /// `[n_vocab]` SentencePiece scores (0 when absent).
    scores: Vec<f32>,
    /// `[n_vocab]` [`attr`] bits.
    attrs: Vec<u16>,
    /// BPE merges: key `left ++ 0xFF ++ right` (0xFF never occurs in UTF-8), value the rank.
    bpe_ranks: HashMap<Box<[u8]>, u32>,
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

impl Tokenizer {
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
        self.texts.get(id)
    }
    /// The id of the token whose stored text is exactly `text`.
    pub fn token_to_id(&self, text: &str) -> Option<u32> {
        self.texts.id(text)
    }
}
