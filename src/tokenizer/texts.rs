//! The vocabulary's token texts in one buffer, with a hash index from text to id.
//!
//! A 262k-token vocabulary (Gemma 3) as one `String` per token plus a `HashMap<Box<str>, u32>`
//! took about 37 MB natively (two heap blocks, two headers and a map bucket per token), 12% of the
//! model's repacked weights; here it is the texts in one buffer ([`Strings`]) and a table of `u32`
//! ids (about 7 MB).

use crate::hash::{seeded, Seeded};
use crate::gguf::Strings;
use hashbrown::hash_table::{Entry, HashTable};
use std::hash::BuildHasher;

pub(crate) struct Texts {
    /// Token `i`'s text is string `i`.
    texts: Strings,
    /// Token ids, hashed by their text with `hash`.
    index: HashTable<u32>,
    hash: Seeded,
}

impl Texts {
    /// Index `texts` (at most `u32::MAX` of them: the caller checks); a text that occurs twice
    /// names its later id, as in llama.cpp (`token_to_id[word] = i`).
    pub fn new(texts: Strings) -> Texts {
        let mut index = HashTable::with_capacity(texts.len());
        let state = seeded();
        let hash = |text: &str| state.hash_one(text);
        let text = |id: u32| texts.get(id as usize).unwrap_or_default();
        for (id, s) in texts.iter().enumerate() {
            let id = id as u32;
            match index.entry(hash(s), |&j| text(j) == s, |&j| hash(text(j))) {
                Entry::Occupied(mut e) => *e.get_mut() = id,
                Entry::Vacant(e) => {
                    e.insert(id);
                }
            }
        }
        Texts { texts, index, hash: state }
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Token `id`'s text.
    pub fn get(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize)
    }

    /// The id whose text is exactly `text`.
    pub fn id(&self, text: &str) -> Option<u32> {
        self.index.find(self.hash.hash_one(text), |&j| self.get(j) == Some(text)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_ids_with_duplicates_and_empty_input() {
        let t = Texts::new(["a", "▁b", "a", "", "ccc"].into_iter().collect());
        assert_eq!(t.len(), 5);
        assert_eq!((0..6).map(|i| t.get(i)).collect::<Vec<_>>(), [Some("a"), Some("▁b"), Some("a"), Some(""), Some("ccc"), None]);
        assert_eq!([t.id("a"), t.id("▁b"), t.id(""), t.id("ccc"), t.id("c"), t.id("b")], [Some(2), Some(1), Some(3), Some(4), None, None]);
        let e = Texts::new(Strings::new());
        assert_eq!((e.len(), e.get(0), e.id("")), (0, None, None));
    }
}
