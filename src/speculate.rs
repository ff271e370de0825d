//! Prompt-lookup speculation (no draft model): the tokens that followed the latest earlier
//! occurrence of the context's last n-gram are guessed to follow again (text being rewritten,
//! quoted, extended, or structured output that repeats names). The engine verifies a draft in one
//! batched pass and keeps the prefix the model itself would have produced
//! ([`crate::engine::Engine::step`]).

/// How drafts are made: the longest n-gram tried first, down to the shortest; at most
/// `max_draft` tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Speculation {
    pub ngram_min: usize,
    pub ngram_max: usize,
    pub max_draft: usize,
}

impl Default for Speculation {
    fn default() -> Self {
        Speculation { ngram_min: 2, ngram_max: 4, max_draft: 8 }
    }
}

/// Up to `limit` tokens guessed to follow `history`: for n from `ngram_max` down to `ngram_min`,
/// the tokens after the latest earlier occurrence of `history`'s last n tokens.
pub fn draft(history: &[u32], s: Speculation, limit: usize) -> Vec<u32> {
    let limit = limit.min(s.max_draft);
    if limit == 0 {
        return Vec::new();
    }
    for n in (s.ngram_min.max(1)..=s.ngram_max).rev() {
        if history.len() <= n {
            continue;
        }
        let key = &history[history.len() - n..];
        // Latest occurrence that ends before the key itself starts.
        let found = (0..history.len() - n).rev().find(|&i| &history[i..i + n] == key);
        if let Some(i) = found {
            let from = i + n;
            let to = (from + limit).min(history.len());
            if from < to {
                return history[from..to].to_vec();
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_longest_match_is_continued() {
        let s = Speculation { ngram_min: 2, ngram_max: 3, max_draft: 4 };
        // "1 2 3 4 5 6 ... 1 2 3" -> "4 5 6 7"
        let h = [1, 2, 3, 4, 5, 6, 7, 9, 1, 2, 3];
        assert_eq!(draft(&h, s, 10), vec![4, 5, 6, 7]);
        assert_eq!(draft(&h, s, 2), vec![4, 5]);
        // The latest occurrence wins: "8 9 x" twice, the later followed by 5.
        let h = [8, 9, 1, 0, 8, 9, 5, 0, 8, 9];
        assert_eq!(draft(&h, s, 1), vec![5]);
        // No earlier occurrence of any n-gram of 2 or more: nothing.
        assert!(draft(&[1, 2, 3, 4], s, 4).is_empty());
        assert!(draft(&[1, 2, 1, 2], Speculation { max_draft: 0, ..s }, 4).is_empty());
    }
}
