//! Progress reports of the storage layer: the public [`Progress`] event and [`ProgressFn`]
//! callback, the phase names, and [`Reporter`], the throttled, rate-computing state that downloads,
//! verification and the engine's load (`crate::wasm::source`) feed.

/// Every progress phase, in the order a load goes through them: `"download"` (bytes stored,
/// including those stored by an earlier visit), `"verify"` (bytes hashed for the whole-file
/// sha256), `"load"` (weight bytes read into the engine). Exported to JS by `contract()`.
pub const PHASES: [&str; 3] = ["download", "verify", "load"];

/// A progress report (`phase` is one of [`PHASES`]). `bytes_per_second` is this phase's rate in
/// this session.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    pub phase: &'static str,
    pub loaded: u64,
    pub total: u64,
    pub bytes_per_second: f64,
}

/// A progress callback.
pub type ProgressFn = Box<dyn FnMut(Progress)>;

#[cfg(target_arch = "wasm32")]
pub(crate) use reporter::Reporter;

#[cfg(target_arch = "wasm32")]
mod reporter {
    use super::{Progress, ProgressFn};
    use crate::storage::web::now_ms;

    /// Progress events at most this often (plus one at the end of each phase).
    const PROGRESS_EVERY_MS: f64 = 100.0;

    /// Progress state shared by concurrent chunk downloads.
    pub(crate) struct Reporter {
        cb: Option<ProgressFn>,
        phase: &'static str,
        pub(crate) loaded: u64,
        total: u64,
        moved: u64,
        start_ms: f64,
        last_ms: f64,
    }

    impl Reporter {
        pub fn new(cb: Option<ProgressFn>) -> Reporter {
            Reporter { cb, phase: "download", loaded: 0, total: 0, moved: 0, start_ms: now_ms(), last_ms: 0.0 }
        }
        pub fn start(&mut self, phase: &'static str, loaded: u64, total: u64) {
            (self.phase, self.loaded, self.total, self.moved, self.start_ms) = (phase, loaded, total, 0, now_ms());
            self.emit();
        }
        pub fn add(&mut self, n: u64) {
            self.loaded += n;
            self.moved += n;
            if now_ms() - self.last_ms >= PROGRESS_EVERY_MS {
                self.emit();
            }
        }
        /// Take back bytes of a chunk that failed and will be fetched again.
        pub fn sub(&mut self, n: u64) {
            self.loaded = self.loaded.saturating_sub(n);
            self.moved = self.moved.saturating_sub(n);
        }
        pub fn emit(&mut self) {
            let now = now_ms();
            self.last_ms = now;
            let secs = ((now - self.start_ms) / 1000.0).max(1e-3);
            let p = Progress { phase: self.phase, loaded: self.loaded, total: self.total, bytes_per_second: self.moved as f64 / secs };
            if let Some(cb) = &mut self.cb {
                cb(p);
            }
        }
    }
}
