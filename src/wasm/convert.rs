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

/// Options object -> `T` (`undefined`/`null` -> `T::default()`); an unknown key (a misspelled
/// option) or a wrong type is `INVALID_ARGUMENT` naming `what`. (serde-wasm-bindgen reads only
/// the struct's own fields, so `deny_unknown_fields` alone would let a typo through.)
pub fn from_js<T: for<'de> Deserialize<'de> + Default>(v: JsValue, what: &str) -> Result<T> {
    if v.is_undefined() || v.is_null() {
        return Ok(T::default());
    }
    if !v.is_object() || js_sys::Array::is_array(&v) {
        return Err(Error::invalid_argument(format!("{what} must be an object")));
    }
    let known = struct_fields::<T>();
    for key in js_sys::Object::keys(v.unchecked_ref::<js_sys::Object>()).iter().filter_map(|k| k.as_string()) {
        if !known.contains(&key.as_str()) {
            return Err(Error::invalid_argument(format!("unknown {what} key \"{key}\" (known: {})", known.join(", "))));
        }
    }
    serde_wasm_bindgen::from_value(v).map_err(|e| Error::invalid_argument(format!("{what}: {e}")))
}

/// The (renamed) field names of a derived `Deserialize` struct, as serde passes them to
/// `deserialize_struct`.
fn struct_fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> std::result::Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> std::result::Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
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

/// A JS value read through JSON (numbers keep integer-ness), or `None` for undefined/null.
pub fn json_value(v: &JsValue, what: &str) -> Result<Option<serde_json::Value>> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    let text = js_sys::JSON::stringify(v)
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| Error::invalid_argument(format!("{what} must be JSON")))?;
    serde_json::from_str(&text).map(Some).map_err(|e| Error::invalid_argument(format!("{what} must be JSON: {e}")))
}
