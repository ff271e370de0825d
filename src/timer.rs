//! `sleep_ms` on the JS event loop (`setTimeout` on `globalThis`: a page or a Worker), for the few
//! places that wait in wasm32: download retries (`storage`) and a lost GPU device's report
//! (`backend::gpu`).

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(cb: &js_sys::Function, ms: i32) -> JsValue;
}

/// Resolve after `ms` milliseconds, letting other tasks run meanwhile.
pub async fn sleep_ms(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    let _ = JsFuture::from(p).await;
}
