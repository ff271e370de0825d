//! Text to token ids (llama.cpp `llama_tokenize`): special-token partitioning, then
//! SentencePiece merges by score or byte-level BPE merges by rank.

use super::pretok::{self, PreTokenizer};
use super::{attr, merge, Tokenizer, VocabType};

/// A piece of input text during special-token partitioning.
#[derive(Clone, Copy, Debug)]
enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

impl Tokenizer {
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
            let tok = self.texts.get(id).unwrap_or("");
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
        let pieces = merge::spm(text, |t| self.texts.id(t).map(|id| self.scores[id as usize]));
        for r in pieces {
            let piece = &text[r];
            if let Some(id) = self.texts.id(piece) {
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
                if let Some(id) = self.texts.id(&word) {
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
                if let Some(id) = self.texts.id(piece) {
                    out.push(id);
                    continue;
                }
                // llama.cpp looks up each byte of the symbol as a one-byte string; only ASCII can match.
                for &b in piece.as_bytes() {
                    if b < 0x80 {
                        if let Some(id) = self.texts.id(&(b as char).to_string()) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }
}

/// C `isspace` (the partition's LSTRIP/RSTRIP test).
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
}
