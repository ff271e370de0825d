//! Streamed text held back while it may still become a marker: the one rule behind stop strings
//! (`engine::StopMatcher`) and tool-call markup (`chat::tools::ToolCallStream`). Text is released
//! as soon as no marker can begin in it.

/// Bytes at the end of `text` to hold back: the longest suffix that is a proper prefix of one of
/// `markers` (always on a char boundary).
pub fn held_back<S: AsRef<str>>(text: &str, markers: &[S]) -> usize {
    let mut hold = 0;
    for m in markers {
        let m = m.as_ref();
        for (i, _) in m.char_indices().skip(1) {
            if i > hold && text.ends_with(&m[..i]) {
                hold = i;
            }
        }
    }
    hold
}

#[cfg(test)]
mod tests {
    use super::held_back;

    #[test]
    fn holds_the_longest_suffix_that_may_begin_a_marker() {
        assert_eq!(held_back("abc <tool", &["<tool_call>"]), 5);
        assert_eq!(held_back("abc <", &["<tool_call>", "STOP"]), 1);
        assert_eq!(held_back("abc ST", &["<tool_call>", "STOP"]), 2);
        assert_eq!(held_back("abc", &["<tool_call>"]), 0);
        // A whole marker is the caller's to find, not held.
        assert_eq!(held_back("<tool_call>", &["<tool_call>"]), 0);
        assert_eq!(held_back("é", &["éa"]), "é".len());
        assert_eq!(held_back("x", &[""]), 0);
    }
}
