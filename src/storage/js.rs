//! JS bindings of the storage layer (thin; the engine facade builds on them).
//!
//! ```ts
//! type Source = string | string[] | Blob | Blob[];          // URL, split-GGUF part URLs, File(s)
//! interface StorageOptions {
//!   sha256?: string; cache?: boolean; store?: "auto" | "opfs" | "cache"; signal?: AbortSignal;
//!   onProgress?: (p: { phase: "download" | "verify" | "load"; loaded: number; total: number;
//!                      bytesPerSecond: number }) => void;
//!   key?: string; chunkSize?: number; concurrency?: number; retries?: number;
//! }
//! downloadModel(source: Source, options?: StorageOptions): Promise<{ key, size, store, sha256 }>;
//! openModel(source: Source, options?: StorageOptions): Promise<StoredModel>;
//! class StoredModel { key; size; store; parts: [offset, size][];
//!   read(offset, length): Promise<Uint8Array>; readAll(onProgress?): Promise<Uint8Array>;
//!   scanTensors(maxPiece?): Promise<TensorScan>; free(): void }
//! listCachedModels(): Promise<{ key, sources, size, storedBytes, complete, sha256, lastUsedMs, store }[]>;
//! deleteCachedModel(key: string): Promise<void>;
//! storageUsage(): Promise<{ usage, quota, persisted }>;
//! ```
//! Every rejection is an `Error` with a `code` property ([`to_js_error`]).

use std::rc::Rc;

use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;

use super::manifest::DEFAULT_CHUNK_SIZE;
use super::sha::Hasher;
use super::{CachedModel, OpenOptions, Progress, ProgressFn, Source, StoreKind, StoredModel};
use crate::error::{Error, Result};

/// A crate error as a JS `Error` whose `code` is the stable error code.
pub use crate::wasm::to_js_error;

fn obj(fields: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&o, &(*k).into(), v);
    }
    o.into()
}

fn field(o: &JsValue, name: &str) -> Option<JsValue> {
    if !o.is_object() {
        return None;
    }
    Reflect::get(o, &name.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

fn num_field(o: &JsValue, name: &str) -> Result<Option<f64>> {
    match field(o, name) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 => Ok(Some(n)),
            _ => Err(Error::invalid_argument(format!("option {name} must be a non-negative integer"))),
        },
    }
}

fn progress_js(p: Progress) -> JsValue {
    obj(&[
        ("phase", p.phase.into()),
        ("loaded", (p.loaded as f64).into()),
        ("total", (p.total as f64).into()),
        ("bytesPerSecond", p.bytes_per_second.into()),
    ])
}

pub(crate) fn progress_callback(f: Option<JsValue>) -> Result<Option<ProgressFn>> {
    match f {
        None => Ok(None),
        Some(f) => {
            let f: js_sys::Function = f.dyn_into().map_err(|_| Error::invalid_argument("onProgress must be a function"))?;
            Ok(Some(Box::new(move |p| {
                // A throwing callback must not break the download.
                let _ = f.call1(&JsValue::NULL, &progress_js(p));
            })))
        }
    }
}

fn parse_source(v: &JsValue) -> Result<Source> {
    if let Some(s) = v.as_string() {
        return Ok(Source::Url(s));
    }
    if let Some(b) = v.dyn_ref::<web_sys::Blob>() {
        return Ok(Source::Blob(b.clone()));
    }
    if Array::is_array(v) {
        let a: &Array = v.unchecked_ref();
        if a.iter().all(|x| x.is_string()) {
            return Ok(Source::Urls(a.iter().map(|x| x.as_string().unwrap()).collect()));
        }
        if a.iter().all(|x| x.is_instance_of::<web_sys::Blob>()) {
            return Ok(Source::Blobs(a.iter().map(JsCast::unchecked_into).collect()));
        }
    }
    Err(Error::invalid_argument("the model source must be a URL string, a Blob/File, or an array of either"))
}

fn parse_options(o: &JsValue) -> Result<OpenOptions> {
    let mut opts = OpenOptions::default();
    if o.is_undefined() || o.is_null() {
        return Ok(opts);
    }
    if !o.is_object() {
        return Err(Error::invalid_argument("options must be an object"));
    }
    if let Some(v) = field(o, "sha256") {
        opts.sha256 = Some(v.as_string().ok_or_else(|| Error::invalid_argument("sha256 must be a string"))?);
    }
    if let Some(v) = field(o, "cache") {
        opts.cache = v.as_bool().ok_or_else(|| Error::invalid_argument("cache must be a boolean"))?;
    }
    if let Some(v) = field(o, "store") {
        let s = v.as_string().unwrap_or_default();
        opts.store = StoreKind::parse(&s)
            .ok_or_else(|| Error::invalid_argument(format!("store must be \"auto\", \"opfs\" or \"cache\", got {s:?}")))?;
    }
    if let Some(v) = field(o, "signal") {
        opts.signal = Some(v.dyn_into().map_err(|_| Error::invalid_argument("signal must be an AbortSignal"))?);
    }
    opts.on_progress = progress_callback(field(o, "onProgress"))?;
    if let Some(v) = field(o, "key") {
        opts.key = Some(v.as_string().ok_or_else(|| Error::invalid_argument("key must be a string"))?);
    }
    opts.chunk_size = num_field(o, "chunkSize")?.map_or(DEFAULT_CHUNK_SIZE, |n| n as u64);
    if let Some(n) = num_field(o, "concurrency")? {
        opts.concurrency = n as usize;
    }
    if let Some(n) = num_field(o, "retries")? {
        opts.retries = n.min(20.0) as u32;
    }
    Ok(opts)
}

async fn open_js(source: JsValue, options: JsValue) -> Result<StoredModel> {
    let source = parse_source(&source)?;
    let opts = parse_options(&options)?;
    super::open(source, opts).await
}

fn summary(m: &StoredModel) -> JsValue {
    obj(&[
        ("key", m.key().into()),
        ("size", (m.size() as f64).into()),
        ("store", m.store().map_or(JsValue::NULL, |s| s.as_str().into())),
        ("sha256", m.sha256().map_or(JsValue::NULL, Into::into)),
    ])
}

/// Download (or resume, or find in the cache) a model; resolves to `{ key, size, store, sha256 }`.
#[wasm_bindgen(js_name = downloadModel)]
pub async fn download_model(source: JsValue, options: JsValue) -> Result<JsValue, JsValue> {
    let m = open_js(source, options).await.map_err(to_js_error)?;
    Ok(summary(&m))
}

/// Open a model for reading by byte range (downloading it first if needed).
#[wasm_bindgen(js_name = openModel)]
pub async fn open_model(source: JsValue, options: JsValue) -> Result<JsStoredModel, JsValue> {
    let m = open_js(source, options).await.map_err(to_js_error)?;
    Ok(JsStoredModel { inner: Rc::new(m) })
}

/// A complete model, readable by byte range.
#[wasm_bindgen(js_name = StoredModel)]
pub struct JsStoredModel {
    inner: Rc<StoredModel>,
}

impl JsStoredModel {
    /// The Rust model, for the engine facade to load from.
    pub fn model(&self) -> Rc<StoredModel> {
        self.inner.clone()
    }
}

fn wasm_memory_bytes() -> f64 {
    let mem = wasm_bindgen::memory();
    Reflect::get(&mem, &"buffer".into())
        .and_then(|b| Reflect::get(&b, &"byteLength".into()))
        .ok()
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0)
}

#[wasm_bindgen(js_class = StoredModel)]
impl JsStoredModel {
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> String {
        self.inner.key().to_owned()
    }
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> f64 {
        self.inner.size() as f64
    }
    /// `"opfs"`, `"cache"`, or `null` when reading straight from the source.
    #[wasm_bindgen(getter)]
    pub fn store(&self) -> JsValue {
        self.inner.store().map_or(JsValue::NULL, |s| s.as_str().into())
    }
    /// `[offset, size]` of each part.
    #[wasm_bindgen(getter)]
    pub fn parts(&self) -> Array {
        self.inner.parts().iter().map(|&(o, s)| JsValue::from(Array::of2(&(o as f64).into(), &(s as f64).into()))).collect()
    }

    /// Bytes `offset .. offset + length` of the model.
    pub fn read(&self, offset: f64, length: u32) -> Promise {
        let m = self.inner.clone();
        future_to_promise(async move {
            if !(offset >= 0.0 && offset.fract() == 0.0) {
                return Err(to_js_error(Error::invalid_argument("offset must be a non-negative integer")));
            }
            Ok(m.read_js(offset as u64, length as usize).await.map_err(to_js_error)?.into())
        })
    }

    /// The whole model as one `Uint8Array` (assembled on the JS side). Progress phase `"load"`.
    #[wasm_bindgen(js_name = readAll)]
    pub fn read_all(&self, on_progress: JsValue) -> Promise {
        let m = self.inner.clone();
        future_to_promise(async move {
            let cb = progress_callback(Some(on_progress).filter(|v| !v.is_undefined() && !v.is_null())).map_err(to_js_error)?;
            let out = Uint8Array::new_with_length(m.size() as u32);
            let mut rep = super::progress::Reporter::new(cb);
            rep.start("load", 0, m.size());
            let step = DEFAULT_CHUNK_SIZE;
            let mut at = 0;
            while at < m.size() {
                let n = step.min(m.size() - at);
                let b = m.read_js(at, n as usize).await.map_err(to_js_error)?;
                out.set(&b, at as u32);
                rep.add(n);
                at += n;
            }
            rep.emit();
            Ok(out.into())
        })
    }

    /// Read every tensor of every part, in file order, in pieces of at most `maxPiece` bytes (default
    /// 8 MiB), dropping each piece after hashing it: the GPU upload's access pattern. Resolves to
    /// `{ tensors: [{ name, offset, nBytes }], tensorBytes, largestTensor, sha256 (of the tensor
    /// bytes in that order), wasmMemoryBefore, wasmMemoryAfter }` (wasm memory only grows, so
    /// `wasmMemoryAfter` is its peak).
    #[wasm_bindgen(js_name = scanTensors)]
    pub fn scan_tensors(&self, max_piece: Option<u32>) -> Promise {
        let m = self.inner.clone();
        future_to_promise(async move {
            let before = wasm_memory_bytes();
            let max_piece = max_piece.unwrap_or(DEFAULT_CHUNK_SIZE as u32) as usize;
            let list = Array::new();
            let (mut total, mut largest) = (0u64, 0u64);
            let mut h = Hasher::default();
            for part in 0..m.parts().len() {
                let g = m.header_of_part(part).await.map_err(to_js_error)?;
                let mut ts: Vec<_> = g.tensors.iter().collect();
                ts.sort_by_key(|t| t.offset);
                for t in ts {
                    m.read_tensor(part, &g, t, max_piece, |_, bytes| {
                        h.update(bytes);
                        Ok(())
                    })
                    .await
                    .map_err(to_js_error)?;
                    let off = m.parts()[part].0 + g.data_offset + t.offset;
                    list.push(&obj(&[
                        ("name", t.name.as_str().into()),
                        ("offset", (off as f64).into()),
                        ("nBytes", (t.n_bytes as f64).into()),
                    ]));
                    total += t.n_bytes;
                    largest = largest.max(t.n_bytes);
                }
            }
            Ok(obj(&[
                ("tensors", list.into()),
                ("tensorBytes", (total as f64).into()),
                ("largestTensor", (largest as f64).into()),
                ("sha256", h.finish_hex().into()),
                ("wasmMemoryBefore", before.into()),
                ("wasmMemoryAfter", wasm_memory_bytes().into()),
            ]))
        })
    }
}

fn cached_js(c: &CachedModel) -> JsValue {
    obj(&[
        ("key", c.key.as_str().into()),
        ("sources", c.sources.iter().map(|s| JsValue::from(s.as_str())).collect::<Array>().into()),
        ("size", (c.size as f64).into()),
        ("storedBytes", (c.stored_bytes as f64).into()),
        ("complete", c.complete.into()),
        ("sha256", c.sha256.as_deref().map_or(JsValue::NULL, Into::into)),
        ("lastUsedMs", c.last_used_ms.into()),
        ("store", c.store.as_str().into()),
    ])
}

/// Every cached model (complete or partial), most recently used first.
#[wasm_bindgen(js_name = listCachedModels)]
pub async fn list_cached_models() -> Result<JsValue, JsValue> {
    let list = super::list().await.map_err(to_js_error)?;
    Ok(list.iter().map(cached_js).collect::<Array>().into())
}

/// Delete a cached model (complete or partial) from every store.
#[wasm_bindgen(js_name = deleteCachedModel)]
pub async fn delete_cached_model(key: String) -> Result<(), JsValue> {
    super::delete(&key).await.map_err(to_js_error)
}

/// `{ usage, quota, persisted }` of this origin's storage (`persisted` is `null` where unknown).
#[wasm_bindgen(js_name = storageUsage)]
pub async fn storage_usage() -> Result<JsValue, JsValue> {
    let u = super::usage().await.map_err(to_js_error)?;
    let persisted = super::quota::persisted().await;
    Ok(obj(&[
        ("usage", u.usage.into()),
        ("quota", u.quota.into()),
        ("persisted", persisted.map_or(JsValue::NULL, Into::into)),
    ]))
}
