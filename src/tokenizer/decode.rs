//! Token ids back to text (llama.cpp `token_to_piece`, `llama_detokenize`) and the incremental
//! [`Detokenizer`] streaming uses.

use std::ops::Deref;

use super::{attr, Tokenizer, VocabType};

impl Tokenizer {
    /// The bytes a token stands for (llama.cpp `token_to_piece` with no space stripping). Control and
    /// unknown tokens give their text only when `special`; user-defined tokens always do.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        let Some(text) = self.texts.get(id) else { return Vec::new() };
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
    use super::super::unicode;
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
