//! Prompt-lookup speculation (no draft model): the tokens that followed the latest earlier
//! occurrence of the context's last n-gram are guessed to follow again (text being rewritten,
//! quoted, extended, or structured output that repeats names). The engine verifies a draft in one
//! batched pass and keeps the prefix the model itself would have produced
//! ([`crate::engine::Engine::step`]).

/// How drafts are made: the longest n-gram tried first, down to the shortest; at most
/// `max_draft` tokens. The default (on for every generation unless turned off) drafts for greedy
/// decoding on the CPU only; `requested` (asked for explicitly) also drafts when sampling (a
/// sampled draft is accepted less often) and on the GPU (its batched rows still run the prefill
/// kernels, one invocation per weight row: on a real GPU a pass of several rows may cost several
/// decode passes, and that is unmeasured; the controller's timing then decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Speculation {
    pub ngram_min: usize,
    pub ngram_max: usize,
    pub max_draft: usize,
    pub requested: bool,
    /// Let the [`Controller`] decide whether a draft pays (the default); off, every draft found
    /// is verified whole (exactness tests, measurements of the verification alone).
    pub adaptive: bool,
}

impl Default for Speculation {
    fn default() -> Self {
        Speculation { ngram_min: 2, ngram_max: 4, max_draft: 8, requested: false, adaptive: true }
    }
}

/// Up to `limit` tokens guessed to follow `history`: for n from `ngram_max` down to `ngram_min`,
/// the tokens after the latest earlier occurrence of `history`'s last n tokens. Returns them and
/// the n that matched (0 with no draft).
pub fn draft(history: &[u32], s: Speculation, limit: usize) -> (Vec<u32>, usize) {
    let limit = limit.min(s.max_draft);
    if limit == 0 {
        return (Vec::new(), 0);
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
                return (history[from..to].to_vec(), n);
            }
        }
    }
    (Vec::new(), 0)
}

/// The longest n-gram a draft may match on (`ngram` of the JS option is at most this).
pub const MAX_NGRAM: usize = 16;

/// Decides, pass by pass, whether to verify a draft and how much of it, from what drafting has
/// cost and earned so far in this generation, so that speculation left on where it does not pay
/// costs little. Per n-gram length it keeps the chance that a drafted token is confirmed (a
/// longer match is a better guess: text being copied matches on 4 tokens, free text on 2), and
/// per pass width the measured time of a pass with what follows it until the next pass (the
/// output head of confirmed rows, sampling, the caller's handling of each token). A draft of `d`
/// tokens is verified when its expected tokens, `1 + a + a^2 + ... + a^d`, per expected time
/// beat one-token decode's; an n-gram length that stopped paying drifts back towards its prior
/// each time it is passed over, so it is tried again now and then. A long match passed over
/// [`EXPLORE`] times is verified whole once: a guess that is better than its prior (text being
/// copied is confirmed ~95% of the time) pays only in a wide pass, whose cost and acceptance
/// nothing else would measure (SmolLM2 rewriting a text: 1.04x with the controller alone, 1.29x
/// with every draft verified whole).
#[derive(Debug)]
pub struct Controller {
    accept: [f64; MAX_NGRAM + 1],
    /// Drafts passed over since the last one verified, by n-gram length.
    passed: [u32; MAX_NGRAM + 1],
    /// Milliseconds per pass cycle by rows (index: 1 + draft length); 0: not measured yet.
    cost: Vec<f64>,
    /// The cycle being timed: its rows and start.
    open: Option<(usize, f64)>,
    tile: usize,
}

/// A draft matched on at least [`EXPLORE_NGRAM`] tokens is verified whole after being passed over
/// this many times in a row (see [`Controller`]).
const EXPLORE: u32 = 16;
const EXPLORE_NGRAM: usize = 3;

/// The chance that a drafted token is confirmed before anything is measured, by n-gram length.
fn prior(n: usize) -> f64 {
    match n {
        0 | 1 => 0.3,
        2 => 0.5,
        3 => 0.65,
        _ => 0.8,
    }
}

impl Controller {
    /// For a backend whose batched matmuls take `tile` tokens at a time ([`fit_to_tile`]).
    pub fn new(tile: usize) -> Controller {
        Controller { accept: std::array::from_fn(prior), passed: [0; MAX_NGRAM + 1], cost: Vec::new(), open: None, tile: tile.max(1) }
    }

    /// A forward pass of `rows` rows starts at `now_ms`; the one before it ends there.
    pub fn pass_starts(&mut self, rows: usize, now_ms: f64) {
        if let Some((r, t0)) = self.open.take() {
            let ms = now_ms - t0;
            if ms.is_finite() && ms > 0.0 {
                if self.cost.len() <= r {
                    self.cost.resize(r + 1, 0.0);
                }
                let c = &mut self.cost[r];
                *c = if *c == 0.0 { ms } else { *c + 0.3 * (ms - *c) };
            }
        }
        self.open = Some((rows, now_ms));
    }

    /// A pass of `rows` rows in one-token passes, before it is measured: on the CPU rows in whole
    /// tiles 0.6 each and the rest 1 each (each such row is a pass over the weights of its
    /// own); where width is nearly free (a GPU) 0.1 more per row, an optimistic guess that the
    /// first measurement corrects.
    fn prior_width(&self, rows: usize) -> f64 {
        if self.tile == 1 {
            1.0 + 0.1 * (rows - 1) as f64
        } else {
            0.6 * (rows / self.tile * self.tile) as f64 + (rows % self.tile) as f64
        }
    }

    fn measured(&self, rows: usize) -> Option<f64> {
        self.cost.get(rows).copied().filter(|&c| c > 0.0)
    }

    /// The expected time of a pass of `rows` rows (`one`: one-token decode's): as measured, else
    /// extended from the widest narrower pass measured at that pass's cost per row beyond the
    /// first (the weights are read once for all rows: rows past the first cost their arithmetic),
    /// else [`Self::prior_width`]. Without the extension a wider pass than any tried so far kept
    /// its prior and was never tried (SmolLM2 copying a text on the CPU: passes of 4 rows at 1.65
    /// tokens' time, 8 rows priced at 4.8, their measured 2.5 never seen).
    fn expected(&self, rows: usize, one: f64) -> f64 {
        if let Some(ms) = self.measured(rows) {
            return ms;
        }
        let prior = one * self.prior_width(rows);
        match (2..rows).rev().find_map(|w| self.measured(w).map(|c| (w, c))) {
            Some((w, c)) => (one + (c - one).max(0.0) / (w - 1) as f64 * (rows - 1) as f64).min(prior),
            None => prior,
        }
    }

    /// How many of the `found` drafted tokens (matched on an n-gram of `n`) to verify now; 0: decode
    /// one token instead.
    pub fn choose(&mut self, found: usize, n: usize) -> usize {
        let n = n.min(MAX_NGRAM);
        // One-token decode is timed first: everything is compared with it.
        let Some(one) = self.measured(1) else { return 0 };
        let a = self.accept[n];
        let (mut best, mut best_rate) = (0, 1.0 / one);
        let mut last = 0;
        for d in 1..=found {
            let d = fit_to_tile(d, self.tile);
            if d == last || d == 0 {
                continue;
            }
            last = d;
            let tokens: f64 = (0..=d).map(|i| a.powi(i as i32)).sum();
            let ms = self.expected(d + 1, one);
            if tokens / ms > best_rate {
                (best, best_rate) = (d, tokens / ms);
            }
        }
        if best == 0 && found > 0 {
            self.accept[n] += 0.02 * (prior(n) - self.accept[n]);
            self.passed[n] += 1;
            let whole = fit_to_tile(found, self.tile);
            if n >= EXPLORE_NGRAM && self.passed[n] >= EXPLORE && whole > 0 && whole + 1 >= self.tile {
                best = whole;
            }
        }
        if best > 0 {
            self.passed[n] = 0;
        }
        best
    }

    /// A draft matched on an n-gram of `n`: `accepted` of its `drafted` tokens were confirmed
    /// (the first wrong one ended it).
    pub fn record(&mut self, n: usize, drafted: usize, accepted: usize) {
        let a = &mut self.accept[n.min(MAX_NGRAM)];
        for i in 0..drafted.min(accepted + 1) {
            let hit = if i < accepted { 1.0 } else { 0.0 };
            *a += 0.15 * (hit - *a);
        }
    }
}

/// The draft length to keep of `len` so that the pass (the last token and the draft) fills
/// whole token tiles of `tile` rows: a pass of 1 + `len` rows costs about as much as one
/// rounded up to the tile, so a draft that spills into a tile of its own is cut back
/// (`tile` 4: 8 -> 7, 5 -> 3). Drafts shorter than one tile stay.
pub fn fit_to_tile(len: usize, tile: usize) -> usize {
    let tile = tile.max(1);
    if len + 1 < tile { len } else { (len + 1) / tile * tile - 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_longest_match_is_continued() {
        let s = Speculation { ngram_min: 2, ngram_max: 3, max_draft: 4, ..Default::default() };
        // "1 2 3 4 5 6 ... 1 2 3" -> "4 5 6 7"
        let h = [1, 2, 3, 4, 5, 6, 7, 9, 1, 2, 3];
        assert_eq!(draft(&h, s, 10), (vec![4, 5, 6, 7], 3));
        assert_eq!(draft(&h, s, 2), (vec![4, 5], 3));
        // The latest occurrence wins: "0 8 9" once, followed by 5 (and "8 9" twice).
        let h = [8, 9, 1, 0, 8, 9, 5, 0, 8, 9];
        assert_eq!(draft(&h, s, 1), (vec![5], 3));
        // No earlier occurrence of any n-gram of 2 or more: nothing.
        assert!(draft(&[1, 2, 3, 4], s, 4).0.is_empty());
        assert!(draft(&[1, 2, 1, 2], Speculation { max_draft: 0, ..s }, 4).0.is_empty());
    }

    #[test]
    fn drafts_fill_whole_token_tiles() {
        let fit = |len| fit_to_tile(len, 4);
        assert_eq!([0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12].map(fit), [0, 1, 2, 3, 3, 3, 3, 7, 7, 11, 11]);
        assert_eq!(fit_to_tile(5, 1), 5);
    }

    /// The controller decodes one token first (its cost is the yardstick), drafts while drafts
    /// pay, stops on an n-gram length whose drafts keep failing when a pass costs what it costs on
    /// the CPU, and tries it again later.
    #[test]
    fn the_controller_drafts_only_while_it_pays() {
        let mut c = Controller::new(4);
        assert_eq!(c.choose(8, 4), 0, "one-token decode is timed first");
        let mut t = 0.0;
        c.pass_starts(1, t);
        t += 10.0;
        c.pass_starts(1, t);
        // A 4-gram match: a good guess until shown otherwise; the pass fills whole tiles (3
        // drafted tokens and the last one: 4 rows).
        assert_eq!(c.choose(8, 4), 3);
        // Too short to fill a tile: rows outside one cost what one-token decode does.
        assert_eq!(c.choose(2, 4), 0);
        // Passes of 4 rows cost 2.5 tokens' time and confirm nothing: drafting stops.
        for _ in 0..8 {
            c.pass_starts(4, t);
            t += 25.0;
            c.record(4, 3, 0);
        }
        c.pass_starts(1, t);
        c.pass_starts(1, t + 10.0);
        assert_eq!(c.choose(8, 4), 0);
        // Passed over, the 4-gram is tried again, whole, after EXPLORE drafts.
        let tries = (0..400).position(|_| c.choose(8, 4) > 0);
        // (The two drafts passed over above count: the 16th pass-over is call 14 here.)
        assert_eq!(tries, Some(EXPLORE as usize - 3));
        // A 2-gram (a weak guess, free text) is not explored, and at its prior a pass of 4 rows
        // costing 2.5 tokens' time does not pay: it stays off.
        for _ in 0..8 {
            c.pass_starts(4, t);
            t += 25.0;
            c.record(2, 3, 0);
        }
        assert_eq!((0..400).position(|_| c.choose(8, 2) > 0), None);
        // On a backend where width is nearly free (a GPU: tile 1), even a weak guess pays.
        let mut g = Controller::new(1);
        g.pass_starts(1, 0.0);
        g.pass_starts(8, 10.0);
        g.pass_starts(1, 21.0);
        g.record(2, 7, 1);
        assert_eq!(g.choose(7, 2), 7);
    }

    /// Text being copied on a CPU where a 4-row pass costs 3 tokens' time and an 8-row pass 5:
    /// at the 4-gram prior neither pays, so the controller passes over the drafts until it
    /// explores one whole, learns that its tokens are confirmed, and keeps verifying 7.
    #[test]
    fn the_controller_finds_a_wide_pass_that_pays() {
        let mut c = Controller::new(4);
        let mut t = 0.0;
        c.pass_starts(1, t);
        t += 10.0;
        c.pass_starts(4, t);
        t += 30.0;
        c.record(4, 3, 2);
        c.pass_starts(1, t);
        t += 10.0;
        c.pass_starts(1, t);
        let mut chosen = Vec::new();
        for _ in 0..40 {
            let d = c.choose(8, 4);
            chosen.push(d);
            if d > 0 {
                c.pass_starts(d + 1, t);
                t += if d == 7 { 50.0 } else { 30.0 };
                c.record(4, d, d);
            } else {
                c.pass_starts(1, t);
                t += 10.0;
            }
            c.pass_starts(1, t);
        }
        let first = chosen.iter().position(|&d| d == 7).expect("a whole draft is explored");
        assert!(first <= EXPLORE as usize, "{chosen:?}");
        assert!(chosen[first..].iter().all(|&d| d == 7), "{chosen:?}");
    }

    /// A draft confirmed whole in passes of 4 rows that cost 1.65 tokens' time: a pass of 8 rows,
    /// never measured, is priced from the 4-row pass's cost per extra row (one token plus 7 x
    /// 0.22, 2.5 tokens' time) rather than its prior (4.8), so it is tried at once; measured, its
    /// own cost decides from then on.
    #[test]
    fn a_wider_pass_is_priced_from_a_narrower_one() {
        let mut c = Controller::new(4);
        let mut t = 0.0;
        c.pass_starts(1, t);
        t += 10.0;
        c.pass_starts(1, t);
        assert_eq!(c.choose(8, 4), 3, "no pass of several rows measured yet: the prior decides");
        c.pass_starts(4, t);
        t += 16.5;
        c.record(4, 3, 3);
        c.pass_starts(1, t);
        assert!((c.expected(8, 10.0) - 25.17).abs() < 0.01, "{}", c.expected(8, 10.0));
        assert_eq!(c.choose(8, 4), 7);
        // Measured at 6 tokens' time, the wide pass no longer pays; the narrow one does.
        for _ in 0..6 {
            c.pass_starts(8, t);
            t += 60.0;
            c.record(4, 7, 7);
        }
        c.pass_starts(1, t);
        assert_eq!(c.choose(8, 4), 3);
    }
}
