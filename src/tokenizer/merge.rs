//! The two merge algorithms, with llama.cpp's exact tie-breaking so that ids match it.
//!
//! Both work on a linked list of symbols over one contiguous string (a symbol is a byte range that
//! starts on a UTF-8 character boundary) and a priority queue of candidate adjacent pairs:
//! - SentencePiece (llama.cpp `llm_tokenizer_spm_session`): a pair is a candidate when the joined text
//!   is a vocabulary token; highest token score first, ties to the leftmost pair.
//! - GPT-2 BPE (llama.cpp `llm_tokenizer_bpe_session`): a pair is a candidate when `left right` is in
//!   the merges list; lowest merge rank first, ties to the leftmost pair.
//!
//! A queued pair is stale once either side has changed; that shows as a different joined length.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Symbol {
    /// Byte offset of the symbol in the string being merged.
    pub start: usize,
    /// Byte length; 0 once merged into its left neighbour.
    pub len: usize,
    pub prev: Option<usize>,
    pub next: Option<usize>,
}

/// One symbol per UTF-8 character of `text`.
pub(crate) fn char_symbols(text: &str) -> Vec<Symbol> {
    let n = text.chars().count();
    let mut symbols = Vec::with_capacity(n);
    for (i, (start, c)) in text.char_indices().enumerate() {
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: if i + 1 < n { Some(i + 1) } else { None },
        });
    }
    symbols
}

/// A candidate pair. `key` orders the queue: larger is merged first.
#[derive(Clone, Copy, Debug)]
struct Pair<K> {
    key: K,
    left: usize,
    right: usize,
    size: usize,
}

impl<K: Ord> PartialEq for Pair<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<K: Ord> Eq for Pair<K> {}
impl<K: Ord> PartialOrd for Pair<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Ord> Ord for Pair<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Equal keys: the pair further left wins.
        self.key.cmp(&other.key).then(other.left.cmp(&self.left))
    }
}

/// A score ordered with `f32::total_cmp` (scores come from the model file and are finite).
#[derive(Clone, Copy, Debug)]
struct Score(f32);
impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0) == Ordering::Equal
    }
}
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Merge the symbols of `text` in place. `priority(joined_text, left_text, right_text)` says whether the
/// pair may merge and with which key (larger first). Returns nothing: read the live symbols by
/// following `next` from index 0.
fn merge<K: Ord + Copy>(text: &str, symbols: &mut [Symbol], mut priority: impl FnMut(&str, &str, &str) -> Option<K>) {
    let mut queue: BinaryHeap<Pair<K>> = BinaryHeap::with_capacity(symbols.len());
    let mut try_add = |queue: &mut BinaryHeap<Pair<K>>, symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
        let (Some(l), Some(r)) = (left, right) else { return };
        let (ls, rs) = (&symbols[l], &symbols[r]);
        let joined = &text[ls.start..ls.start + ls.len + rs.len];
        let left_text = &text[ls.start..ls.start + ls.len];
        let right_text = &text[rs.start..rs.start + rs.len];
        if let Some(key) = priority(joined, left_text, right_text) {
            queue.push(Pair { key, left: l, right: r, size: joined.len() });
        }
    };
    for i in 1..symbols.len() {
        try_add(&mut queue, symbols, Some(i - 1), Some(i));
    }
    while let Some(p) = queue.pop() {
        let (l, r) = (symbols[p.left], symbols[p.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != p.size {
            continue;
        }
        symbols[p.left].len += r.len;
        symbols[p.right].len = 0;
        symbols[p.left].next = r.next;
        if let Some(n) = r.next {
            symbols[n].prev = Some(p.left);
        }
        let left = symbols[p.left];
        try_add(&mut queue, symbols, left.prev, Some(p.left));
        try_add(&mut queue, symbols, Some(p.left), left.next);
    }
}

/// The live symbols after merging, in order, as byte ranges of `text`.
fn live(symbols: &[Symbol]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut i = if symbols.is_empty() { None } else { Some(0) };
    std::iter::from_fn(move || {
        let s = symbols[i?];
        i = s.next;
        Some(s.start..s.start + s.len)
    })
}

/// SentencePiece merge of one (already whitespace-escaped) text. `score(text)` is the score of the
/// vocabulary token spelled `text`, if any. Returns the final pieces as byte ranges of `text`.
pub(crate) fn spm(text: &str, score: impl Fn(&str) -> Option<f32>) -> Vec<std::ops::Range<usize>> {
    let mut symbols = char_symbols(text);
    merge(text, &mut symbols, |joined, _, _| score(joined).map(Score));
    live(&symbols).collect()
}

/// GPT-2 BPE merge of one word. `rank(left, right)` is the merge rank of the pair, if listed.
pub(crate) fn bpe(word: &str, mut rank: impl FnMut(&str, &str) -> Option<u32>) -> Vec<std::ops::Range<usize>> {
    let mut symbols = char_symbols(word);
    // Lower rank first: order by the reversed rank.
    merge(word, &mut symbols, |_, l, r| rank(l, r).map(std::cmp::Reverse));
    live(&symbols).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spm_prefers_high_scores_then_left() {
        let score = |t: &str| match t {
            "ab" => Some(-1.0),
            "bc" => Some(-1.0),
            "abc" => Some(-0.5),
            _ => None,
        };
        let text = "abc";
        let pieces: Vec<&str> = spm(text, score).into_iter().map(|r| &text[r]).collect();
        assert_eq!(pieces, ["abc"]);
        let text = "abcb";
        let pieces: Vec<&str> = spm(text, |t| if t == "ab" || t == "cb" { Some(0.0) } else { None })
            .into_iter()
            .map(|r| &text[r])
            .collect();
        assert_eq!(pieces, ["ab", "cb"]);
    }

    #[test]
    fn bpe_by_rank() {
        let rank = |l: &str, r: &str| match (l, r) {
            ("b", "c") => Some(0),
            ("a", "b") => Some(1),
            ("a", "bc") => Some(2),
            _ => None,
        };
        let w = "abc";
        let pieces: Vec<&str> = bpe(w, rank).into_iter().map(|r| &w[r]).collect();
        assert_eq!(pieces, ["abc"]);
    }
}
