//! Rust errors as JS errors: an `Error` whose `name` is "BrowserLlmError" and whose `code` is the
//! stable code string (e.g. "INTEGRITY"), so callers can branch on `err.code`.

use wasm_bindgen::JsValue;

use crate::error::Error;

pub fn to_js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    err.set_name("BrowserLlmError");
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&err, &JsValue::from_str("code"), &JsValue::from_str(e.code.as_str()));
    err.into()
}
