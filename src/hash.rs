//! The hash of every table keyed by a GGUF's contents (the tokenizer's vocabulary and merges, the
//! header's metadata keys and tensor names): foldhash, seeded at random per table.
//!
//! A GGUF is hostile until checked. With a fixed, public hash its author can pick token texts that
//! all land in one bucket: 262k such texts took 156 s to index natively with the Fx hash the
//! tokenizer used before (every insert and every later lookup walked the whole cluster), a hang
//! in a browser. std's SipHash is keyed at random natively but with fixed keys in wasm32, which
//! has no random source of its own. A secret seed leaves the author nothing to aim at, and
//! foldhash is as fast as Fx on short strings. The seed comes from the OS natively and from
//! `Math.random` in wasm32.

/// A seeded hash state; [`seeded`] makes one.
pub(crate) type Seeded = foldhash::quality::FixedState;

pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, Seeded>;

/// A hash state with a fresh random seed.
pub(crate) fn seeded() -> Seeded {
    Seeded::with_seed(random_u64())
}

#[cfg(target_arch = "wasm32")]
fn random_u64() -> u64 {
    let half = || (js_sys::Math::random() * 4_294_967_296.0) as u64;
    half() << 32 | half()
}

#[cfg(not(target_arch = "wasm32"))]
fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn seeds_differ() {
        let (a, b) = (seeded(), seeded());
        // Two tokenizers hash the same text differently (a 2^-64 chance that they do not).
        assert_ne!(a.hash_one("\u{2581}the"), b.hash_one("\u{2581}the"));
        assert_eq!(a.hash_one("x"), a.hash_one("x"));
    }
}
