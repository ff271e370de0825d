//! The threaded build's hooks for the CPU backend's thread pool (`crate::backend::cpu::pool`),
//! called by `src/js/thread-worker.js` (each Web Worker of the pool) and `src/js/runtime.js`
//! (which starts them on the module's shared memory).

use wasm_bindgen::prelude::*;

use crate::backend::cpu::pool;

/// Run worker `id`'s loop on this (Web Worker) thread; never returns.
#[wasm_bindgen(js_name = threadWorkerMain)]
pub fn thread_worker_main(id: usize) {
    pool::worker_main(id)
}

/// Count a Web Worker as started once it has registered (JS calls this after `threadWorkerMain`
/// is running in it).
#[wasm_bindgen(js_name = threadWorkerReady)]
pub fn thread_worker_ready(id: usize) -> bool {
    pool::worker_ready(id)
}

/// Address of the flag a worker's JS sets (with `Atomics.store`) when its instance trapped.
#[wasm_bindgen(js_name = threadFailedFlag)]
pub fn thread_failed_flag() -> usize {
    pool::worker_failed_flag()
}

/// The module's shared memory, for starting workers on it.
#[wasm_bindgen(js_name = threadMemory)]
pub fn thread_memory() -> JsValue {
    wasm_bindgen::memory()
}
