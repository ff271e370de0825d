//! Pre-tokenizers of the GPT-2-style BPE vocabularies: split text into words before merging.
//!
//! Ported from the behaviour of llama.cpp `src/unicode.cpp` (`unicode_regex_split` and its custom
//! splitters); no regex engine. A split works on code points and keeps a list of segment lengths;
//! every regex of a pre-tokenizer refines the segments of the previous one (llama.cpp's "offsets").
//! Two kinds of steps exist:
//! - hand-written state machines for the big GPT-2 / LLaMA 3 / Qwen 2 patterns, which llama.cpp also
//!   uses instead of its regex (so their quirks are reproduced here, not the regex's);
//! - "isolate" steps for the simple patterns llama.cpp runs through `std::regex`
//!   (`\p{N}`, `\p{N}+`, `[\p{P}\$\+<=>\^~\|]+`, `[0-9][0-9][0-9]`): every match becomes a segment of
//!   its own and so does every gap between matches.

use super::unicode::Flags;

/// Which splitter a vocabulary uses, chosen by `tokenizer.ggml.pre`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_DEFAULT` for BPE: punctuation runs, the GPT-2 pattern,
    /// digit runs, then ASCII digit triples.
    Default,
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// Single digits isolated first, then the GPT-2 pattern (StarCoder, SmolLM, ...).
    Smollm,
    /// The LLaMA 3 pattern: case-insensitive contractions, `\p{N}{1,3}`, newline handling.
    Llama3,
    /// The LLaMA 3 pattern with single digits (`\p{N}`) (Qwen 2, StableLM 2, ...).
    Qwen2,
}

/// Split `text` into words (code point ranges), returned as byte ranges of `text`.
pub(crate) fn split(kind: PreTokenizer, text: &str) -> Vec<std::ops::Range<usize>> {
    let cpts: Vec<char> = text.chars().collect();
    let flags: Vec<Flags> = cpts.iter().map(|&c| Flags::of(c)).collect();
    let s = Splitter { cpts: &cpts, flags: &flags };
    let mut offsets = vec![cpts.len()];
    if cpts.is_empty() {
        offsets.clear();
    }
    match kind {
        PreTokenizer::Default => {
            offsets = s.isolate_runs(&offsets, |c, f| f.is_punctuation() || "$+<=>^~|".contains(c));
            offsets = s.gpt2(&offsets);
            offsets = s.isolate_runs(&offsets, |_, f| f.is_number());
            offsets = s.isolate_ascii_digit_triples(&offsets);
        }
        PreTokenizer::Gpt2 => offsets = s.gpt2(&offsets),
        PreTokenizer::Smollm => {
            offsets = s.isolate_singles(&offsets, |_, f| f.is_number());
            offsets = s.gpt2(&offsets);
        }
        PreTokenizer::Llama3 => offsets = s.llama3(&offsets, 3),
        PreTokenizer::Qwen2 => offsets = s.llama3(&offsets, 1),
    }
    // Code point lengths -> byte ranges.
    let mut out = Vec::with_capacity(offsets.len());
    let mut byte = 0;
    let mut cp = 0;
    for len in offsets {
        let start = byte;
        for &c in &cpts[cp..cp + len] {
            byte += c.len_utf8();
        }
        cp += len;
        out.push(start..byte);
    }
    out
}

struct Splitter<'a> {
    cpts: &'a [char],
    flags: &'a [Flags],
}

/// One segment being split: reads outside `[ini, end)` give no code point and empty flags.
struct Segment<'a> {
    s: &'a Splitter<'a>,
    ini: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

impl Segment<'_> {
    #[inline]
    fn cpt(&self, pos: usize) -> Option<char> {
        if self.ini <= pos && pos < self.end {
            Some(self.s.cpts[pos])
        } else {
            None
        }
    }
    #[inline]
    fn flags(&self, pos: usize) -> Flags {
        if self.ini <= pos && pos < self.end {
            self.s.flags[pos]
        } else {
            Flags::NONE
        }
    }
    /// Close the current word at `end`; returns its length.
    #[inline]
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

fn is_cr_lf(c: Option<char>) -> bool {
    matches!(c, Some('\r') | Some('\n'))
}

impl<'a> Splitter<'a> {
    fn for_each_segment(&self, offsets: &[usize], mut f: impl FnMut(&mut Segment<'_>)) -> Vec<usize> {
        let mut out = Vec::with_capacity(offsets.len());
        let mut start = 0;
        for &len in offsets {
            let mut seg = Segment { s: self, ini: start, end: start + len, prev_end: start, out: &mut out };
            f(&mut seg);
            start += len;
        }
        out
    }

    /// llama.cpp `unicode_regex_split_custom_gpt2`.
    fn gpt2(&self, offsets: &[usize]) -> Vec<usize> {
        self.for_each_segment(offsets, |seg| {
            let mut pos = seg.ini;
            while pos < seg.end {
                let cpt = seg.cpt(pos);
                let flags = seg.flags(pos);

                // 's|'t|'re|'ve|'m|'ll|'d
                if cpt == Some('\'') && pos + 1 < seg.end {
                    let next = seg.cpt(pos + 1);
                    if matches!(next, Some('s' | 't' | 'm' | 'd')) {
                        pos += seg.add(pos + 2);
                        continue;
                    }
                    if pos + 2 < seg.end {
                        let next2 = seg.cpt(pos + 2);
                        if matches!((next, next2), (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))) {
                            pos += seg.add(pos + 3);
                            continue;
                        }
                    }
                }

                let space = cpt == Some(' ');
                let mut flags2 = if space { seg.flags(pos + 1) } else { flags };
                // <space>?\p{L}+
                if flags2.is_letter() {
                    pos += space as usize;
                    while flags2.is_letter() {
                        pos += 1;
                        flags2 = seg.flags(pos);
                    }
                    seg.add(pos);
                    continue;
                }
                // <space>?\p{N}+
                if flags2.is_number() {
                    pos += space as usize;
                    while flags2.is_number() {
                        pos += 1;
                        flags2 = seg.flags(pos);
                    }
                    seg.add(pos);
                    continue;
                }
                // <space>?[^\s\p{L}\p{N}]+
                if flags2.is_other() && flags2.any() {
                    pos += space as usize;
                    while flags2.is_other() && flags2.any() {
                        pos += 1;
                        flags2 = seg.flags(pos);
                    }
                    seg.add(pos);
                    continue;
                }

                let mut n_ws = 0;
                while seg.flags(pos + n_ws).is_whitespace() {
                    n_ws += 1;
                }
                // \s+(?!\S)
                if n_ws > 1 && seg.cpt(pos + n_ws).is_some() {
                    pos += n_ws - 1;
                    seg.add(pos);
                    continue;
                }
                // \s+
                if n_ws > 0 {
                    pos += n_ws;
                    seg.add(pos);
                    continue;
                }
                // no match
                pos += 1;
                seg.add(pos);
            }
        })
    }

    /// llama.cpp `unicode_regex_split_custom_llama3` (`max_digits` 3) and `..._qwen2` (1).
    fn llama3(&self, offsets: &[usize], max_digits: usize) -> Vec<usize> {
        self.for_each_segment(offsets, |seg| {
            let mut pos = seg.ini;
            while pos < seg.end {
                let cpt = seg.cpt(pos);
                let flags = seg.flags(pos);

                // (?i:'s|'t|'re|'ve|'m|'ll|'d)
                if cpt == Some('\'') && pos + 1 < seg.end {
                    let next = seg.cpt(pos + 1).map(|c| c.to_ascii_lowercase());
                    if matches!(next, Some('s' | 't' | 'm' | 'd')) {
                        pos += seg.add(pos + 2);
                        continue;
                    }
                    if pos + 2 < seg.end {
                        let next2 = seg.cpt(pos + 2).map(|c| c.to_ascii_lowercase());
                        if matches!((next, next2), (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))) {
                            pos += seg.add(pos + 3);
                            continue;
                        }
                    }
                }

                // [^\r\n\p{L}\p{N}]?\p{L}+
                if !(is_cr_lf(cpt) || flags.is_number()) && (flags.is_letter() || seg.flags(pos + 1).is_letter()) {
                    pos += 1;
                    while seg.flags(pos).is_letter() {
                        pos += 1;
                    }
                    seg.add(pos);
                    continue;
                }

                // \p{N}{1,3} (LLaMA 3) or \p{N} (Qwen 2)
                if flags.is_number() {
                    let mut ini = pos;
                    while seg.flags(pos).is_number() {
                        pos += 1;
                        if pos - ini >= max_digits {
                            seg.add(pos);
                            ini = pos;
                        }
                    }
                    seg.add(pos);
                    continue;
                }

                // <space>?[^\s\p{L}\p{N}]+[\r\n]*
                let space = cpt == Some(' ');
                let mut flags2 = if space { seg.flags(pos + 1) } else { flags };
                if flags2.is_other() && flags.any() {
                    pos += space as usize;
                    while flags2.is_other() && flags2.any() {
                        pos += 1;
                        flags2 = seg.flags(pos);
                    }
                    while is_cr_lf(seg.cpt(pos)) {
                        pos += 1;
                    }
                    seg.add(pos);
                    continue;
                }

                let mut n_ws = 0;
                let mut last_end_r_or_n = 0;
                while seg.flags(pos + n_ws).is_whitespace() {
                    if is_cr_lf(seg.cpt(pos + n_ws)) {
                        last_end_r_or_n = pos + n_ws + 1;
                    }
                    n_ws += 1;
                }
                // \s*[\r\n]+
                if last_end_r_or_n > 0 {
                    pos = last_end_r_or_n;
                    seg.add(pos);
                    continue;
                }
                // \s+(?!\S)
                if n_ws > 1 && seg.cpt(pos + n_ws).is_some() {
                    pos += n_ws - 1;
                    seg.add(pos);
                    continue;
                }
                // \s+
                if n_ws > 0 {
                    pos += n_ws;
                    seg.add(pos);
                    continue;
                }
                // no match
                pos += 1;
                seg.add(pos);
            }
        })
    }

    /// `[class]+` through std::regex: maximal runs of matching code points become segments, and so do
    /// the gaps between them.
    fn isolate_runs(&self, offsets: &[usize], pred: impl Fn(char, Flags) -> bool) -> Vec<usize> {
        self.for_each_segment(offsets, |seg| {
            let mut pos = seg.ini;
            while pos < seg.end {
                if pred(self.cpts[pos], self.flags[pos]) {
                    seg.add(pos);
                    while pos < seg.end && pred(self.cpts[pos], self.flags[pos]) {
                        pos += 1;
                    }
                    seg.add(pos);
                } else {
                    pos += 1;
                }
            }
            seg.add(seg.end);
        })
    }

    /// `[class]` through std::regex: every matching code point is a segment of its own.
    fn isolate_singles(&self, offsets: &[usize], pred: impl Fn(char, Flags) -> bool) -> Vec<usize> {
        self.for_each_segment(offsets, |seg| {
            for pos in seg.ini..seg.end {
                if pred(self.cpts[pos], self.flags[pos]) {
                    seg.add(pos);
                    seg.add(pos + 1);
                }
            }
            seg.add(seg.end);
        })
    }

    /// `[0-9][0-9][0-9]` through std::regex: leftmost non-overlapping ASCII digit triples.
    fn isolate_ascii_digit_triples(&self, offsets: &[usize]) -> Vec<usize> {
        self.for_each_segment(offsets, |seg| {
            let mut pos = seg.ini;
            while pos + 3 <= seg.end {
                if self.cpts[pos..pos + 3].iter().all(|c| c.is_ascii_digit()) {
                    seg.add(pos);
                    seg.add(pos + 3);
                    pos += 3;
                } else {
                    pos += 1;
                }
            }
            seg.add(seg.end);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(kind: PreTokenizer, text: &str) -> Vec<&str> {
        split(kind, text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn gpt2_named_cases() {
        assert_eq!(words(PreTokenizer::Gpt2, "Hello world's  end!!\n"), ["Hello", " world", "'s", " ", " end", "!!", "\n"]);
        assert_eq!(words(PreTokenizer::Gpt2, "a   b"), ["a", "  ", " b"]);
        assert_eq!(words(PreTokenizer::Gpt2, "x   "), ["x", "   "]);
    }

    #[test]
    fn llama3_named_cases() {
        assert_eq!(words(PreTokenizer::Llama3, "I'M 12345 ok\n\n  x"), ["I", "'M", " ", "123", "45", " ok", "\n\n", " ", " x"]);
        assert_eq!(words(PreTokenizer::Qwen2, "ab 123"), ["ab", " ", "1", "2", "3"]);
        assert_eq!(words(PreTokenizer::Llama3, "(hi) ..\n"), ["(hi", ")", " ..\n"]);
    }

    #[test]
    fn default_and_smollm() {
        assert_eq!(words(PreTokenizer::Smollm, "a12 b"), ["a", "1", "2", " b"]);
        assert_eq!(words(PreTokenizer::Default, "x=1234567;"), ["x", "=", "123", "456", "7", ";"]);
    }
}
