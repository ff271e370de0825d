//! The `#[wasm_bindgen]` facade: everything the npm package's JavaScript (`src/js/`) calls, and the
//! only place in the crate that exports to JS. Nothing here computes: it converts options and
//! results between JS and the library and turns every [`crate::Error`] into a JS `Error` with a
//! stable `code`.
//!
//! - [`engine`]: `WasmEngine` (one `load(source, options)` for every source and backend; the
//!   step-wise generation API) and `checkLoadOptions`.
//! - [`storage`]: `downloadModel` (prefetch), `listCachedModels`, `deleteCachedModel`,
//!   `storageUsage` (and, with the `test-api` feature, `openModel` for the storage tests).
//! - [`preflight`]: `preflight(source, options)`, what a load would take, before any download.
//! - [`session`]: saved sessions, written and read back layer by layer (`WasmEngine::saveSession`...).
//! - [`contract`]: `contract()`, the error codes, progress phases and defaults JS must agree with.
//! - [`options`]: the option objects as serde structs; [`convert`]: the marshaling convention;
//!   [`source`]: JS bytes or a stored model as the engine's tensor source; [`info`]: `info()`;
//!   `threads` (threaded build only): the CPU thread pool's hooks for its Web Workers; [`hooks`]:
//!   what the JS runtime gives the module so a trap fails the calls in flight (panic hook, locks).

pub mod contract;
pub mod convert;
pub mod engine;
pub mod hooks;
pub mod info;
pub mod options;
pub mod preflight;
pub mod session;
pub mod source;
pub mod storage;
#[cfg(target_feature = "atomics")]
pub mod threads;

pub use convert::to_js_error;

#[wasm_bindgen::prelude::wasm_bindgen(start)]
fn start() {
    hooks::install_panic_hook();
}

/// Why the module last trapped, when the crate knows (see [`crate::budget::AbortReason`]; 0:
/// not known). Read by JS after a trap: it touches no stack or heap, so it works on a crashed
/// instance.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = abortReason)]
pub fn abort_reason() -> u32 {
    crate::budget::abort_reason()
}

/// Bytes of WebAssembly memory the module holds (memory never shrinks: the peak so far).
#[wasm_bindgen::prelude::wasm_bindgen(js_name = wasmMemoryBytes)]
pub fn wasm_memory_bytes() -> f64 {
    core::arch::wasm32::memory_size::<0>() as f64 * 65536.0
}
