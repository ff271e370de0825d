//! Where a model's bytes come from and the state of one `open` call: the public [`Source`], its
//! checked list of parts ([`part_sources`] -> [`PartSource`]), the default cache key
//! ([`default_key`]) and [`Session`] (key, tuning, cancellable requests, progress).

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use web_sys::{AbortSignal, Blob};

use super::http::Requests;
use super::progress::Reporter;
use crate::error::{Error, Result};

/// Where the model bytes come from.
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
    /// Identity of a local file for the cache key and change detection.
    fn blob_identity(b: &Blob) -> String {
        match b.dyn_ref::<web_sys::File>() {
            Some(f) => format!("file:{}:{}:{}", f.name(), b.size(), f.last_modified()),
            None => format!("blob:{}", b.size()),
        }
    }
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
pub(super) fn default_key(parts: &[PartSource]) -> String {
    match &parts[0] {
        PartSource::Url(u) => u.clone(),
        PartSource::Blob(b) => {
            let ids: Vec<String> = parts
                .iter()
                .map(|p| match p {
                    PartSource::Blob(b) => PartSource::blob_identity(b),
                    PartSource::Url(u) => u.clone(),
                })
                .collect();
            if ids.len() == 1 {
                PartSource::blob_identity(b)
            } else {
                ids.join("+")
            }
        }
    }
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
    ) -> Result<Session> {
        let net = Requests::new(user_signal)?;
        Ok(Session { key, chunk_size, concurrency, retries, net, progress })
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
