//! A small pool of long-lived threads for the CPU backend's matrix products.
//!
//! One job at a time: the calling thread publishes `n` tasks (a `Fn(usize)`), wakes the workers,
//! runs tasks itself until none are left, then waits for the workers' last ones. The caller never
//! blocks in the kernel: it spins. That matters in browsers, where the page's main thread may not
//! wait on shared memory; only workers wait (`thread::park`, which std implements with
//! `memory.atomic.wait32` on wasm).
//!
//! Natively the workers are std threads started on first use. In the threaded wasm build they are
//! Web Workers started by the package's JS (`src/js/runtime.js`; each runs
//! `src/js/thread-worker.js`): each instantiates the module on the same shared memory and calls
//! [`worker_main`] (through `src/wasm/threads.rs`), which never returns.
//!
//! Memory safety of the published job (it lives on the caller's stack): a worker announces the job
//! it is about to use in its hazard slot, then checks it is still the current one; the caller
//! withdraws the job and waits until no hazard slot names it before returning.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering::*};
use std::sync::{Mutex, OnceLock, TryLockError};
use std::thread::{self, Thread};

/// Most worker threads the pool runs (besides the caller).
pub const MAX_WORKERS: usize = 15;
/// Polls of the job counter before a worker parks: a decode step issues its matrix products a
/// few microseconds apart, and a parked worker takes tens of microseconds to wake (in a browser,
/// `Atomics.notify` to a waiting Web Worker: 50-100 us and more), which the caller then spends
/// alone. Natively each poll is a `pause` (tens of cycles): 20,000 of them span about half a
/// millisecond. WebAssembly has no `pause`: a poll is one atomic load, about a nanosecond, so the
/// budget there is larger, to span the same gaps (between products, and between tokens while
/// the engine's JS streams one out) of about a millisecond.
#[cfg(not(target_arch = "wasm32"))]
const SPIN: u32 = 20_000;
#[cfg(target_arch = "wasm32")]
const SPIN: u32 = 2_000_000;

struct Job<'a> {
    task: &'a (dyn Fn(usize) + Sync),
    n: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
}

impl Job<'_> {
    fn run_tasks(&self) {
        loop {
            let i = self.next.fetch_add(1, Relaxed);
            if i >= self.n {
                return;
            }
            if catch_unwind(AssertUnwindSafe(|| (self.task)(i))).is_err() {
                self.panicked.store(true, Relaxed);
            }
            self.done.fetch_add(1, Release);
        }
    }
}

/// Bumped for every job (workers wait for it to change).
static GENERATION: AtomicU32 = AtomicU32::new(0);
static CURRENT: AtomicPtr<Job<'static>> = AtomicPtr::new(ptr::null_mut());
static HAZARD: [AtomicPtr<Job<'static>>; MAX_WORKERS] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_WORKERS];
static WORKERS: [OnceLock<Thread>; MAX_WORKERS] = [const { OnceLock::new() }; MAX_WORKERS];
/// Workers started (they register in `WORKERS` as they come up).
static STARTED: AtomicUsize = AtomicUsize::new(0);
/// One caller at a time; another caller (a second engine) runs its job inline.
static CALLER: Mutex<()> = Mutex::new(());
/// Set by the threaded wasm build's JS when a worker's instance trapped: its task will never
/// complete, and the module's state is suspect, so the caller traps too (the package then drops
/// the module and starts a fresh one).
static WORKER_FAILED: AtomicU32 = AtomicU32::new(0);

/// A task panicked (natively; in wasm a panic aborts the module).
#[derive(Debug, PartialEq, Eq)]
pub struct Panicked;

/// Threads a job can use: the caller plus the workers started so far.
pub fn threads() -> usize {
    1 + STARTED.load(Acquire)
}

/// Start native worker threads until there are `n - 1` of them (at most [`MAX_WORKERS`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn ensure_threads(n: usize) {
    static START: Mutex<()> = Mutex::new(());
    let _g = START.lock().unwrap_or_else(|e| e.into_inner());
    let want = n.saturating_sub(1).min(MAX_WORKERS);
    while STARTED.load(Acquire) < want {
        let id = STARTED.load(Acquire);
        let spawned = thread::Builder::new().name(format!("browser-llm-{id}")).spawn(move || worker_main(id));
        if spawned.is_err() {
            return; // fewer threads: jobs still complete
        }
        while WORKERS[id].get().is_none() {
            thread::yield_now();
        }
        STARTED.store(id + 1, Release);
    }
}

/// Run `task(0..n)` on the pool's threads; returns when every task has run.
pub fn run(n: usize, task: &(dyn Fn(usize) + Sync)) -> Result<(), Panicked> {
    if n <= 1 || STARTED.load(Acquire) == 0 {
        return run_inline(n, task);
    }
    let _caller = match CALLER.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => return run_inline(n, task),
    };
    let job = Job { task, n, next: AtomicUsize::new(0), done: AtomicUsize::new(0), panicked: AtomicBool::new(false) };
    // SAFETY: the job is withdrawn, and no worker holds it, before this function returns.
    let p = (&job as *const Job<'_>).cast_mut().cast::<Job<'static>>();
    CURRENT.store(p, SeqCst);
    GENERATION.fetch_add(1, SeqCst);
    for w in WORKERS.iter().take(STARTED.load(Acquire)) {
        if let Some(t) = w.get() {
            t.unpark();
        }
    }
    job.run_tasks();
    while job.done.load(Acquire) < n {
        // The job must not be freed while a worker may hold it: never return from here.
        assert!(WORKER_FAILED.load(Acquire) == 0, "a worker thread of the engine crashed");
        std::hint::spin_loop();
    }
    CURRENT.store(ptr::null_mut(), SeqCst);
    for h in HAZARD.iter() {
        while h.load(SeqCst) == p {
            std::hint::spin_loop();
        }
    }
    if job.panicked.load(Relaxed) {
        return Err(Panicked);
    }
    Ok(())
}

fn run_inline(n: usize, task: &(dyn Fn(usize) + Sync)) -> Result<(), Panicked> {
    for i in 0..n {
        if catch_unwind(AssertUnwindSafe(|| task(i))).is_err() {
            return Err(Panicked);
        }
    }
    Ok(())
}

/// Help with the current job, if any; returns the generation seen before looking.
fn help(id: usize) -> u32 {
    loop {
        let generation = GENERATION.load(SeqCst);
        let p = CURRENT.load(SeqCst);
        if p.is_null() {
            return generation;
        }
        HAZARD[id].store(p, SeqCst);
        if CURRENT.load(SeqCst) == p {
            // SAFETY: announced in HAZARD before the re-check, so the caller has not returned.
            unsafe { &*p }.run_tasks();
            HAZARD[id].store(ptr::null_mut(), SeqCst);
            return generation;
        }
        HAZARD[id].store(ptr::null_mut(), SeqCst);
    }
}

/// A worker thread's loop (never returns). `id` is its slot, 0..[`MAX_WORKERS`].
pub fn worker_main(id: usize) {
    if id >= MAX_WORKERS || WORKERS[id].set(thread::current()).is_err() {
        return;
    }
    let mut seen = GENERATION.load(SeqCst);
    loop {
        let mut spins = 0;
        while GENERATION.load(Acquire) == seen && spins < SPIN {
            std::hint::spin_loop();
            spins += 1;
        }
        if GENERATION.load(Acquire) == seen {
            thread::park();
            continue;
        }
        seen = help(id);
    }
}

/// Count Web Worker `id` as started once it has registered (the threaded wasm build calls this,
/// through `src/wasm/threads.rs`, after [`worker_main`] is running in it).
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
pub fn worker_ready(id: usize) -> bool {
    let ok = id < MAX_WORKERS && WORKERS[id].get().is_some();
    if ok {
        STARTED.fetch_max(id + 1, Release);
    }
    ok
}

/// Address of the flag a worker's JS sets (with `Atomics.store`) when its instance trapped.
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
pub fn worker_failed_flag() -> usize {
    &WORKER_FAILED as *const _ as usize
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_task_runs_once_across_many_jobs() {
        ensure_threads(4);
        assert!(threads() >= 2);
        for round in 0..2000u64 {
            let n = 1 + (round % 13) as usize;
            let hits: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
            run(n, &|i| {
                hits[i].fetch_add(round + 1, Relaxed);
            })
            .unwrap();
            assert!(hits.iter().all(|h| h.load(Relaxed) == round + 1), "round {round}");
        }
    }

    #[test]
    fn a_panicking_task_is_an_error_and_the_pool_goes_on() {
        ensure_threads(3);
        let r = run(8, &|i| {
            if i == 5 {
                panic!("task 5");
            }
        });
        assert_eq!(r, Err(Panicked));
        let count = AtomicUsize::new(0);
        run(8, &|_| {
            count.fetch_add(1, Relaxed);
        })
        .unwrap();
        assert_eq!(count.load(Relaxed), 8);
    }

    #[test]
    fn concurrent_callers_each_complete() {
        ensure_threads(3);
        thread::scope(|s| {
            for c in 0..4 {
                s.spawn(move || {
                    for _ in 0..300 {
                        let sum = AtomicUsize::new(0);
                        run(6, &|i| {
                            sum.fetch_add(i + c, Relaxed);
                        })
                        .unwrap();
                        assert_eq!(sum.load(Relaxed), 15 + 6 * c);
                    }
                });
            }
        });
    }
}
