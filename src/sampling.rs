//! Token sampling: penalties, then greedy (temperature 0) or top-k -> top-p -> min-p ->
//! temperature -> a draw from a seeded RNG. The order follows llama.cpp's default sampler chain;
//! the same seed and the same logits always give the same token. Empty logits and NaN or infinite
//! logits (a broken model) are errors, never sampled.

use crate::error::{Error, Result};
use crate::logits::{argmax, top_k, ReadOut, Readback};

#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax, ties to the lower id).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set whose probability mass reaches `top_p`; 1 disables.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; 0 disables.
    pub min_p: f32,
    /// llama.cpp's repeat penalty: positive logits divided, negative multiplied; 1 disables.
    pub repeat_penalty: f32,
    /// Subtract `count * frequency_penalty` (OpenAI semantics); 0 disables.
    pub frequency_penalty: f32,
    /// Subtract `presence_penalty` from every token already seen; 0 disables.
    pub presence_penalty: f32,
    /// How many of the most recent tokens the penalties look at.
    pub penalty_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0x5eed,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams { temperature: 0.0, ..Default::default() }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid_argument(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature must be >= 0, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return bad(format!("repeat_penalty must be > 0, got {}", self.repeat_penalty));
        }
        for (name, v) in [("frequency_penalty", self.frequency_penalty), ("presence_penalty", self.presence_penalty)] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(format!("{name} must be in [-2, 2], got {v}"));
            }
        }
        Ok(())
    }

    /// Do the penalties need the token history?
    pub fn has_penalties(&self) -> bool {
        self.repeat_penalty != 1.0 || self.frequency_penalty != 0.0 || self.presence_penalty != 0.0
    }
}

/// xoshiro256** seeded through splitmix64: small, fast, identical on every platform.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Rng { s: [next(), next(), next(), next()] }
    }
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Apply repeat/frequency/presence penalties for the last `penalty_last_n` tokens of `history`.
pub fn apply_penalties(logits: &mut [f32], history: &[u32], p: &SamplingParams) {
    if !p.has_penalties() || p.penalty_last_n == 0 {
        return;
    }
    // Sorted, so counting is O(n log n) (a linear search per token was O(n x distinct): 167 ms
    // per token with 32k distinct recent tokens).
    let mut recent = history[history.len().saturating_sub(p.penalty_last_n)..].to_vec();
    recent.sort_unstable();
    for run in recent.chunk_by(|a, b| a == b) {
        let (id, count) = (run[0], run.len());
        let Some(l) = logits.get_mut(id as usize) else { continue };
        if *l > 0.0 {
            *l /= p.repeat_penalty;
        } else {
            *l *= p.repeat_penalty;
        }
        *l -= count as f32 * p.frequency_penalty + p.presence_penalty;
    }
}

/// Logits that can be sampled: at least one, all finite. NaN logits come from corrupt weights
/// (or metadata that validation could not catch); argmax would silently pick id 0 forever.
fn check_logits(mut values: impl Iterator<Item = f32>, len: usize) -> Result<()> {
    if len == 0 {
        return Err(Error::invalid_argument("there are no logits to sample from"));
    }
    match values.find(|v| !v.is_finite()) {
        None => Ok(()),
        Some(v) => Err(Error::unsupported_model(format!(
            "the model produced {} logits (corrupt weights or metadata)",
            if v.is_nan() { "NaN" } else { "infinite" }
        ))),
    }
}

pub struct Sampler {
    pub params: SamplingParams,
    rng: Rng,
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Sampler> {
        params.validate()?;
        let rng = Rng::new(params.seed);
        Ok(Sampler { params, rng, candidates: Vec::new() })
    }

    /// What the sampler needs read back from the backend: only the best token for greedy
    /// decoding, only the top-k candidates for top-k sampling, every logit for penalties or
    /// without top-k. A backend that cannot select `k` on the device reads the whole row and
    /// selects on the host ([`Readback::select`]): the same candidates either way.
    pub fn readback(&self) -> Readback {
        let p = &self.params;
        if p.has_penalties() {
            Readback::Full
        } else if p.temperature == 0.0 {
            Readback::Argmax
        } else if p.top_k > 0 {
            Readback::TopK(p.top_k)
        } else {
            Readback::Full
        }
    }

    /// Pick the next token from what the backend read back (see [`Sampler::readback`]).
    /// Errors: nothing to sample from (`INVALID_ARGUMENT`); a NaN or infinite logit
    /// (`UNSUPPORTED_MODEL`: the model is broken, sampling it would emit garbage silently).
    pub fn sample_out(&mut self, out: ReadOut, history: &[u32]) -> Result<u32> {
        match out {
            ReadOut::Full(mut logits) => self.sample(&mut logits, history),
            ReadOut::Candidates(c) => {
                // A device selection skips NaN logits: no candidate at all means none was finite.
                if c.is_empty() {
                    return Err(Error::unsupported_model(
                        "the model produced no finite logits (NaN: corrupt weights or metadata)",
                    ));
                }
                check_logits(c.iter().map(|&(_, l)| l), c.len())?;
                self.candidates = c;
                Ok(self.sample_candidates())
            }
        }
    }

    /// Pick the next token. `logits` is modified (penalties). Errors as [`Sampler::sample_out`].
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> Result<u32> {
        self.sample_masked(logits, history, |_| Ok(()))
    }

    /// [`Sampler::sample`] with `mask` run after the penalties: it sets the logits of forbidden
    /// tokens to `-inf` (constrained decoding), and no such token is ever picked. Nothing
    /// allowed is an `INVALID_ARGUMENT` error.
    pub fn sample_masked(&mut self, logits: &mut [f32], history: &[u32], mask: impl FnOnce(&mut [f32]) -> Result<()>) -> Result<u32> {
        check_logits(logits.iter().copied(), logits.len())?;
        apply_penalties(logits, history, &self.params);
        mask(logits)?;
        let best = argmax(logits);
        if logits[best as usize] == f32::NEG_INFINITY {
            return Err(Error::invalid_argument("the output constraint allows no token here"));
        }
        if self.params.temperature == 0.0 {
            return Ok(best);
        }
        let k = if self.params.top_k > 0 { self.params.top_k } else { logits.len() };
        self.candidates = top_k(logits, k);
        self.candidates.retain(|&(_, l)| l > f32::NEG_INFINITY);
        Ok(self.sample_candidates())
    }

    /// Top-p -> min-p -> temperature -> draw over `self.candidates` (sorted, top-k applied).
    fn sample_candidates(&mut self) -> u32 {
        let p = &self.params;
        let c = &mut self.candidates;
        if p.top_k > 0 {
            c.truncate(p.top_k);
        }
        if p.temperature == 0.0 || c.len() == 1 {
            return c[0].0;
        }
        // Probabilities at temperature 1 for top-p and min-p, as llama.cpp does before temperature.
        let max = c[0].1;
        let probs: Vec<f64> = c.iter().map(|&(_, l)| ((l - max) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        let mut keep = c.len();
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, pr) in probs.iter().enumerate() {
                cum += pr / total;
                if cum >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p as f64;
            keep = keep.min(probs.iter().take_while(|&&pr| pr >= floor).count().max(1));
        }
        c.truncate(keep);
        // Temperature, then draw.
        let weights: Vec<f64> = c.iter().map(|&(_, l)| (((l - max) / p.temperature) as f64).exp()).collect();
        let sum: f64 = weights.iter().sum();
        let mut u = self.rng.next_f64() * sum;
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                return c[i].0;
            }
            u -= w;
        }
        c[c.len() - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        (0..1000).map(|i| ((i * 7919) % 1000) as f32 / 100.0).collect()
    }

    #[test]
    fn greedy_is_argmax_with_ties_to_lower_id() {
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        let mut l = vec![1.0, 3.0, 3.0, 2.0];
        assert_eq!(s.sample(&mut l, &[]).unwrap(), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_different_seed_differs() {
        let run = |seed| {
            let mut s = Sampler::new(SamplingParams { temperature: 1.5, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..Default::default() }).unwrap();
            (0..50).map(|_| s.sample(&mut logits(), &[]).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(SamplingParams { temperature: 2.0, top_k: 1, ..Default::default() }).unwrap();
        let l = logits();
        let best = argmax(&l);
        for _ in 0..20 {
            assert_eq!(s.sample(&mut l.clone(), &[]).unwrap(), best);
        }
    }

    #[test]
    fn top_k_restricts_to_the_k_best() {
        let l = logits();
        let mut sorted: Vec<u32> = (0..l.len() as u32).collect();
        sorted.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]));
        let top5 = &sorted[..5];
        let mut s = Sampler::new(SamplingParams { temperature: 5.0, top_k: 5, top_p: 1.0, min_p: 0.0, ..Default::default() }).unwrap();
        for _ in 0..200 {
            assert!(top5.contains(&s.sample(&mut l.clone(), &[]).unwrap()));
        }
    }

    #[test]
    fn sampling_from_device_candidates_equals_sampling_from_full_logits() {
        for params in [
            SamplingParams { temperature: 0.9, top_k: 40, ..Default::default() },
            SamplingParams { temperature: 1.3, top_k: 7, top_p: 0.8, min_p: 0.0, seed: 3, ..Default::default() },
            // A k above any device limit: the backend reads the whole row and selects on the host.
            SamplingParams { temperature: 1.1, top_k: 200, top_p: 1.0, min_p: 0.0, seed: 5, ..Default::default() },
            SamplingParams::greedy(),
        ] {
            let mut full = Sampler::new(params.clone()).unwrap();
            let mut cand = Sampler::new(params).unwrap();
            let what = cand.readback();
            assert_ne!(what, Readback::Full);
            for _ in 0..100 {
                let l = logits();
                let a = full.sample(&mut l.clone(), &[]).unwrap();
                let b = cand.sample_out(what.select(l), &[]).unwrap();
                assert_eq!(a, b);
            }
        }
        // Penalties need every logit.
        let s = Sampler::new(SamplingParams { repeat_penalty: 1.1, ..Default::default() }).unwrap();
        assert_eq!(s.readback(), Readback::Full);
        // So does sampling without top-k.
        let s = Sampler::new(SamplingParams { top_k: 0, ..Default::default() }).unwrap();
        assert_eq!(s.readback(), Readback::Full);
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        // Token 0 dominates; with min_p 0.5 nothing else survives.
        let mut l = vec![10.0, 0.0, 0.0, 0.0];
        let mut s = Sampler::new(SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.5, ..Default::default() }).unwrap();
        for _ in 0..100 {
            assert_eq!(s.sample(&mut l, &[]).unwrap(), 0);
        }
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // probs ~ [0.64, 0.24, 0.09, 0.03]: top_p 0.7 keeps two tokens.
        let l = vec![3.0, 2.0, 1.0, 0.0];
        let mut s = Sampler::new(SamplingParams { temperature: 1.0, top_k: 0, top_p: 0.7, min_p: 0.0, ..Default::default() }).unwrap();
        let mut seen = [0; 4];
        for _ in 0..500 {
            seen[s.sample(&mut l.clone(), &[]).unwrap() as usize] += 1;
        }
        assert!(seen[0] > 0 && seen[1] > 0 && seen[2] == 0 && seen[3] == 0, "{seen:?}");
    }

    #[test]
    fn penalties_follow_llama_cpp_and_openai_semantics() {
        let p = SamplingParams { repeat_penalty: 2.0, frequency_penalty: 0.5, presence_penalty: 0.25, ..SamplingParams::greedy() };
        let mut l = vec![4.0, -4.0, 1.0];
        apply_penalties(&mut l, &[0, 0, 1], &p);
        assert_eq!(l, vec![4.0 / 2.0 - 2.0 * 0.5 - 0.25, -4.0 * 2.0 - 0.5 - 0.25, 1.0]);
        // Only the last `penalty_last_n` tokens count.
        let p = SamplingParams { repeat_penalty: 2.0, penalty_last_n: 1, ..SamplingParams::greedy() };
        let mut l = vec![4.0, 4.0];
        apply_penalties(&mut l, &[0, 1], &p);
        assert_eq!(l, vec![4.0, 2.0]);
    }

    #[test]
    fn invalid_params_are_typed_errors() {
        for p in [
            SamplingParams { temperature: -1.0, ..Default::default() },
            SamplingParams { top_p: 0.0, ..Default::default() },
            SamplingParams { min_p: 1.5, ..Default::default() },
            SamplingParams { repeat_penalty: 0.0, ..Default::default() },
            SamplingParams { presence_penalty: 3.0, ..Default::default() },
        ] {
            assert_eq!(Sampler::new(p).err().unwrap().code, crate::ErrorCode::InvalidArgument);
        }
    }

    /// L7: empty logits (or no candidates) are an error, never an index panic.
    #[test]
    fn l7_empty_logits_are_an_error_not_a_panic() {
        for params in [SamplingParams::greedy(), SamplingParams::default(), SamplingParams { top_k: 0, ..Default::default() }] {
            let mut s = Sampler::new(params).unwrap();
            assert_eq!(s.sample(&mut [], &[]).unwrap_err().code, crate::ErrorCode::InvalidArgument);
            assert_eq!(s.sample_out(ReadOut::Full(vec![]), &[1]).unwrap_err().code, crate::ErrorCode::InvalidArgument);
            assert_eq!(s.sample_out(ReadOut::Candidates(vec![]), &[]).unwrap_err().code, crate::ErrorCode::UnsupportedModel);
        }
    }

    /// M3: NaN or infinite logits (a broken model) are a typed error, never sampled as id 0.
    #[test]
    fn m3_nan_and_infinite_logits_are_an_error() {
        for params in [SamplingParams::greedy(), SamplingParams::default(), SamplingParams { repeat_penalty: 1.2, ..Default::default() }] {
            let mut s = Sampler::new(params).unwrap();
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut l = vec![0.5, bad, 1.0];
                let e = s.sample(&mut l, &[0]).unwrap_err();
                assert_eq!(e.code, crate::ErrorCode::UnsupportedModel);
                assert!(e.message.contains("logits"), "{}", e.message);
                let e = s.sample_out(ReadOut::Candidates(vec![(3, bad)]), &[]).unwrap_err();
                assert_eq!(e.code, crate::ErrorCode::UnsupportedModel);
            }
            let e = s.sample(&mut vec![f32::NAN; 4], &[]).unwrap_err();
            assert!(e.message.contains("NaN"), "{}", e.message);
        }
    }

    /// L11 (cost): penalties over 32k distinct recent tokens stay cheap (a linear search per
    /// token took 167 ms per sampled token) and count each token once per occurrence.
    #[test]
    fn l11_penalties_over_many_distinct_tokens_are_cheap() {
        let n = 1 << 15;
        let p = SamplingParams { frequency_penalty: 0.5, penalty_last_n: n, ..SamplingParams::greedy() };
        let history: Vec<u32> = (0..n as u32).rev().chain([7, 7]).collect();
        let mut l = vec![0.0f32; n];
        let t = std::time::Instant::now();
        apply_penalties(&mut l, &history, &p);
        assert!(t.elapsed().as_millis() < 100, "{:?}", t.elapsed());
        // The window is the last n tokens: the two oldest (ids n-1, n-2) fell out, 7 is there 3 times.
        assert_eq!((l[n - 1], l[n - 2], l[n - 3], l[0], l[7]), (0.0, 0.0, -0.5, -0.5, -1.5));
    }
}
