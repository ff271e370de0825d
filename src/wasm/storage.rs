//! Browser storage exports (the storage itself is `crate::storage`).
//!
//! Public API (documented in README and `src/js/index.d.ts`):
//! ```ts
//! type Source = string | string[] | Blob | Blob[];          // URL, split-GGUF part URLs, File(s)
//! downloadModel(source, { sha256?, cache?, store?, signal?, onProgress?, key?, chunkSize?,
//!               concurrency?, retries?, inactivityTimeout?, hfEndpoint?, persist? })
//!   : Promise<{ key, size, store, sha256 }>;   // prefetch
//! listCachedModels(): Promise<{ key, sources, size, storedBytes, complete, sha256, lastUsedMs, store }[]>;
//! deleteCachedModel(key: string): Promise<void>;
//! storageUsage(): Promise<{ usage, quota, persisted }>;
//! ```
//! With the `test-api` cargo feature (the storage tests' build, not the published package) also
//! `openModel(source, options): Promise<StoredModel>` with `key`, `size`, `store`, `parts`,
//! `read(offset, length)` and `readAll()`, to compare stored bytes with the served file.
//! Every rejection is an `Error` with a `code` property.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::convert::{from_js, to_js, to_js_error, JsResult};
use super::options::JsStorageOptions;
use crate::error::Result;
use crate::storage::StoredModel;

async fn open(source: JsValue, options: JsValue) -> Result<StoredModel> {
    let source = super::source::parse_source(&source)?;
    let opts = from_js::<JsStorageOptions>(options, "storage options")?.check()?;
    crate::storage::open(source, opts).await
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Downloaded<'a> {
    key: &'a str,
    size: u64,
    store: Option<&'static str>,
    sha256: Option<&'a str>,
}

/// Download (or resume, or find in the cache) a model without loading it: a prefetch. Resolves to
/// `{ key, size, store, sha256 }`.
#[wasm_bindgen(js_name = downloadModel)]
pub async fn download_model(source: JsValue, options: JsValue) -> JsResult<JsValue> {
    let m = open(source, options).await.map_err(to_js_error)?;
    to_js(&Downloaded { key: m.key(), size: m.size(), store: m.store().map(|s| s.as_str()), sha256: m.sha256() })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Cached<'a> {
    key: &'a str,
    sources: &'a [String],
    size: u64,
    stored_bytes: u64,
    complete: bool,
    sha256: Option<&'a str>,
    last_used_ms: f64,
    store: &'static str,
}

/// Every cached model (complete or partial), most recently used first.
#[wasm_bindgen(js_name = listCachedModels)]
pub async fn list_cached_models() -> JsResult<JsValue> {
    let list = crate::storage::list().await.map_err(to_js_error)?;
    let out: Vec<Cached> = list
        .iter()
        .map(|c| Cached {
            key: &c.key,
            sources: &c.sources,
            size: c.size,
            stored_bytes: c.stored_bytes,
            complete: c.complete,
            sha256: c.sha256.as_deref(),
            last_used_ms: c.last_used_ms,
            store: c.store.as_str(),
        })
        .collect();
    to_js(&out)
}

/// Delete a cached model (complete or partial) from every store.
#[wasm_bindgen(js_name = deleteCachedModel)]
pub async fn delete_cached_model(key: String) -> JsResult<()> {
    crate::storage::delete(&key).await.map_err(to_js_error)
}

#[derive(Serialize)]
struct StorageUsage {
    usage: f64,
    quota: f64,
    persisted: Option<bool>,
}

/// `{ usage, quota, persisted }` of this origin's storage (`persisted` is `null` where unknown).
#[wasm_bindgen(js_name = storageUsage)]
pub async fn storage_usage() -> JsResult<JsValue> {
    let u = crate::storage::usage().await.map_err(to_js_error)?;
    let persisted = crate::storage::quota::persisted().await;
    to_js(&StorageUsage { usage: u.usage, quota: u.quota, persisted })
}

#[cfg(feature = "test-api")]
pub use test_api::*;

#[cfg(feature = "test-api")]
mod test_api {
    use std::rc::Rc;

    use js_sys::{Array, Promise, Uint8Array};
    use wasm_bindgen::prelude::*;
    use wasm_bindgen_futures::future_to_promise;

    use super::open;
    use crate::error::Error;
    use crate::storage::StoredModel;
    use crate::wasm::convert::{to_js_error, JsResult};

    /// Open a model for reading by byte range (downloading it first if needed). Tests only.
    #[wasm_bindgen(js_name = openModel)]
    pub async fn open_model(source: JsValue, options: JsValue) -> JsResult<JsStoredModel> {
        let m = open(source, options).await.map_err(to_js_error)?;
        Ok(JsStoredModel { inner: Rc::new(m) })
    }

    /// A complete model, readable by byte range. Tests only.
    #[wasm_bindgen(js_name = StoredModel)]
    pub struct JsStoredModel {
        inner: Rc<StoredModel>,
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

        /// The whole model as one `Uint8Array`, assembled on the JS side in 8 MiB reads.
        #[wasm_bindgen(js_name = readAll)]
        pub fn read_all(&self) -> Promise {
            let m = self.inner.clone();
            future_to_promise(async move {
                let size = u32::try_from(m.size()).map_err(|_| to_js_error(Error::invalid_argument("model over 4 GiB")))?;
                let out = Uint8Array::new_with_length(size);
                let step = 8u32 << 20;
                let mut at = 0u32;
                while at < size {
                    let n = step.min(size - at);
                    let b = m.read_js(at as u64, n as usize).await.map_err(to_js_error)?;
                    out.set(&b, at);
                    at += n;
                }
                Ok(out.into())
            })
        }
    }
}
