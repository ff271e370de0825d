//! Memory budgets for work whose size a hostile file decides, where the library doing it has no
//! limit of its own: rendering a chat template (minijinja bounds steps with fuel, not memory; a
//! list or string doubled in a loop reaches gigabytes in 30 steps).
//!
//! The crate's global allocator counts the bytes allocated minus freed inside a [`limit`] scope:
//! per thread natively (tests run in parallel); on wasm32 for the whole module, where one call
//! from JS runs at a time and the CPU pool's workers sit idle outside its matrix products (and
//! where a new thread's first allocations, its stack and TLS block, come before its TLS exists,
//! so the allocator must not use thread-locals there). An allocation that would pass the scope's budget fails, after recording
//! [`AbortReason::TemplateMemory`]; Rust turns a failed allocation into an abort, which on wasm
//! is a trap. The JS side reads [`abort_reason`] after the trap, reports a typed error naming the
//! cause, and retires the module instance as after any trap. So a hostile template costs the
//! budget, not all of memory, and never takes the page down. Outside a scope the allocator only
//! adds a few thread-local reads and writes to the system allocator.
//!
//! It also records the largest single request per thread ([`largest_alloc`]): the hostile-input
//! tests use it to show that no allocation is sized by a file's claims.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicU32, AtomicUsize, Ordering};

/// Why the last abort (trap) happened, when the crate knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum AbortReason {
    None = 0,
    /// A chat template went past its memory budget.
    TemplateMemory = 1,
}

static REASON: AtomicU32 = AtomicU32::new(AbortReason::None as u32);

/// The reason recorded by the last failed allocation in a budget scope (a number: see
/// [`AbortReason`]). Read by the JS side after a trap.
pub fn abort_reason() -> u32 {
    REASON.load(Ordering::Relaxed)
}

struct Scope {
    /// Bytes allocated minus bytes freed since the scope began.
    used: AtomicIsize,
    /// The budget; `isize::MAX` outside any scope.
    limit: AtomicIsize,
    reason: AtomicU32,
    /// The largest single request since [`largest_alloc`] began.
    largest: AtomicUsize,
}

const OPEN: Scope = Scope {
    used: AtomicIsize::new(0),
    limit: AtomicIsize::new(isize::MAX),
    reason: AtomicU32::new(AbortReason::None as u32),
    largest: AtomicUsize::new(0),
};

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    // Const-initialized without a destructor: reading it never allocates, so the allocator may.
    static SCOPE: Scope = const { OPEN };
}

/// Run `f` on the scope state (`None` while a thread's locals are being torn down).
#[cfg(not(target_arch = "wasm32"))]
fn scope<R>(f: impl FnOnce(&Scope) -> R) -> Option<R> {
    SCOPE.try_with(f).ok()
}

#[cfg(target_arch = "wasm32")]
static SCOPE: Scope = OPEN;

#[cfg(target_arch = "wasm32")]
fn scope<R>(f: impl FnOnce(&Scope) -> R) -> Option<R> {
    Some(f(&SCOPE))
}

/// Run `f` with at most `bytes` more live heap on this thread; past it, the process aborts (a trap
/// on wasm) with `reason` recorded. Scopes do not nest: an inner scope replaces the outer one.
pub fn limit<T>(bytes: usize, reason: AbortReason, f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            scope(|s| s.limit.store(isize::MAX, Ordering::Relaxed));
        }
    }
    scope(|s| {
        s.used.store(0, Ordering::Relaxed);
        s.reason.store(reason as u32, Ordering::Relaxed);
        s.limit.store(isize::try_from(bytes).unwrap_or(isize::MAX), Ordering::Relaxed);
    });
    let _reset = Reset;
    f()
}

/// Run `f` and return its result with the largest single allocation it made on this thread
/// (growing an allocation counts its new size).
pub fn largest_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    scope(|s| s.largest.store(0, Ordering::Relaxed));
    let r = f();
    (r, scope(|s| s.largest.load(Ordering::Relaxed)).unwrap_or(0))
}

/// Whether this thread may take `size` more bytes (counting them if so).
#[inline]
fn admit(size: usize) -> bool {
    scope(|s| {
        // A read first: an atomic read-modify-write on every allocation would bounce this
        // cache line between the threads of the threaded wasm build.
        if size > s.largest.load(Ordering::Relaxed) {
            s.largest.fetch_max(size, Ordering::Relaxed);
        }
        let limit = s.limit.load(Ordering::Relaxed);
        if limit == isize::MAX {
            return true;
        }
        let used = s.used.load(Ordering::Relaxed).saturating_add(isize::try_from(size).unwrap_or(isize::MAX));
        if used > limit {
            REASON.store(s.reason.load(Ordering::Relaxed), Ordering::Relaxed);
            return false;
        }
        s.used.store(used, Ordering::Relaxed);
        true
    })
    .unwrap_or(true)
}

#[inline]
fn release(size: usize) {
    scope(|s| {
        if s.limit.load(Ordering::Relaxed) != isize::MAX {
            s.used.fetch_sub(isize::try_from(size).unwrap_or(isize::MAX), Ordering::Relaxed);
        }
    });
}

/// The system allocator, with [`limit`] scopes.
pub struct Budgeted;

unsafe impl GlobalAlloc for Budgeted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        release(layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            scope(|s| s.largest.fetch_max(new_size, Ordering::Relaxed));
            if !admit(new_size - layout.size()) {
                return std::ptr::null_mut();
            }
        } else {
            release(layout.size() - new_size);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Budgeted = Budgeted;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_count_live_bytes_and_end() {
        // Allocating and freeing far more than the budget in total is fine: only live bytes count.
        let n = limit(1 << 20, AbortReason::TemplateMemory, || {
            (0..64).map(|i| vec![i as u8; 256 << 10].len()).sum::<usize>()
        });
        assert_eq!(n, 64 << 18);
        // Outside the scope there is no budget.
        assert_eq!(vec![0u8; 8 << 20].len(), 8 << 20);
        assert_eq!(abort_reason(), AbortReason::None as u32);
        let ((), largest) = largest_alloc(|| {
            let mut v = vec![0u8; 1000];
            v.reserve_exact(5000);
            drop(vec![0u8; 3000]);
        });
        assert_eq!(largest, 6000);
    }
}
