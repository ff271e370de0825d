//! The chat-template renderer module of the npm package (`wasm/browser_llm_template.wasm`, built
//! by pkg-scripts/build with `cargo build --release --target wasm32-unknown-unknown --example
//! template_renderer`): `src/chat/render.rs` and the budget allocator (`src/budget.rs`), included
//! as they are, in a small wasm module with no imports. The JS runtime (`src/js/runtime.js`,
//! `templateRenderer`) renders every chat template in an instance of it: past its memory budget
//! the render aborts, which traps that instance only; the runtime drops it and the engine's call
//! fails with `INVALID_ARGUMENT` while every engine keeps working.
//!
//! ABI (JSON in, JSON out): `template_alloc(len) -> ptr` for the job's bytes;
//! `template_render(ptr, len) -> out_len` renders a `RenderJob` and keeps its `RenderReply`, read
//! at `template_output()`.

#[path = "../src/budget.rs"]
#[allow(dead_code)]
mod budget;
#[path = "../src/chat/render.rs"]
mod render;

use std::cell::RefCell;

use render::{RenderJob, RenderReply};

thread_local! {
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Room for `len` bytes of input, owned by the next `template_render`.
#[no_mangle]
pub extern "C" fn template_alloc(len: usize) -> *mut u8 {
    let mut v = Vec::<u8>::with_capacity(len.max(1));
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

/// Render the JSON `RenderJob` at `ptr` (from `template_alloc(len)`); returns the length of the
/// JSON `RenderReply` at `template_output()`.
///
/// # Safety
/// `ptr` must come from `template_alloc(len)`, with `len` bytes written.
#[no_mangle]
pub unsafe extern "C" fn template_render(ptr: *mut u8, len: usize) -> usize {
    let input = unsafe { Vec::from_raw_parts(ptr, len, len.max(1)) };
    let reply = match serde_json::from_slice::<RenderJob>(&input) {
        Ok(job) => render::run(&job),
        Err(e) => RenderReply::Failed(format!("a malformed render job: {e}")),
    };
    drop(input);
    let out = serde_json::to_vec(&reply).unwrap_or_default();
    OUTPUT.with(|o| {
        *o.borrow_mut() = out;
        o.borrow().len()
    })
}

/// The reply of the last `template_render`.
#[no_mangle]
pub extern "C" fn template_output() -> *const u8 {
    OUTPUT.with(|o| o.borrow().as_ptr())
}
