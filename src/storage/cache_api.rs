//! Cache API store, the fallback where OPFS is missing.
//!
//! Layout: cache `browser-llm-v1`; the same files as the OPFS store ([`super::opfs`]), each a
//! `Response` stored under the synthetic URL `https://browser-llm.invalid/<entry id>/<name>` (never
//! fetched: `.invalid` cannot resolve). `cache.put` stores a response whole or not at all.

use js_sys::{Array, Uint8Array};
use wasm_bindgen::JsCast;
use web_sys::{Blob, Cache, Request, Response};

use super::web::{blob_of, caches, internal, wait};
use crate::error::{Error, ErrorCode, Result};

const CACHE_NAME: &str = "browser-llm-v1";
/// Saved sessions ([`crate::session`]), apart from the models.
pub const SESSIONS_CACHE: &str = "browser-llm-sessions-v1";
const BASE: &str = "https://browser-llm.invalid/";

pub struct CacheStore {
    cache: Cache,
}

fn url(id: &str, name: &str) -> String {
    format!("{BASE}{id}/{name}")
}

impl CacheStore {
    pub async fn open() -> Result<CacheStore> {
        Self::open_named(CACHE_NAME).await
    }

    /// The store in cache `name`.
    pub async fn open_named(name: &str) -> Result<CacheStore> {
        let cs = caches().ok_or_else(|| Error::invalid_argument("the Cache API (caches) is not available in this context"))?;
        let cache = wait(cs.open(name), ErrorCode::Internal, "opening the Cache API store").await?.unchecked_into();
        Ok(CacheStore { cache })
    }

    pub async fn read(&self, id: &str, name: &str) -> Result<Option<Blob>> {
        let r = wait(self.cache.match_with_str(&url(id, name)), ErrorCode::Internal, "reading the Cache API store").await?;
        if r.is_undefined() {
            return Ok(None);
        }
        let resp: Response = r.unchecked_into();
        let b = resp.blob().map_err(internal("reading a cached response"))?;
        Ok(Some(wait(b, ErrorCode::Internal, "reading a cached response").await?.unchecked_into()))
    }

    pub async fn write(&self, id: &str, name: &str, pieces: &[Uint8Array]) -> Result<()> {
        let blob = blob_of(pieces)?;
        let resp = Response::new_with_opt_blob(Some(&blob)).map_err(internal("building a Response"))?;
        wait(self.cache.put_with_str(&url(id, name), &resp), ErrorCode::Internal, "writing to the Cache API store").await.map(drop)
    }

    pub async fn write_text(&self, id: &str, name: &str, text: &str) -> Result<()> {
        self.write(id, name, &[Uint8Array::from(text.as_bytes())]).await
    }

    async fn urls(&self) -> Result<Vec<String>> {
        let keys: Array = wait(self.cache.keys(), ErrorCode::Internal, "listing the Cache API store").await?.unchecked_into();
        Ok(keys.iter().map(|r| r.unchecked_into::<Request>().url()).collect())
    }

    pub async fn remove(&self, id: &str) -> Result<()> {
        let prefix = url(id, "");
        for u in self.urls().await?.into_iter().filter(|u| u.starts_with(&prefix)) {
            wait(self.cache.delete_with_str(&u), ErrorCode::Internal, "deleting from the Cache API store").await?;
        }
        Ok(())
    }

    /// Entry ids that have a file called `name`.
    pub async fn ids_with(&self, name: &str) -> Result<Vec<String>> {
        let suffix = format!("/{name}");
        Ok(self
            .urls()
            .await?
            .into_iter()
            .filter_map(|u| u.strip_prefix(BASE)?.strip_suffix(&suffix).map(str::to_owned))
            .collect())
    }
}
