//! The persistent store: OPFS or the Cache API behind one interface, addressed by cache key.
//!
//! Each model is an entry whose id is the first 32 hex digits of sha256(key) (keys are URLs of any
//! length and characters; ids are safe file names). An entry holds `manifest.json` and one file per
//! chunk, `p<part>-c<chunk>`. Writes that fail for lack of space come back as `QUOTA_EXCEEDED`.

use js_sys::Uint8Array;
use web_sys::Blob;

use super::cache_api::CacheStore;
use super::manifest::Manifest;
use super::opfs::Opfs;
use super::sha::sha256_hex;
use super::kind::StoreKind;
use super::web::{has_opfs, wait};
use crate::error::{Error, ErrorCode, Result};

const MANIFEST: &str = "manifest.json";

pub enum Store {
    Opfs(Opfs),
    Cache(CacheStore),
}

pub fn entry_id(key: &str) -> String {
    sha256_hex(key.as_bytes())[..32].to_owned()
}

pub fn chunk_name(part: usize, chunk: usize) -> String {
    format!("p{part}-c{chunk}")
}

impl Store {
    /// Open the store of `kind`; `Auto` picks OPFS when `navigator.storage.getDirectory` exists and
    /// the Cache API otherwise.
    pub async fn open(kind: StoreKind) -> Result<Store> {
        match kind {
            StoreKind::Opfs => Ok(Store::Opfs(Opfs::open().await?)),
            StoreKind::CacheApi => Ok(Store::Cache(CacheStore::open().await?)),
            StoreKind::Auto if has_opfs() => match Opfs::open().await {
                Ok(o) => Ok(Store::Opfs(o)),
                // OPFS can exist but be refused (e.g. some private modes): fall back.
                Err(_) => Ok(Store::Cache(CacheStore::open().await?)),
            },
            StoreKind::Auto => Ok(Store::Cache(CacheStore::open().await?)),
        }
    }

    /// The store of saved sessions ([`super::sessions`]): OPFS where it opens, else the Cache API,
    /// each in a tree of its own.
    pub async fn sessions() -> Result<Store> {
        if !has_opfs() && super::web::caches().is_none() {
            return Err(Error::invalid_argument(
                "saved sessions need browser storage (OPFS or the Cache API), which this context lacks; \
                 keep the bytes of exportSession() yourself and give them to importSession()",
            ));
        }
        if has_opfs() {
            if let Ok(o) = Opfs::open_at(super::opfs::SESSIONS_DIR).await {
                return Ok(Store::Opfs(o));
            }
        }
        Ok(Store::Cache(CacheStore::open_named(super::cache_api::SESSIONS_CACHE).await?))
    }

    /// A file of entry `id`, `None` if either is missing.
    pub async fn file(&self, id: &str, name: &str) -> Result<Option<Blob>> {
        self.read_file(id, name).await
    }

    /// Replace a file of entry `id` with the concatenation of `pieces` (atomically).
    pub async fn write_file(&self, id: &str, name: &str, pieces: &[Uint8Array]) -> Result<()> {
        match self {
            Store::Opfs(s) => s.write(id, name, pieces, false).await,
            Store::Cache(s) => s.write(id, name, pieces).await,
        }
    }

    /// Ids of the entries that hold a file `name`, or (OPFS) every entry.
    pub async fn ids_with(&self, name: &str) -> Result<Vec<String>> {
        match self {
            Store::Opfs(s) => s.ids().await,
            Store::Cache(s) => s.ids_with(name).await,
        }
    }

    /// Every store this context has (for listing and deleting across both).
    pub async fn all() -> Vec<Store> {
        let mut v = Vec::new();
        if has_opfs() {
            if let Ok(o) = Opfs::open().await {
                v.push(Store::Opfs(o));
            }
        }
        if let Ok(c) = CacheStore::open().await {
            v.push(Store::Cache(c));
        }
        v
    }

    pub fn kind(&self) -> StoreKind {
        match self {
            Store::Opfs(_) => StoreKind::Opfs,
            Store::Cache(_) => StoreKind::CacheApi,
        }
    }

    async fn read_file(&self, id: &str, name: &str) -> Result<Option<Blob>> {
        match self {
            Store::Opfs(s) => s.read(id, name).await,
            Store::Cache(s) => s.read(id, name).await,
        }
    }

    async fn manifest_of(&self, id: &str) -> Result<Option<Manifest>> {
        let Some(b) = self.read_file(id, MANIFEST).await? else { return Ok(None) };
        let text = wait(b.text(), ErrorCode::Internal, "reading a manifest").await?.as_string().unwrap_or_default();
        Ok(Manifest::from_json(&text))
    }

    /// The manifest stored for `key`. An unreadable or inconsistent one is removed with its entry
    /// (never trusted); so is one whose key differs (an id collision).
    pub async fn load_manifest(&self, key: &str) -> Result<Option<Manifest>> {
        let id = entry_id(key);
        match self.manifest_of(&id).await? {
            Some(m) if m.key == key => Ok(Some(m)),
            _ => {
                self.remove_id(&id).await?;
                Ok(None)
            }
        }
    }

    pub async fn save_manifest(&self, m: &Manifest) -> Result<()> {
        let id = entry_id(&m.key);
        let json = m.to_json();
        match self {
            Store::Opfs(s) => s.write_text(&id, MANIFEST, &json).await,
            Store::Cache(s) => s.write_text(&id, MANIFEST, &json).await,
        }
    }

    pub async fn write_chunk(&self, key: &str, part: usize, chunk: usize, pieces: &[Uint8Array]) -> Result<()> {
        let (id, name) = (entry_id(key), chunk_name(part, chunk));
        match self {
            Store::Opfs(s) => s.write(&id, &name, pieces, true).await,
            Store::Cache(s) => s.write(&id, &name, pieces).await,
        }
    }

    /// The stored bytes of one chunk, as a (disk-backed) Blob; `None` if missing.
    pub async fn chunk(&self, key: &str, part: usize, chunk: usize) -> Result<Option<Blob>> {
        self.read_file(&entry_id(key), &chunk_name(part, chunk)).await
    }

    pub async fn remove(&self, key: &str) -> Result<()> {
        self.remove_id(&entry_id(key)).await
    }

    pub async fn remove_id(&self, id: &str) -> Result<()> {
        match self {
            Store::Opfs(s) => s.remove(id).await,
            Store::Cache(s) => s.remove(id).await,
        }
    }

    /// Every readable manifest in this store.
    pub async fn manifests(&self) -> Result<Vec<Manifest>> {
        let ids = match self {
            Store::Opfs(s) => s.ids().await?,
            Store::Cache(s) => s.ids_with(MANIFEST).await?,
        };
        let mut out = Vec::new();
        for id in ids {
            if let Some(m) = self.manifest_of(&id).await? {
                out.push(m);
            }
        }
        Ok(out)
    }
}

/// Turn a failed write into the error the caller sees: a quota failure says so plainly.
pub fn write_error(e: Error, written: u64, total: u64) -> Error {
    if e.code == ErrorCode::QuotaExceeded {
        Error::new(
            ErrorCode::QuotaExceeded,
            format!(
                "browser storage is full: it took {written} of the model's {total} bytes; the partial copy was removed. \
                 Free space (delete cached models) and try again. ({})",
                e.message
            ),
        )
    } else {
        e
    }
}
