//! browser-llm: run quantized LLMs (GGUF) entirely in the browser.
//!
//! Data flow (see docs/ARCHITECTURE.md):
//! source bytes -> [`gguf`] header + tensor infos -> weights in GGUF block layout ([`quant`]) ->
//! [`tokenizer`] built from GGUF metadata -> decoder -> sampler -> incremental detokenizer.
//! [`logits`] sits below both [`backend`] and [`sampling`]: what to read back and host selection.
//!
//! The crate builds natively (tests, the `browser-llm` CLI, benchmarks) and for
//! `wasm32-unknown-unknown` with SIMD128 (the npm package).

pub mod backend;
pub mod budget;
pub mod chat;
pub mod constrain;
pub mod engine;
pub mod error;
pub mod gguf;
pub(crate) mod hash;
pub mod holdback;
pub mod load;
pub mod logits;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod preflight;
pub mod selfcheck;
pub mod session;
pub mod speculate;
pub mod storage;
#[cfg(target_arch = "wasm32")]
pub mod timer;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, ErrorCode, Result};

/// Run a future to completion on this thread: for native callers (CLI, tests) of the async
/// engine API. With the CPU backend every future is ready at once; a GPU readback future is
/// woken by the backend polling its device. On wasm32 nothing may block: there, a future
/// that is not ready at once is an error of the caller (use the async API).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        if cfg!(target_arch = "wasm32") {
            panic!("block_on: the future is not ready; on wasm32 use the async API");
        }
        std::thread::park();
    }
}
