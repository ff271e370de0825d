//! `sleep_ms` on the JS event loop (`setTimeout` on `globalThis`: a page or a Worker), for the few
//! places that wait in wasm32: download retries (`storage`) and a lost GPU device's report
//! (`backend::gpu`); and [`Deadline`], a promise that rejects after a time (the downloads'
//! inactivity timeout).

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(cb: &js_sys::Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

/// What a [`Deadline`]'s promise rejects with.
const DEADLINE: &str = "browser-llm: deadline passed";

/// A promise that rejects after `ms` milliseconds; its timer is cleared when the deadline is
/// dropped. Race it against a promise to bound the wait ([`Deadline::passed`] tells its rejection).
pub struct Deadline {
    promise: Promise,
    timer: JsValue,
}

impl Deadline {
    pub fn new(ms: u32) -> Deadline {
        let mut timer = JsValue::UNDEFINED;
        let promise = Promise::new(&mut |_, reject| {
            let f = Closure::once_into_js(move || {
                let _ = reject.call1(&JsValue::NULL, &JsValue::from_str(DEADLINE));
            });
            timer = set_timeout(f.unchecked_ref(), ms.min(i32::MAX as u32) as i32);
        });
        Deadline { promise, timer }
    }

    pub fn promise(&self) -> &Promise {
        &self.promise
    }

    /// Whether `v` (a rejection) is a deadline's.
    pub fn passed(v: &JsValue) -> bool {
        v.as_string().is_some_and(|s| s == DEADLINE)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        clear_timeout(&self.timer);
    }
}

/// Resolve after `ms` milliseconds, letting other tasks run meanwhile.
pub async fn sleep_ms(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    let _ = JsFuture::from(p).await;
}
