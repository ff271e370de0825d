//! Where a model's bytes come from and the state of one `open` call: the public [`Source`], its
//! checked list of parts ([`part_sources`] -> [`PartSource`]), the default cache key
//! ([`default_key`]) and [`Session`] (key, tuning, cancellable requests, progress).

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::{JsCast, JsValue};
use web_sys::{AbortSignal, Blob};

use super::http::Requests;
use super::progress::Reporter;
use crate::error::{Error, ErrorCode, Result};

/// Where the model bytes come from.
#[derive(Clone)]
pub enum Source {
    Url(String),
    /// Split GGUF parts (`-00001-of-0000N.gguf`, ...), in order.
    Urls(Vec<String>),
    Blob(web_sys::Blob),
    Blobs(Vec<web_sys::Blob>),
}

/// One part of a model's source.
pub(super) enum PartSource {
    Url(String),
    Blob(Blob),
}

impl PartSource {
    /// What the manifest records as the part's source.
    pub fn describe(&self) -> String {
        match self {
            PartSource::Url(u) => u.clone(),
            PartSource::Blob(b) => match b.dyn_ref::<web_sys::File>() {
                Some(f) => format!("file:{}", f.name()),
                None => "blob".into(),
            },
        }
    }
    /// Identity of a local file for the cache key and change detection: name, size, modification
    /// time, and a hash of its first and last 64 KiB (two different files that agree on the rest,
    /// e.g. two quantizations saved under one name, never share a stored copy).
    async fn blob_identity(b: &Blob) -> Result<String> {
        let fp = blob_fingerprint(b).await?;
        Ok(match b.dyn_ref::<web_sys::File>() {
            Some(f) => format!("file:{}:{}:{}:{fp}", f.name(), b.size(), f.last_modified()),
            None => format!("blob:{}:{fp}", b.size()),
        })
    }
}

/// sha256 (16 hex digits) of a Blob's first and last [`EDGE`] bytes.
async fn blob_fingerprint(b: &Blob) -> Result<String> {
    const EDGE: f64 = 65536.0;
    let size = b.size();
    let slice = |s: f64, e: f64| b.slice_with_f64_and_f64(s, e).map_err(super::web::internal("Blob.slice"));
    let (head, tail): (JsValue, JsValue) = (slice(0.0, EDGE.min(size))?.into(), slice((size - EDGE).max(0.0), size)?.into());
    let ends = js_sys::Array::of2(&head, &tail);
    let both = Blob::new_with_blob_sequence(&ends).map_err(super::web::internal("building a Blob"))?;
    let bytes = super::web::blob_bytes(&both, ErrorCode::InvalidArgument, "reading the model file").await?;
    Ok(super::sha::sha256_js(&bytes).await[..16].to_owned())
}

/// The parts of `source`, in order: at least one, and every URL http(s) or relative.
pub(super) fn part_sources(source: Source) -> Result<Vec<PartSource>> {
    let v: Vec<PartSource> = match source {
        Source::Url(u) => vec![PartSource::Url(u)],
        Source::Urls(v) => v.into_iter().map(PartSource::Url).collect(),
        Source::Blob(b) => vec![PartSource::Blob(b)],
        Source::Blobs(v) => v.into_iter().map(PartSource::Blob).collect(),
    };
    if v.is_empty() {
        return Err(Error::invalid_argument("the model source is an empty list"));
    }
    for p in &v {
        if let PartSource::Url(u) = p {
            if !(u.starts_with("http://") || u.starts_with("https://") || u.starts_with('/') || u.starts_with('.')) {
                return Err(Error::invalid_argument(format!("not an http(s) URL: {u:?}")));
            }
        }
    }
    Ok(v)
}

/// The cache key of a model when the caller gives none (see the module docs of [`super`]).
pub(super) async fn default_key(parts: &[PartSource]) -> Result<String> {
    if let PartSource::Url(u) = &parts[0] {
        return Ok(u.clone());
    }
    let mut ids = Vec::with_capacity(parts.len());
    for p in parts {
        ids.push(match p {
            PartSource::Blob(b) => PartSource::blob_identity(b).await?,
            PartSource::Url(u) => u.clone(),
        });
    }
    Ok(ids.join("+"))
}

/// One `open` call: key, tuning, cancellation and progress.
pub(super) struct Session {
    pub key: String,
    pub chunk_size: u64,
    pub concurrency: usize,
    pub retries: u32,
    /// This call's requests (the caller's `AbortSignal` and our own cancellation).
    pub net: Requests,
    pub progress: Rc<RefCell<Reporter>>,
}

impl Session {
    pub fn new(
        key: String,
        chunk_size: u64,
        concurrency: usize,
        retries: u32,
        user_signal: Option<AbortSignal>,
        progress: Rc<RefCell<Reporter>>,
        timeout_ms: u32,
    ) -> Result<Session> {
        let net = Requests::new(user_signal, timeout_ms)?;
        Ok(Session { key, chunk_size, concurrency, retries, net, progress })
    }

    /// The same call with fresh requests (after cancelling the ones of a download that must start
    /// over).
    pub fn restart(&self) -> Result<Session> {
        let net = Requests::new(self.net.user_signal().cloned(), self.net.timeout_ms())?;
        Ok(Session { key: self.key.clone(), chunk_size: self.chunk_size, concurrency: self.concurrency, retries: self.retries, net, progress: self.progress.clone() })
    }

    pub fn check_aborted(&self) -> Result<()> {
        self.net.check_aborted()
    }

    /// Cancel every request still in flight (after a failure).
    pub fn cancel_in_flight(&self) {
        self.net.cancel();
    }

    pub fn finish(&self) {
        self.net.cancel();
    }
}
