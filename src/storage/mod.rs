//! Model bytes in browser storage: resumable, verified, quota-aware downloads from a URL or a local
//! file, and reads by byte range so the GPU path never holds the whole model in wasm memory.
//!
//! Everything but [`manifest`], [`StoreKind`] and [`Progress`]/[`ProgressFn`] is wasm32-only.
//!
//! ## Modules, lowest first (each imports only modules above it in this list, never this file)
//! - [`hub`] (Hugging Face ids `hf:owner/repo/file.gguf[@revision]` -> the Hub's file URLs; pure),
//!   `kind` ([`StoreKind`]), [`manifest`] (the persisted record of a stored model), `sha`, `web`
//!   (JS globals, errors, `Blob` bytes), `progress` ([`Progress`], [`ProgressFn`], `Reporter`).
//! - [`quota`] (`navigator.storage` estimate/persist), `opfs` and `cache_api` (the two stores),
//!   `store` (one interface over both).
//! - `http`: requests, their cancellation, probing a part, response bodies, Range reads.
//! - `reader`: [`StoredModel`], reads by byte range (store, Blobs, or URLs via `http`).
//! - `source`: [`Source`] -> part sources, the default cache key, the per-`open` `Session`.
//! - `download`: the download engine (probe, plan, chunked fetch, streams, final checks via `reader`).
//! - this file: [`open`] (cached or direct), [`list`], [`delete`], [`usage`].
//! - [`js`]: the JS bindings, on top of everything (being moved to `src/wasm/`).
//!
//! ## Contract
//! ```text
//! open(Source, OpenOptions) -> StoredModel       complete models only; downloads/resumes/verifies
//! StoredModel::{size, key, store, parts, read(offset, len), read_js(offset, len),
//!               header(), header_of_part(i)}
//! list() -> Vec<CachedModel>   delete(key)   usage() -> Usage { usage, quota }
//! ```
//! - `Source::Url`/`Urls` (split GGUF parts in order; the model is their concatenation, and each part
//!   is a GGUF with its own header at `parts()[i].0`), `Source::Blob`/`Blobs` (a dropped `File`). A
//!   `Url` that is a Hugging Face id (`hf:`) is first resolved on `hf_endpoint` ([`hub`]); the
//!   resolved URL is the cache key.
//! - With `cache: true` (default) the bytes go to a [`store::Store`]: OPFS where
//!   `navigator.storage.getDirectory` exists (sync access handles in a dedicated Worker,
//!   `createWritable` elsewhere), else the Cache API. With `cache: false` reads go straight to the
//!   source (HTTP Range requests, or `Blob.slice`).
//! - Cache key: the URL (the first part's for a split model); for a `File`
//!   `file:<name>:<size>:<lastModified>:<sha256 of its first and last 64 KiB, 16 hex digits>`;
//!   `OpenOptions::key` overrides it.
//!
//! ## Download ([`download`])
//! The file is cut into chunks (default 8 MiB). Each missing chunk is fetched with a `Range` request,
//! at most `concurrency` at a time, hashed (sha256) and written; only then is it recorded in the
//! manifest ([`manifest`]), which is rewritten atomically. So after a reload, a crash or a dropped
//! connection the manifest lists exactly the chunks present, and the next `open` fetches only the
//! others. The first request (the first missing chunk) also yields the size, `ETag` and
//! `Last-Modified`: if they differ from the manifest's the remote file changed and the old chunks are
//! discarded (`PartManifest::compare_remote`: ETags compared weakly; an ETag that differs while
//! Last-Modified and the size agree is a server whose ETags vary by request, not a change). Every
//! chunk's answer is checked the same way against what the download started with: on a change the
//! download starts over as one stream per part (one answer is one version), so a file replaced
//! mid-download is never stored as a mix. A server with neither validator is read as one stream
//! from the start (and its partial copy is never resumed); so is one that ignores `Range` (HTTP 200),
//! cut into the same chunks. A Range answer shorter than asked is continued from where it stopped.
//! Transient network errors are retried per chunk (`retries`, exponential backoff). A request or a
//! body read that gets nothing for `inactivity_timeout_ms` (default 30 s) fails the call with
//! `NETWORK` naming the URL and what stalled.
//!
//! Before the first byte is stored: the first chunk must start with the GGUF magic and its header
//! must fit the file's size (an HTML error page or a truncated file is `BAD_GGUF` after one chunk,
//! not after the whole download), and `navigator.storage.estimate()` must have room for the missing
//! bytes (`QUOTA_EXCEEDED`, saying needed vs available). With `persist: true`,
//! `navigator.storage.persist()` is requested first (pages only; the JS layer asks from the page
//! for a WorkerEngine).
//! A write that still fails for quota removes the whole partial copy and says so.
//!
//! A model becomes complete when every chunk is recorded, every part's GGUF header fits its size,
//! and, when `sha256` was given, the whole file hashes to it (phase `verify`; on mismatch the copy is
//! discarded and the error is `INTEGRITY`; the next `open` downloads afresh). A complete model opens
//! with no network request at all.
//!
//! Reads check every stored chunk, as it is first read, against the sha256 recorded when it was
//! written; a chunk changed behind our back is `INTEGRITY` and is forgotten in the manifest, so the
//! next `open` fetches just that chunk. Opening (downloading, repairing) and deleting a model hold
//! the Web Lock `browser-llm model <key>`: across tabs and Workers of an origin one writer at a
//! time; the next finds what the first stored. A load reads the model under the same lock in
//! shared mode ([`while_reading`]), so a delete or a new download waits for the loads to end.
//!
//! Errors: `NETWORK` (HTTP status, connection lost: the partial copy is kept for resume), `BAD_GGUF`
//! (not a GGUF, truncated: nothing is kept), `INTEGRITY`, `QUOTA_EXCEEDED`, `ABORTED` (the
//! `AbortSignal` fired: in-flight requests are cancelled, recorded chunks kept), `INVALID_ARGUMENT`.

pub mod hub;
mod kind;
pub mod manifest;
mod progress;

#[cfg(target_arch = "wasm32")]
mod cache_api;
#[cfg(target_arch = "wasm32")]
mod download;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod opfs;
#[cfg(target_arch = "wasm32")]
pub mod quota;
#[cfg(target_arch = "wasm32")]
mod reader;
#[cfg(target_arch = "wasm32")]
pub mod sessions;
#[cfg(target_arch = "wasm32")]
mod sha;
#[cfg(target_arch = "wasm32")]
mod source;
#[cfg(target_arch = "wasm32")]
mod store;
#[cfg(target_arch = "wasm32")]
mod web;

pub use kind::StoreKind;
#[cfg(target_arch = "wasm32")]
pub use web::release_locks_on_trap;
pub use progress::{Progress, ProgressFn, PHASES};
#[cfg(target_arch = "wasm32")]
pub use wasm::*;

/// One entry of [`list`].
#[derive(Clone, Debug, PartialEq)]
pub struct CachedModel {
    pub key: String,
    /// The source URL of each part (`file:<name>` for local files).
    pub sources: Vec<String>,
    pub size: u64,
    /// Bytes of verified chunks present.
    pub stored_bytes: u64,
    pub complete: bool,
    pub sha256: Option<String>,
    pub last_used_ms: f64,
    pub store: StoreKind,
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::download;
    use super::http::probe_url;
    use super::manifest::{is_sha256_hex, Manifest, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_MODEL_SIZE, MIN_CHUNK_SIZE};
    pub(crate) use super::progress::Reporter;
    pub use super::quota::Usage;
    use super::reader::Backing;
    pub use super::reader::StoredModel;
    use super::source::{default_key, part_sources, PartSource, Session};
    pub use super::source::Source;
    use super::store::Store;
    use super::{CachedModel, ProgressFn, StoreKind};
    use crate::error::{Error, ErrorCode, Result};

    pub struct OpenOptions {
        /// Expected sha256 (hex) of the whole (concatenated) file.
        pub sha256: Option<String>,
        /// `false`: no persistent copy; reads go straight to the source.
        pub cache: bool,
        pub store: StoreKind,
        pub signal: Option<web_sys::AbortSignal>,
        pub on_progress: Option<ProgressFn>,
        /// Cache key override (default: see the module docs).
        pub key: Option<String>,
        /// Chunk size for a new download (a resumed one keeps its manifest's).
        pub chunk_size: u64,
        /// Chunks in flight at once.
        pub concurrency: usize,
        /// Retries per chunk after a network error.
        pub retries: u32,
        /// Milliseconds a request or body read may get nothing before the call fails with
        /// `NETWORK` (0: no limit).
        pub inactivity_timeout_ms: u32,
        /// Where `hf:` ids resolve ([`super::hub`]; None: the Hub itself).
        pub hf_endpoint: Option<String>,
        /// Ask the browser to keep the origin's storage under pressure (`navigator.storage.persist()`,
        /// pages only; Firefox may ask the user).
        pub persist: bool,
    }

    impl Default for OpenOptions {
        fn default() -> Self {
            OpenOptions {
                sha256: None,
                cache: true,
                store: StoreKind::Auto,
                signal: None,
                on_progress: None,
                key: None,
                chunk_size: DEFAULT_CHUNK_SIZE,
                concurrency: 4,
                retries: 3,
                inactivity_timeout_ms: super::http::DEFAULT_INACTIVITY_TIMEOUT_MS,
                hf_endpoint: None,
                persist: false,
            }
        }
    }

    /// A Hugging Face id is the URL(s) of its file (all parts of a split model).
    fn resolve_hub(source: Source, endpoint: Option<&str>) -> Result<Source> {
        Ok(match source {
            Source::Url(u) if super::hub::is_hub_id(&u) => {
                let mut urls = super::hub::resolve(&u, endpoint)?;
                if urls.len() == 1 { Source::Url(urls.remove(0)) } else { Source::Urls(urls) }
            }
            s => s,
        })
    }

    /// The complete stored copy of `source`, if this context's store holds one: nothing is
    /// downloaded and no request is made (a preflight's look at a model already here).
    pub async fn open_stored(source: Source, opts: &OpenOptions) -> Result<Option<StoredModel>> {
        if !has_storage() {
            return Ok(None);
        }
        let parts = part_sources(resolve_hub(source, opts.hf_endpoint.as_deref())?)?;
        let key = match &opts.key {
            Some(k) => k.clone(),
            None => default_key(&parts).await?,
        };
        let store = Rc::new(Store::open(opts.store).await?);
        let Some(m) = store.load_manifest(&key).await? else { return Ok(None) };
        let sources_match = m.parts.len() == parts.len() && m.parts.iter().zip(&parts).all(|(mp, ps)| mp.source == ps.describe());
        if !(sources_match && m.complete) {
            return Ok(None);
        }
        let model = StoredModel::new(key, Backing::store(store, m));
        Ok(model.missing_chunks().await?.is_empty().then_some(model))
    }

    /// Whether this context has any browser storage (OPFS or the Cache API). A page served over
    /// plain http from a LAN address has neither.
    pub fn has_storage() -> bool {
        super::web::has_opfs() || super::web::caches().is_some()
    }

    /// Open a model: from the store when a complete copy is there (no network), else downloading
    /// (or resuming) it into the store first; with `cache: false`, straight from the source.
    /// Returns only a complete, checked model.
    pub async fn open(source: Source, opts: OpenOptions) -> Result<StoredModel> {
        open_inner(source, opts, true).await
    }

    /// `source` read straight from where it is (as `cache: false`), with no read of its headers
    /// yet: a URL costs one 4 KiB probe (a preflight reads only as much as it needs).
    pub async fn open_unchecked(source: Source, opts: OpenOptions) -> Result<StoredModel> {
        open_inner(source, OpenOptions { cache: false, sha256: None, ..opts }, false).await
    }

    async fn open_inner(source: Source, opts: OpenOptions, check_headers: bool) -> Result<StoredModel> {
        let OpenOptions {
            sha256,
            cache,
            store,
            signal,
            on_progress,
            key,
            chunk_size,
            concurrency,
            retries,
            inactivity_timeout_ms,
            hf_endpoint,
            persist,
        } = opts;
        let source = resolve_hub(source, hf_endpoint.as_deref())?;
        if persist && cache {
            super::quota::request_persist().await;
        }
        let sha256 = sha256.map(|s| s.to_ascii_lowercase());
        if let Some(s) = &sha256 {
            if !is_sha256_hex(s) {
                return Err(Error::invalid_argument(format!("sha256 must be 64 hex digits, got {s:?}")));
            }
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(Error::invalid_argument(format!(
                "chunkSize must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes, got {chunk_size}"
            )));
        }
        if concurrency == 0 || concurrency > 64 {
            return Err(Error::invalid_argument(format!("concurrency must be 1..=64, got {concurrency}")));
        }
        let parts = part_sources(source)?;
        let key = match key {
            Some(k) => k,
            None => default_key(&parts).await?,
        };
        let progress = Rc::new(RefCell::new(Reporter::new(on_progress)));
        let sess = Session::new(key, chunk_size, concurrency, retries, signal, progress, inactivity_timeout_ms)?;
        sess.check_aborted()?;
        let r = if cache {
            // One writer per model across tabs and Workers: a second one waits, then finds the
            // copy the first one stored (or resumes it).
            let lock = lock_name(&sess.key);
            super::web::with_lock(&lock, sess.net.user_signal(), open_cached(&sess, store, &parts, sha256.as_deref())).await
        } else {
            open_direct(&sess, parts, sha256.as_deref(), check_headers).await
        };
        sess.finish();
        r
    }

    async fn open_cached(sess: &Session, kind: StoreKind, parts: &[PartSource], sha256: Option<&str>) -> Result<StoredModel> {
        let store = Rc::new(Store::open(kind).await?);
        let mut existing = None;
        if let Some(m) = store.load_manifest(&sess.key).await? {
            let sources_match = m.parts.len() == parts.len()
                && m.parts.iter().zip(parts).all(|(mp, ps)| mp.source == ps.describe());
            if sources_match && m.complete {
                let model = StoredModel::new(sess.key.clone(), Backing::store(store.clone(), m.clone()));
                let missing = model.missing_chunks().await?;
                if missing.is_empty() {
                    let ok = match (sha256, &m.sha256) {
                        (None, _) => true,
                        (Some(want), Some(have)) if want == have => true,
                        // Never checked against this hash: check the stored bytes now.
                        (Some(want), _) => match model.verify_sha256(want, &sess.progress).await {
                            Ok(()) => true,
                            Err(e) if e.code == ErrorCode::Integrity => false,
                            Err(e) => return Err(e),
                        },
                    };
                    if ok {
                        let mut m = m;
                        m.sha256 = sha256.map(str::to_owned).or(m.sha256);
                        m.last_used_ms = super::web::now_ms();
                        store.save_manifest(&m).await?;
                        return Ok(StoredModel::new(sess.key.clone(), Backing::store(store, m)));
                    }
                    // The stored copy is not the file the caller asked for: download afresh.
                } else {
                    // Chunks vanished under us (storage partly cleared): fetch just those again.
                    let mut m = m;
                    m.complete = false;
                    m.sha256 = None;
                    for (p, c) in missing {
                        m.parts[p].chunks[c] = None;
                    }
                    existing = Some(m);
                }
            } else if sources_match {
                existing = Some(m);
            }
        }
        if existing.is_none() {
            // Nothing usable under this key: clear whatever is there (another source, a bad manifest).
            store.remove(&sess.key).await?;
        }
        download_into(sess, store, parts, existing, sha256).await
    }

    async fn download_into(
        sess: &Session,
        store: Rc<Store>,
        parts: &[PartSource],
        existing: Option<Manifest>,
        sha256: Option<&str>,
    ) -> Result<StoredModel> {
        let r = match download::download(sess, &store, parts, existing, sha256, false).await {
            Err(e) if download::is_changed(&e) => {
                // The file changed under a chunked download: the stored chunks are another
                // version. Start over as one stream per part (one answer is one version), which
                // also finishes where the server's validators differ between requests.
                sess.cancel_in_flight();
                store.remove(&sess.key).await?;
                let again = sess.restart()?;
                let r = download::download(&again, &store, parts, None, sha256, true).await;
                again.finish();
                r
            }
            r => r,
        };
        match r {
            Ok(m) => Ok(StoredModel::new(sess.key.clone(), Backing::store(store, m))),
            Err(e) => {
                sess.cancel_in_flight();
                let keep = matches!(e.code, ErrorCode::Network | ErrorCode::Aborted | ErrorCode::Internal)
                    && store.load_manifest(&sess.key).await.ok().flatten().is_some_and(|m| m.stored_bytes() > 0);
                if !keep {
                    // Nothing worth resuming, or nothing that may be kept (not a GGUF, corrupt,
                    // out of space): leave no trace.
                    let _ = store.remove(&sess.key).await;
                }
                Err(e)
            }
        }
    }

    async fn open_direct(sess: &Session, parts: Vec<PartSource>, sha256: Option<&str>, check_headers: bool) -> Result<StoredModel> {
        let backing = direct_backing(sess, parts).await?;
        let model = StoredModel::new(sess.key.clone(), backing);
        for i in 0..model.parts().len() * usize::from(check_headers) {
            model.header_of_part(i).await?;
        }
        if let Some(want) = sha256 {
            model.verify_sha256(want, &sess.progress).await?;
        }
        Ok(model)
    }

    /// The backing for `cache: false`: reads go to the source itself (URLs must support Range).
    async fn direct_backing(sess: &Session, parts: Vec<PartSource>) -> Result<Backing> {
        if parts.iter().all(|p| matches!(p, PartSource::Blob(_))) {
            return Ok(Backing::Blobs(parts.into_iter().map(|p| if let PartSource::Blob(b) = p { b } else { unreachable!() }).collect()));
        }
        let mut urls = Vec::new();
        let mut sizes = Vec::new();
        for p in parts {
            let PartSource::Url(url) = p else {
                return Err(Error::invalid_argument("a model's parts must be all URLs or all Blobs"));
            };
            let probe = probe_url(&sess.net, &url, 0..4096, 0).await?;
            if let Some(b) = probe.resp.as_ref().and_then(web_sys::Response::body) {
                super::web::ignore_rejection(b.cancel());
            }
            let (true, Some(size)) = (probe.ranged, probe.size) else {
                return Err(Error::invalid_argument(format!(
                    "{url}: loading without caching needs a server that supports HTTP Range requests; use cache: true"
                )));
            };
            urls.push(url);
            sizes.push(size);
        }
        if sizes.iter().try_fold(0u64, |a, &s| a.checked_add(s)).is_none_or(|t| t > MAX_MODEL_SIZE) {
            return Err(Error::bad_gguf(format!("the parts' sizes {sizes:?} add up to more than a model can be")));
        }
        Ok(Backing::Urls { urls, sizes })
    }

    /// Every model in every store of this context, complete or partial.
    pub async fn list() -> Result<Vec<CachedModel>> {
        let mut out = Vec::new();
        for store in Store::all().await {
            for m in store.manifests().await? {
                out.push(CachedModel {
                    key: m.key.clone(),
                    sources: m.parts.iter().map(|p| p.source.clone()).collect(),
                    size: m.size(),
                    stored_bytes: m.stored_bytes(),
                    complete: m.complete,
                    sha256: m.sha256.clone(),
                    last_used_ms: m.last_used_ms,
                    store: store.kind(),
                });
            }
        }
        out.sort_by(|a, b| b.last_used_ms.total_cmp(&a.last_used_ms));
        Ok(out)
    }

    /// Run `f` (reads of `model`: a load, or a GPU engine's reload) holding the model's lock in
    /// shared mode when it is a stored copy: a download or a delete of it (exclusive) waits for
    /// the reads to end, in any tab or Worker, instead of removing chunks under them.
    pub async fn while_reading<T>(model: &StoredModel, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        if !model.is_stored() {
            return f.await;
        }
        super::web::with_lock_mode(&lock_name(model.key()), true, None, f).await
    }

    /// Delete a model (complete or partial) from every store, once no tab or Worker is reading it
    /// ([`while_reading`]). Deleting a missing key is not an error.
    pub async fn delete(key: &str) -> Result<()> {
        super::web::with_lock(&lock_name(key), None, async {
            for store in Store::all().await {
                store.remove(key).await?;
            }
            Ok(())
        })
        .await
    }

    /// The Web Lock held while a model's stored copy is written or deleted.
    fn lock_name(key: &str) -> String {
        format!("browser-llm model {key}")
    }

    /// `navigator.storage.estimate()`.
    pub async fn usage() -> Result<Usage> {
        super::quota::usage().await
    }
}
