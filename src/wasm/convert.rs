//! Values across the JS boundary, one convention for the whole facade: options come in through
//! serde ([`from_js`]), results go out as plain JSON-compatible objects ([`to_js`]), progress goes
//! out through [`progress_callback`], and every [`Error`] becomes a JS `Error` whose `name` is
//! "BrowserLlmError" and whose `code` is the stable code string ([`to_js_error`]).

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::error::{Error, Result};
use crate::storage::{Progress, ProgressFn};

pub fn to_js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    err.set_name("BrowserLlmError");
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&err, &JsValue::from_str("code"), &JsValue::from_str(e.code.as_str()));
    err.into()
}

/// `Result` of an exported function.
pub type JsResult<T> = std::result::Result<T, JsValue>;

/// Options object -> `T` (`undefined`/`null` -> `T::default()`); a wrong key or type is
/// `INVALID_ARGUMENT` naming `what`.
pub fn from_js<T: for<'de> Deserialize<'de> + Default>(v: JsValue, what: &str) -> Result<T> {
    if v.is_undefined() || v.is_null() {
        return Ok(T::default());
    }
    if !v.is_object() {
        return Err(Error::invalid_argument(format!("{what} must be an object")));
    }
    serde_wasm_bindgen::from_value(v).map_err(|e| Error::invalid_argument(format!("{what}: {e}")))
}

pub fn to_js<T: Serialize>(v: &T) -> JsResult<JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| to_js_error(Error::internal(e.to_string())))
}

/// A JS function option (`onProgress`), or `None` when absent; anything else is `INVALID_ARGUMENT`.
pub fn function(v: &JsValue, what: &str) -> Result<Option<js_sys::Function>> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.clone().dyn_into().map(Some).map_err(|_| Error::invalid_argument(format!("{what} must be a function")))
}

/// An `AbortSignal` option, or `None` when absent.
pub fn abort_signal(v: &JsValue) -> Result<Option<web_sys::AbortSignal>> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.clone().dyn_into().map(Some).map_err(|_| Error::invalid_argument("signal must be an AbortSignal"))
}

/// `f` as a storage progress callback: `f({ phase, loaded, total, bytesPerSecond })`. A throwing
/// callback must not break a download or a load: its exception is ignored.
pub fn progress_callback(f: Option<&js_sys::Function>) -> Option<ProgressFn> {
    let f = f?.clone();
    Some(Box::new(move |p: Progress| {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Js {
            phase: &'static str,
            loaded: f64,
            total: f64,
            bytes_per_second: f64,
        }
        let js = Js { phase: p.phase, loaded: p.loaded as f64, total: p.total as f64, bytes_per_second: p.bytes_per_second };
        if let Ok(v) = to_js(&js) {
            let _ = f.call1(&JsValue::NULL, &v);
        }
    }))
}
