//! Logits selection shared by the backends and the sampler: what the sampler asks a backend to
//! read back ([`Readback`]), what comes back ([`ReadOut`]), and the host-side selections
//! ([`argmax`], [`top_k`]) a backend without device-side selection uses, and the one check of
//! token ids ([`check_token_ids`]). It depends on nothing in the crate but `error`, so
//! [`crate::backend`] and [`crate::sampling`] both sit above it.

/// How much of a logits row the sampler needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readback {
    /// Every logit (penalties, or sampling without top-k).
    Full,
    /// Only the best token (greedy decoding without penalties).
    Argmax,
    /// The `k` best tokens with their logits (top-k sampling without penalties).
    TopK(usize),
}

/// Logits as read back.
#[derive(Clone, Debug, PartialEq)]
pub enum ReadOut {
    Full(Vec<f32>),
    /// `(token id, logit)`, by logit descending, ties to the lower id.
    Candidates(Vec<(u32, f32)>),
}

impl Readback {
    /// Host-side selection: what a backend without device-side selection returns.
    pub fn select(self, logits: Vec<f32>) -> ReadOut {
        match self {
            Readback::Full => ReadOut::Full(logits),
            _ => self.select_from(&logits),
        }
    }

    /// [`Readback::select`] from borrowed logits (copied only for [`Readback::Full`]).
    pub fn select_from(self, logits: &[f32]) -> ReadOut {
        match self {
            Readback::Full => ReadOut::Full(logits.to_vec()),
            Readback::Argmax => ReadOut::Candidates(top_k(logits, 1)),
            Readback::TopK(k) => ReadOut::Candidates(top_k(logits, k)),
        }
    }

    /// [`Readback::select`] of each row of `[rows, n_vocab]` logits.
    pub fn select_rows(self, logits: &[f32], n_vocab: usize) -> Vec<ReadOut> {
        logits.chunks_exact(n_vocab.max(1)).map(|r| self.select_from(r)).collect()
    }
}

/// Index of the largest logit; ties go to the lower id (as llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Up to this `k`, [`top_k`] selects in one pass over the logits.
pub const SMALL_K: usize = 64;

/// The selection order: by logit descending (in `f32::total_cmp`'s order), ties to the lower id.
fn by_logit(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The `k` largest logits as `(id, logit)`, by logit descending, ties to the lower id.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    if k <= 1 {
        if let Some(best) = largest(logits) {
            return vec![best];
        }
    }
    if k <= SMALL_K {
        // One pass keeping the best k in order: a decoded token's greedy or top-k pick reads the
        // logits once, without a copy of the whole row (a 262k vocabulary: 2 MB of pairs).
        let k = k.max(1);
        let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
        for (i, &l) in logits.iter().enumerate() {
            let c = (i as u32, l);
            if best.len() == k && by_logit(&c, &best[k - 1]).is_ge() {
                continue;
            }
            let at = best.partition_point(|b| by_logit(b, &c).is_lt());
            best.insert(at, c);
            best.truncate(k);
        }
        return best;
    }
    let mut c: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
    let k = k.clamp(1, c.len().max(1));
    // A partial selection keeps this cheap on a 256k vocabulary.
    if k < c.len() {
        c.select_nth_unstable_by(k - 1, by_logit);
        c.truncate(k);
    }
    c.sort_unstable_by(by_logit);
    c
}

/// The first [`top_k`] of a row without NaNs (`None` with one, or empty): a greedy token's pick.
/// The largest value by `>` in 8 lanes (the compiler's vectors; a scalar pass of the selection
/// order took 0.5 ms of a 262k-row decoded token in Chromium), then the first id holding the
/// largest in `total_cmp`'s order among the values equal to it (+0.0 above -0.0).
fn largest(logits: &[f32]) -> Option<(u32, f32)> {
    const LANES: usize = 8;
    let mut top = [f32::NEG_INFINITY; LANES];
    let mut nan = [0u32; LANES];
    let mut chunks = logits.chunks_exact(LANES);
    for c in &mut chunks {
        let c: &[f32; LANES] = c.try_into().expect("a chunk of LANES");
        for j in 0..LANES {
            nan[j] |= c[j].is_nan() as u32;
            top[j] = if c[j] > top[j] { c[j] } else { top[j] };
        }
    }
    for &v in chunks.remainder() {
        nan[0] |= v.is_nan() as u32;
        top[0] = if v > top[0] { v } else { top[0] };
    }
    if nan.iter().any(|&n| n != 0) || logits.is_empty() {
        return None;
    }
    let max = top.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    // Equal by `==` but not in the selection order: only +0.0 and -0.0.
    let bits = if max == 0.0 && logits.iter().any(|v| v.to_bits() == 0) { 0 } else { max.to_bits() };
    let i = logits.iter().position(|v| v.to_bits() == bits)?;
    Some((i as u32, logits[i]))
}

/// [`top_k`] of a row from the [`top_k`]s of its pieces (each `(id, logit)` with its id in the
/// whole row): the same selection, so the pieces can be taken on separate threads.
pub fn top_k_of_pieces(pieces: impl IntoIterator<Item = Vec<(u32, f32)>>, k: usize) -> Vec<(u32, f32)> {
    let mut c: Vec<(u32, f32)> = pieces.into_iter().flatten().collect();
    c.sort_unstable_by(by_logit);
    c.truncate(k.max(1));
    c
}

/// The one check of token ids (a prompt, ids to detokenize, the rows a backend's `get_rows`
/// reads): each below `n_vocab`, else `INVALID_ARGUMENT` naming the first bad one.
pub fn check_token_ids(ids: &[u32], n_vocab: usize) -> crate::error::Result<()> {
    match ids.iter().find(|&&t| t as usize >= n_vocab) {
        Some(bad) => Err(crate::error::Error::invalid_argument(format!("token id {bad} is out of range (vocabulary of {n_vocab})"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A xorshift64 sequence from `state` (the tests' fixed random rows).
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// The one-pass selection against a full sort, on rows with ties, infinities and NaNs of
    /// both signs, for every k up to past [`SMALL_K`].
    #[test]
    fn top_k_equals_a_full_sort() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for round in 0..40 {
            let n = [1, 2, 7, 100, 3000][round % 5];
            let logits: Vec<f32> = (0..n)
                .map(|_| match next() % 20 {
                    0 => f32::NAN,
                    1 => -f32::NAN,
                    2 => f32::INFINITY,
                    3 => f32::NEG_INFINITY,
                    4..=9 => (next() % 8) as f32, // many ties
                    _ => (next() % 100_000) as f32 / 997.0 - 50.0,
                })
                .collect();
            let mut all: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            for k in [1, 2, 5, 40, SMALL_K, SMALL_K + 1, 500] {
                let want: Vec<(u32, u32)> = all.iter().take(k.max(1)).map(|&(i, l)| (i, l.to_bits())).collect();
                let got: Vec<(u32, u32)> = top_k(&logits, k).into_iter().map(|(i, l)| (i, l.to_bits())).collect();
                assert_eq!(got, want, "n {n}, k {k}");
            }
            assert_eq!(top_k(&logits, 0).len(), 1, "k 0 selects one, as before");
        }
        assert!(top_k(&[], 3).is_empty());
    }

    /// The greedy pick of rows without NaNs (the vector pass of `largest`): against a full sort
    /// on rows of every length around its 8 lanes, with ties, infinities, and +0.0 / -0.0 as the
    /// largest value in either order.
    #[test]
    fn greedy_pick_equals_a_full_sort() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for round in 0..400 {
            let n = 1 + round % 37 + if round % 5 == 0 { 262_144 } else { 0 };
            let logits: Vec<f32> = (0..n)
                .map(|_| match next() % 16 {
                    0 => f32::NEG_INFINITY,
                    1 if round % 7 == 0 => f32::INFINITY,
                    2 => 0.0,
                    3 => -0.0,
                    4..=7 => -((next() % 4) as f32), // ties, and zeros as the largest
                    _ => -((next() % 100_000) as f32 / 997.0) - 1.0,
                })
                .collect();
            let mut all: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let got: Vec<(u32, u32)> = top_k(&logits, 1).into_iter().map(|(i, l)| (i, l.to_bits())).collect();
            assert_eq!(got, vec![(all[0].0, all[0].1.to_bits())], "n {n}, round {round}");
        }
    }
}
