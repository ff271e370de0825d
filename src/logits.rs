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
            Readback::Argmax => ReadOut::Candidates(top_k(&logits, 1)),
            Readback::TopK(k) => ReadOut::Candidates(top_k(&logits, k)),
        }
    }

    /// [`Readback::select`] of each row of `[rows, n_vocab]` logits.
    pub fn select_rows(self, logits: &[f32], n_vocab: usize) -> Vec<ReadOut> {
        logits.chunks_exact(n_vocab.max(1)).map(|r| self.select(r.to_vec())).collect()
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

/// The `k` largest logits as `(id, logit)`, by logit descending, ties to the lower id.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
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

/// The one check of token ids (a prompt, ids to detokenize, the rows a backend's `get_rows`
/// reads): each below `n_vocab`, else `INVALID_ARGUMENT` naming the first bad one.
pub fn check_token_ids(ids: &[u32], n_vocab: usize) -> crate::error::Result<()> {
    match ids.iter().find(|&&t| t as usize >= n_vocab) {
        Some(bad) => Err(crate::error::Error::invalid_argument(format!("token id {bad} is out of range (vocabulary of {n_vocab})"))),
        None => Ok(()),
    }
}
