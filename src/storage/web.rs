//! Small helpers over the JS global scope that work the same on a page and in a Worker:
//! `fetch`, `navigator.storage`, `caches`, JS exception -> [`Error`] mapping, and
//! JS byte arrays <-> `Blob` ([`blob_bytes`], [`blob_of`]), and the Web Locks API ([`with_lock`]).
//! Nothing here assumes `window`: globals are looked up on `globalThis`.

use js_sys::{Array, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::error::{Error, ErrorCode, Result};

#[wasm_bindgen]
extern "C" {
    /// `fetch(req)`'s promise (`storage::http::Requests` awaits it under its inactivity timeout).
    #[wasm_bindgen(js_name = fetch)]
    pub fn fetch_promise(req: &web_sys::Request) -> Promise;
}

/// `globalThis[name]`, if defined.
pub fn global_get(name: &str) -> Option<JsValue> {
    Reflect::get(&js_sys::global(), &name.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

fn get(obj: &JsValue, name: &str) -> Option<JsValue> {
    Reflect::get(obj, &name.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

/// `navigator.storage`, if the context has one.
pub fn storage_manager() -> Option<web_sys::StorageManager> {
    get(&global_get("navigator")?, "storage").map(JsCast::unchecked_into)
}

/// Whether OPFS is usable here (`navigator.storage.getDirectory` exists).
pub fn has_opfs() -> bool {
    storage_manager().and_then(|s| get(&s, "getDirectory")).is_some_and(|f| f.is_function())
}

pub fn caches() -> Option<web_sys::CacheStorage> {
    global_get("caches").map(JsCast::unchecked_into)
}

pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Await a promise, mapping a rejection to an [`Error`] with `code` (or the code its DOMException
/// name implies) and `context` in the message.
pub async fn wait(p: Promise, code: ErrorCode, context: &str) -> Result<JsValue> {
    JsFuture::from(p).await.map_err(|e| js_error(e, code, context))
}

/// Map a thrown JS value to an [`Error`]. `QuotaExceededError` and `AbortError` keep their meaning
/// whatever `code` the caller expected.
pub fn js_error(e: JsValue, code: ErrorCode, context: &str) -> Error {
    let name = get(&e, "name").and_then(|v| v.as_string()).unwrap_or_default();
    let msg = get(&e, "message").and_then(|v| v.as_string()).or_else(|| e.as_string()).unwrap_or_else(|| format!("{e:?}"));
    let code = match name.as_str() {
        "QuotaExceededError" => ErrorCode::QuotaExceeded,
        "AbortError" => ErrorCode::Aborted,
        _ => code,
    };
    if name.is_empty() {
        Error::new(code, format!("{context}: {msg}"))
    } else {
        Error::new(code, format!("{context}: {name}: {msg}"))
    }
}

/// An internal error for a JS call that should not fail.
pub fn internal(context: &str) -> impl Fn(JsValue) -> Error + '_ {
    move |e| js_error(e, ErrorCode::Internal, context)
}

/// Read a whole `Blob` (or a slice of one) as bytes, kept on the JS side.
pub async fn blob_bytes(b: &web_sys::Blob, code: ErrorCode, context: &str) -> Result<Uint8Array> {
    let buf = wait(b.array_buffer(), code, context).await?;
    Ok(Uint8Array::new(&buf))
}

/// Let a promise settle without an "unhandled rejection" report (e.g. cancelling a stream that an
/// abort already errored).
pub fn ignore_rejection(p: Promise) {
    wasm_bindgen_futures::spawn_local(async move {
        let _ = JsFuture::from(p).await;
    });
}

/// Concatenate `pieces` into one JS Blob (no copy into wasm memory).
pub fn blob_of(pieces: &[Uint8Array]) -> Result<web_sys::Blob> {
    let arr: Array = pieces.iter().collect();
    web_sys::Blob::new_with_u8_array_sequence(&arr).map_err(internal("building a Blob"))
}

thread_local! {
    /// The promise the JS runtime rejects when this module instance traps (see `wasm::hooks`).
    static TRAPPED: std::cell::RefCell<Option<Promise>> = const { std::cell::RefCell::new(None) };
}

/// Hand over the runtime's `trapped` promise: a held lock is released when it rejects, so a module
/// that traps while holding one does not block every other tab for good.
pub fn release_locks_on_trap(trapped: Promise) {
    TRAPPED.with(|t| *t.borrow_mut() = Some(trapped));
}

/// Run `f` holding the Web Lock `name` (`navigator.locks`: one holder across every tab and Worker
/// of the origin), waiting for another holder to finish first. Aborting `signal` while waiting is
/// `ABORTED`. Where the context has no Web Locks, `f` runs unlocked.
pub async fn with_lock<T>(name: &str, signal: Option<&web_sys::AbortSignal>, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    with_lock_mode(name, false, signal, f).await
}

/// [`with_lock`] in `shared` mode when asked: any number of shared holders at once, none while an
/// exclusive holder has the lock (readers of a stored model against its writers and deleters).
pub async fn with_lock_mode<T>(
    name: &str,
    shared: bool,
    signal: Option<&web_sys::AbortSignal>,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let Some(locks) = global_get("navigator").and_then(|n| get(&n, "locks")) else { return f.await };
    let Some(request) = get(&locks, "request").and_then(|r| r.dyn_into::<js_sys::Function>().ok()) else { return f.await };
    // `granted` resolves when the lock is ours; the lock is held until `held` resolves.
    let mut grant = None;
    let granted = Promise::new(&mut |resolve, _| grant = Some(resolve));
    let mut release = None;
    let held = Promise::new(&mut |resolve, _| release = Some(resolve));
    let (Some(grant), Some(release)) = (grant, release) else { return f.await };
    // The lock goes when `held` resolves or the module traps (Rust never runs again to resolve it).
    let hold = match TRAPPED.with(|t| t.borrow().clone()) {
        Some(trapped) => Promise::race(&Array::of2(&held, &trapped)),
        None => held,
    };
    let on_grant = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
        let _ = grant.call0(&JsValue::NULL);
        hold.into()
    });
    let opts = js_sys::Object::new();
    if shared {
        Reflect::set(&opts, &"mode".into(), &"shared".into()).map_err(internal("lock options"))?;
    }
    if let Some(s) = signal {
        Reflect::set(&opts, &"signal".into(), s).map_err(internal("lock options"))?;
    }
    let req: Promise = request
        .call3(&locks, &name.into(), &opts, &on_grant)
        .map_err(internal("navigator.locks.request"))?
        .unchecked_into();
    // The request's promise settles only after the release, or rejects when aborted while waiting.
    let waited = JsFuture::from(Promise::race(&Array::of2(&granted, &req))).await;
    ignore_rejection(req);
    if let Err(e) = waited {
        let _ = release.call0(&JsValue::NULL);
        if signal.is_some_and(|s| s.aborted()) {
            return Err(Error::new(ErrorCode::Aborted, "aborted while another tab or Worker was storing this model"));
        }
        return Err(js_error(e, ErrorCode::Internal, "waiting for the storage lock"));
    }
    let out = f.await;
    let _ = release.call0(&JsValue::NULL);
    out
}
