//! The download engine: probe, quota check, chunked Range download (or one stream), per-chunk
//! sha256, manifest updates, final checks. See the module docs of [`super`] for the contract.

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use web_sys::{AbortController, AbortSignal, Blob, ReadableStreamDefaultReader, Request, RequestCache, RequestInit, Response};

use super::manifest::{chunk_range, parse_content_range, Manifest, PartManifest};
use super::reader::{Backing, StoredModel};
use super::sha::Hasher;
use super::store::{write_error, Store};
use super::web::{blob_bytes, fetch, now_ms, sleep_ms, wait};
use super::{quota, Progress, ProgressFn};
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::{self, Parsed};

/// Progress events at most this often (plus one at the end of each phase).
const PROGRESS_EVERY_MS: f64 = 100.0;

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

/// Progress state shared by concurrent chunk downloads.
pub(crate) struct Reporter {
    cb: Option<ProgressFn>,
    phase: &'static str,
    loaded: u64,
    total: u64,
    moved: u64,
    start_ms: f64,
    last_ms: f64,
}

impl Reporter {
    pub fn new(cb: Option<ProgressFn>) -> Reporter {
        Reporter { cb, phase: "download", loaded: 0, total: 0, moved: 0, start_ms: now_ms(), last_ms: 0.0 }
    }
    pub fn start(&mut self, phase: &'static str, loaded: u64, total: u64) {
        (self.phase, self.loaded, self.total, self.moved, self.start_ms) = (phase, loaded, total, 0, now_ms());
        self.emit();
    }
    pub fn add(&mut self, n: u64) {
        self.loaded += n;
        self.moved += n;
        if now_ms() - self.last_ms >= PROGRESS_EVERY_MS {
            self.emit();
        }
    }
    /// Take back bytes of a chunk that failed and will be fetched again.
    pub fn sub(&mut self, n: u64) {
        self.loaded = self.loaded.saturating_sub(n);
        self.moved = self.moved.saturating_sub(n);
    }
    pub fn emit(&mut self) {
        let now = now_ms();
        self.last_ms = now;
        let secs = ((now - self.start_ms) / 1000.0).max(1e-3);
        let p = Progress { phase: self.phase, loaded: self.loaded, total: self.total, bytes_per_second: self.moved as f64 / secs };
        if let Some(cb) = &mut self.cb {
            cb(p);
        }
    }
}

/// One `open` call: key, tuning, cancellation and progress.
pub(super) struct Session {
    pub key: String,
    pub chunk_size: u64,
    pub concurrency: usize,
    pub retries: u32,
    user_signal: Option<AbortSignal>,
    ctrl: AbortController,
    /// Aborts when the caller's signal does or when we cancel in-flight requests.
    signal: AbortSignal,
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
        let ctrl = AbortController::new().map_err(super::web::internal("AbortController"))?;
        let signal = match &user_signal {
            Some(s) => AbortSignal::any(&js_sys::Array::of2(s, &ctrl.signal())),
            None => ctrl.signal(),
        };
        Ok(Session { key, chunk_size, concurrency, retries, user_signal, ctrl, signal, progress })
    }

    pub fn check_aborted(&self) -> Result<()> {
        if self.user_signal.as_ref().is_some_and(|s| s.aborted()) {
            return Err(Error::new(ErrorCode::Aborted, "the download was aborted"));
        }
        Ok(())
    }

    /// An error from a request or a read: `ABORTED` whenever the caller aborted.
    fn classify(&self, e: Error) -> Error {
        match self.check_aborted() {
            Err(a) => a,
            Ok(()) => e,
        }
    }

    /// Cancel every request still in flight (after a failure).
    pub fn cancel_in_flight(&self) {
        self.ctrl.abort();
    }

    pub fn finish(&self) {
        self.ctrl.abort();
    }

    async fn get(&self, url: &str, range: Option<Range<u64>>) -> Result<Response> {
        let r = request(url, range, Some(&self.signal)).await;
        r.map_err(|e| self.classify(e))
    }
}

fn request_for(url: &str, range: Option<Range<u64>>, signal: Option<&AbortSignal>) -> Result<Request> {
    let init = RequestInit::new();
    // Never let the HTTP cache keep (or serve) a second copy of the weights.
    init.set_cache(RequestCache::NoStore);
    init.set_signal(signal);
    let req = Request::new_with_str_and_init(url, &init)
        .map_err(|e| super::web::js_error(e, ErrorCode::InvalidArgument, &format!("bad model URL {url:?}")))?;
    if let Some(r) = range {
        req.headers().set("Range", &format!("bytes={}-{}", r.start, r.end - 1)).map_err(super::web::internal("Range header"))?;
    }
    Ok(req)
}

async fn request(url: &str, range: Option<Range<u64>>, signal: Option<&AbortSignal>) -> Result<Response> {
    let resp = fetch(&request_for(url, range, signal)?).await?;
    let status = resp.status();
    if !(200..300).contains(&status) {
        let what = match status {
            404 => "not found".to_string(),
            401 | 403 => "access denied (is the URL public, and does the server allow CORS?)".to_string(),
            _ => format!("the server answered {}", resp.status_text()),
        };
        return Err(Error::new(ErrorCode::Network, format!("HTTP {status} for {url}: {what}")));
    }
    Ok(resp)
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers().get(name).ok().flatten()
}

/// The answer to the first request for a part.
struct Probe {
    resp: Option<Response>,
    /// The server honours Range requests (HTTP 206).
    ranged: bool,
    /// The chunk `resp` holds, when ranged.
    ranged_chunk: Option<usize>,
    size: Option<u64>,
    etag: Option<String>,
    last_modified: Option<String>,
}

async fn probe_url(sess: &Session, url: &str, first: Range<u64>, chunk: usize) -> Result<Probe> {
    let resp = sess.get(url, Some(first.clone())).await?;
    let etag = header(&resp, "ETag");
    let last_modified = header(&resp, "Last-Modified");
    if resp.status() == 206 {
        let cr = header(&resp, "Content-Range").and_then(|v| parse_content_range(&v));
        let Some(cr) = cr.filter(|cr| cr.start == first.start && cr.total.is_some()) else {
            return Err(Error::new(ErrorCode::Network, format!("{url}: the server answered a Range request with a bad Content-Range")));
        };
        return Ok(Probe { resp: Some(resp), ranged: true, ranged_chunk: Some(chunk), size: cr.total, etag, last_modified });
    }
    // HTTP 200: no Range support; the body is the whole file. Its length is known unless the
    // server compresses on the fly (Content-Length then counts compressed bytes).
    let encoded = header(&resp, "Content-Encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity"));
    let size = if encoded { None } else { header(&resp, "Content-Length").and_then(|v| v.trim().parse().ok()) };
    Ok(Probe { resp: Some(resp), ranged: false, ranged_chunk: None, size, etag, last_modified })
}

/// Reads a response body in pieces of the caller's choosing; the bytes stay on the JS side.
struct Body {
    reader: Option<ReadableStreamDefaultReader>,
    pending: Option<Uint8Array>,
}

impl Body {
    fn new(resp: &Response) -> Body {
        let reader = resp.body().map(|b| b.get_reader().unchecked_into());
        Body { reader, pending: None }
    }

    /// Up to `n` bytes; fewer only at the end of the body.
    async fn take(&mut self, sess: &Session, n: u64) -> Result<(Vec<Uint8Array>, u64)> {
        let mut out = Vec::new();
        let mut got = 0u64;
        while got < n {
            let piece = match self.pending.take() {
                Some(p) => p,
                None => {
                    let Some(reader) = &self.reader else { break };
                    let r = wait(reader.read(), ErrorCode::Network, "the connection was lost during the download")
                        .await
                        .map_err(|e| sess.classify(e))?;
                    if Reflect::get(&r, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
                        self.reader = None;
                        break;
                    }
                    Reflect::get(&r, &"value".into()).map_err(super::web::internal("stream read"))?.unchecked_into()
                }
            };
            let len = piece.length() as u64;
            let used = len.min(n - got);
            if used < len {
                self.pending = Some(piece.subarray(used as u32, len as u32));
                out.push(piece.subarray(0, used as u32));
            } else {
                out.push(piece);
            }
            got += used;
            sess.progress.borrow_mut().add(used);
        }
        Ok((out, got))
    }

    fn cancel(&mut self) {
        if let Some(r) = self.reader.take() {
            super::web::ignore_rejection(r.cancel());
        }
    }
}

/// Check that a part starts like a GGUF whose header fits its size. `Ok(true)`: the header parsed
/// and fits; `Ok(false)`: the header is longer than this first chunk (checked again at the end).
fn check_gguf_start(first: &[Uint8Array], size: u64, source: &str, content_type: Option<&str>) -> Result<bool> {
    let mut bytes = Vec::new();
    for p in first {
        bytes.extend_from_slice(&p.to_vec());
    }
    if bytes.len() < 4 || bytes[..4] != gguf::GGUF_MAGIC {
        let preview: String =
            bytes.iter().take(24).map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect();
        let ct = content_type.map(|c| format!(", Content-Type {c}")).unwrap_or_default();
        return Err(Error::bad_gguf(format!(
            "{source} is not a GGUF file (it starts with {preview:?}{ct}); check the URL"
        )));
    }
    match gguf::parse(&bytes, Some(size)) {
        Ok(Parsed::Complete(_)) => Ok(true),
        Ok(Parsed::NeedMore { .. }) => Ok(false),
        Err(e) => Err(Error::bad_gguf(format!("{source}: {}", e.message))),
    }
}

struct Fetched {
    part: usize,
    chunk: usize,
    sha: String,
    /// The GGUF header was checked from this (first) chunk.
    header_checked: bool,
}

/// Download (or resume) every missing chunk into `store`; returns the complete manifest.
pub(super) async fn download(
    sess: &Session,
    store: &Rc<Store>,
    sources: &[PartSource],
    existing: Option<Manifest>,
    sha256: Option<&str>,
) -> Result<Manifest> {
    let chunk_size = existing.as_ref().map_or(sess.chunk_size, |m| m.chunk_size);
    let mut parts: Vec<Option<PartManifest>> = match existing {
        Some(m) => m.parts.into_iter().map(Some).collect(),
        None => sources.iter().map(|_| None).collect(),
    };

    // 1. Probe each part that still misses chunks: size, validators, Range support.
    let mut probes: Vec<Option<Probe>> = Vec::new();
    let mut changed = false;
    for (i, src) in sources.iter().enumerate() {
        let old = parts[i].take();
        let first_missing = old.as_ref().map_or(Some(0), |p| p.missing().first().copied());
        let Some(first) = first_missing else {
            parts[i] = old; // every chunk of this part is stored
            probes.push(None);
            continue;
        };
        let (probe, size) = match src {
            PartSource::Url(url) => {
                let want = match &old {
                    Some(p) => chunk_range(p.size, chunk_size, first),
                    None => 0..chunk_size,
                };
                let probe = probe_url(sess, url, want, first).await?;
                let size = probe.size;
                (Some(probe), size)
            }
            PartSource::Blob(b) => (None, Some(b.size() as u64)),
        };
        let (etag, lm) = match &probe {
            Some(p) => (p.etag.clone(), p.last_modified.clone()),
            None => (None, None),
        };
        let mut probe = probe;
        let same = old.as_ref().is_some_and(|p| size.is_some_and(|s| p.same_remote(s, etag.as_deref(), lm.as_deref())));
        parts[i] = match (old, size) {
            (Some(p), _) if same => Some(p),
            (old, Some(s)) => {
                changed |= old.is_some();
                // New, or the remote file changed (old chunks discarded). A probe that fetched a
                // later chunk of a changed file is still that chunk of the new file, if it exists.
                if let Some(p) = &mut probe {
                    if p.ranged_chunk.is_some_and(|c| c >= super::manifest::n_chunks(s, chunk_size)) {
                        p.ranged_chunk = None;
                        p.resp = None;
                    }
                }
                Some(PartManifest::new(src.describe(), s, etag, lm, chunk_size))
            }
            (old, None) => {
                changed |= old.is_some();
                None // size unknown until the stream ends
            }
        };
        probes.push(probe);
    }

    // 2. Room for the missing bytes, before storing any.
    if parts.iter().all(Option::is_some) {
        let needed: u64 = parts.iter().flatten().map(|p| p.size - p.stored_bytes(chunk_size)).sum();
        if let Err(e) = quota::check(needed).await {
            sess.cancel_in_flight();
            return Err(e);
        }
    }
    quota::request_persist().await;
    sess.check_aborted()?;

    let placeholder = |i: usize| PartManifest::new(sources[i].describe(), 0, None, None, chunk_size);
    let mut m = Manifest::new(
        sess.key.clone(),
        chunk_size,
        parts.iter().enumerate().map(|(i, p)| p.clone().unwrap_or_else(|| placeholder(i))).collect(),
        now_ms(),
    );
    let size_known = parts.iter().all(Option::is_some);
    if changed {
        // Forget the old file's chunks before overwriting any of them.
        store.save_manifest(&m).await?;
    }
    let total = if size_known { m.size() } else { 0 };
    sess.progress.borrow_mut().start("download", m.stored_bytes(), total);
    let mut header_unchecked: Vec<bool> = vec![true; sources.len()];
    // Parts whose chunk 0 is already stored were checked when it was.
    for (i, p) in m.parts.iter().enumerate() {
        if p.chunks.first().is_some_and(Option::is_some) {
            header_unchecked[i] = false;
        }
    }

    // 3. Chunked download of every ranged (or local) part, `concurrency` chunks at a time.
    let mut jobs = Vec::new();
    let mut streams = Vec::new();
    for (i, probe) in probes.into_iter().enumerate() {
        match probe {
            None if matches!(sources[i], PartSource::Blob(_)) => {
                jobs.extend(m.parts[i].missing().into_iter().map(|c| (i, c, None)));
            }
            None => {}
            Some(p) if p.ranged => {
                let first = p.ranged_chunk;
                let mut resp = p.resp;
                for c in m.parts[i].missing() {
                    let r = if Some(c) == first { resp.take() } else { None };
                    jobs.push((i, c, r));
                }
            }
            Some(p) => streams.push((i, p)),
        }
    }
    let total_bytes = if size_known { m.size() } else { 0 };
    // Chunk 0 of each part first, alone: it is checked to be a GGUF whose header fits the file
    // before the other chunks are requested, so a wrong URL costs one chunk, not `concurrency`.
    jobs.sort_by_key(|&(_, c, _)| c != 0);
    let mut first_chunks = jobs.iter().filter(|&&(_, c, _)| c == 0).count();
    let mut pending = jobs.into_iter().peekable();
    let mut running = FuturesUnordered::new();
    // On a failure, cancel the requests still in flight and let their jobs finish (they fail fast)
    // instead of dropping them mid-write, which would leak an open OPFS handle that locks the file.
    let mut failure: Option<Error> = None;
    loop {
        while failure.is_none() && running.len() < sess.concurrency {
            if first_chunks > 0 && pending.peek().is_some_and(|&(_, c, _)| c != 0) {
                break;
            }
            let Some((p, c, resp)) = pending.next() else { break };
            let part = &m.parts[p];
            running.push(fetch_chunk(sess, store, &sources[p], part.clone(), p, c, chunk_size, resp));
        }
        let Some(done) = running.next().await else { break };
        if failure.is_some() {
            continue;
        }
        let r = match done {
            Ok(f) => record(store, &mut m, &f).await.map(|()| f),
            Err(e) => Err(e),
        }
        .map_err(|e| write_error(e, m.stored_bytes(), total_bytes));
        match r {
            Ok(f) => {
                if f.chunk == 0 {
                    first_chunks -= 1;
                }
                if f.header_checked {
                    header_unchecked[f.part] = false;
                }
            }
            Err(e) => {
                sess.cancel_in_flight();
                failure = Some(e);
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }

    // 4. Parts from servers without Range support: one stream each.
    for (i, probe) in streams {
        let checked = stream_part(sess, store, &sources[i], &mut m, i, probe).await?;
        if checked {
            header_unchecked[i] = false;
        }
    }
    sess.check_aborted()?;
    sess.progress.borrow_mut().emit();
    if !m.all_chunks_stored() {
        return Err(Error::internal("download finished with chunks missing"));
    }

    // 5. Final checks, then mark complete.
    let model = StoredModel::new(sess.key.clone(), Backing::store(store.clone(), m.clone()));
    for (i, unchecked) in header_unchecked.iter().enumerate() {
        if *unchecked {
            model.header_of_part(i).await.map_err(|e| Error::bad_gguf(format!("{}: {}", sources[i].describe(), e.message)))?;
        }
    }
    if let Some(want) = sha256 {
        model.verify_sha256(want, &sess.progress).await?;
        m.sha256 = Some(want.to_owned());
    }
    m.complete = true;
    m.last_used_ms = now_ms();
    store.save_manifest(&m).await?;
    Ok(m)
}

async fn record(store: &Store, m: &mut Manifest, f: &Fetched) -> Result<()> {
    m.parts[f.part].chunks[f.chunk] = Some(f.sha.clone());
    store.save_manifest(m).await
}

/// Fetch, hash and store one chunk, retrying network errors.
#[allow(clippy::too_many_arguments)]
async fn fetch_chunk(
    sess: &Session,
    store: &Store,
    src: &PartSource,
    part: PartManifest,
    p: usize,
    c: usize,
    chunk_size: u64,
    mut probe: Option<Response>,
) -> Result<Fetched> {
    let range = chunk_range(part.size, chunk_size, c);
    let mut attempt = 0;
    loop {
        let before = sess.progress.borrow().loaded;
        let r = fetch_chunk_once(sess, store, src, &part, p, c, range.clone(), probe.take()).await;
        match r {
            Err(e) if e.code == ErrorCode::Network && attempt < sess.retries => {
                let got = sess.progress.borrow().loaded.saturating_sub(before);
                sess.progress.borrow_mut().sub(got);
                attempt += 1;
                sleep_ms(250 << attempt.min(5)).await;
                sess.check_aborted()?;
            }
            r => return r,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn fetch_chunk_once(
    sess: &Session,
    store: &Store,
    src: &PartSource,
    part: &PartManifest,
    p: usize,
    c: usize,
    range: Range<u64>,
    probe: Option<Response>,
) -> Result<Fetched> {
    let len = range.end - range.start;
    let (pieces, content_type) = match src {
        PartSource::Blob(b) => {
            let s = b.slice_with_f64_and_f64(range.start as f64, range.end as f64).map_err(super::web::internal("Blob.slice"))?;
            let a = blob_bytes(&s, ErrorCode::InvalidArgument, "reading the local file").await?;
            if a.length() as u64 != len {
                return Err(Error::invalid_argument("the local file changed while it was being read"));
            }
            sess.progress.borrow_mut().add(len);
            (vec![a], None)
        }
        PartSource::Url(url) => {
            let resp = match probe {
                Some(r) => r,
                None => {
                    let r = sess.get(url, Some(range.clone())).await?;
                    let cr = header(&r, "Content-Range").and_then(|v| parse_content_range(&v));
                    if r.status() != 206 || !cr.is_some_and(|cr| cr.start == range.start && cr.end == range.end && cr.total == Some(part.size)) {
                        return Err(Error::new(
                            ErrorCode::Network,
                            format!("{url}: the server stopped answering Range requests as before (the file may have changed); try again"),
                        ));
                    }
                    if part.etag.is_some() && header(&r, "ETag") != part.etag {
                        return Err(Error::new(ErrorCode::Network, format!("{url} changed on the server during the download; try again")));
                    }
                    r
                }
            };
            let ct = header(&resp, "Content-Type");
            let mut body = Body::new(&resp);
            let (pieces, got) = body.take(sess, len).await?;
            body.cancel();
            if got != len {
                return Err(Error::new(
                    ErrorCode::Network,
                    format!("{url}: the connection closed after {got} of {len} bytes of chunk {c}"),
                ));
            }
            (pieces, ct)
        }
    };
    let header_checked = if c == 0 { check_gguf_start(&pieces, part.size, &src.describe(), content_type.as_deref())? } else { false };
    let mut h = Hasher::default();
    pieces.iter().for_each(|a| h.update_js(a));
    sess.check_aborted()?;
    store.write_chunk(&sess.key, p, c, &pieces).await?;
    Ok(Fetched { part: p, chunk: c, sha: h.finish_hex(), header_checked })
}

/// Store a part from a server that ignores Range: one stream cut into chunks. Chunks already stored
/// with the same hash are not rewritten. Returns whether chunk 0 checked the GGUF header.
async fn stream_part(sess: &Session, store: &Store, src: &PartSource, m: &mut Manifest, i: usize, probe: Probe) -> Result<bool> {
    let url = src.describe();
    let resp = probe.resp.expect("a stream probe keeps its response");
    let ct = header(&resp, "Content-Type");
    let known = probe.size;
    let chunk_size = m.chunk_size;
    let mut body = Body::new(&resp);
    let mut hashes: Vec<String> = Vec::new();
    let mut received = 0u64;
    let mut checked = false;
    // Restart the byte count of this part: a stream re-sends what an earlier visit stored.
    let stored = m.parts[i].stored_bytes(chunk_size);
    sess.progress.borrow_mut().sub(stored);
    loop {
        let (pieces, got) = body.take(sess, chunk_size).await?;
        if got == 0 {
            break;
        }
        let c = hashes.len();
        received += got;
        if known.is_some_and(|k| received > k) {
            body.cancel();
            return Err(Error::new(ErrorCode::Network, format!("{url}: the server sent more bytes than its Content-Length")));
        }
        if c == 0 {
            checked = check_gguf_start(&pieces, known.unwrap_or(u64::MAX), &url, ct.as_deref())?;
        }
        let mut h = Hasher::default();
        pieces.iter().for_each(|a| h.update_js(a));
        let sha = h.finish_hex();
        let already = known.is_some() && m.parts[i].chunks.get(c).and_then(|x| x.as_deref()) == Some(sha.as_str());
        if !already {
            sess.check_aborted()?;
            store.write_chunk(&sess.key, i, c, &pieces).await.map_err(|e| write_error(e, received - got, known.unwrap_or(0)))?;
            if known.is_some() {
                m.parts[i].chunks[c] = Some(sha.clone());
                store.save_manifest(m).await?;
            }
        }
        hashes.push(sha);
        if got < chunk_size {
            break;
        }
    }
    match known {
        Some(k) if received != k => {
            Err(Error::new(ErrorCode::Network, format!("{url}: the connection closed after {received} of {k} bytes")))
        }
        Some(_) => Ok(checked),
        None => {
            // Size learnt only now: record the part (a gzip'd or chunked response cannot resume).
            if received == 0 {
                return Err(Error::bad_gguf(format!("{url}: the server sent an empty file")));
            }
            let mut p = PartManifest::new(url, received, probe.etag, probe.last_modified, chunk_size);
            p.chunks = hashes.into_iter().map(Some).collect();
            m.parts[i] = p;
            store.save_manifest(m).await?;
            Ok(checked)
        }
    }
}

/// The backing for `cache: false`: reads go to the source itself.
pub(super) async fn direct_backing(sess: &Session, parts: Vec<PartSource>) -> Result<Backing> {
    if parts.iter().all(|p| matches!(p, PartSource::Blob(_))) {
        return Ok(Backing::Blobs(parts.into_iter().map(|p| if let PartSource::Blob(b) = p { b } else { unreachable!() }).collect()));
    }
    let mut urls = Vec::new();
    let mut sizes = Vec::new();
    for p in parts {
        let PartSource::Url(url) = p else {
            return Err(Error::invalid_argument("a model's parts must be all URLs or all Blobs"));
        };
        let probe = probe_url(sess, &url, 0..4096, 0).await?;
        if let Some(b) = probe.resp.as_ref().and_then(Response::body) {
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
    Ok(Backing::Urls { urls, sizes })
}

/// Bytes `r` of a URL of `size` bytes, by Range request (for `cache: false`).
pub(super) async fn fetch_range_bytes(url: &str, r: Range<u64>, size: u64) -> Result<Uint8Array> {
    let resp = request(url, Some(r.clone()), None).await?;
    let cr = header(&resp, "Content-Range").and_then(|v| parse_content_range(&v));
    if resp.status() != 206 || !cr.is_some_and(|cr| cr.start == r.start && cr.end == r.end && cr.total == Some(size)) {
        return Err(Error::new(ErrorCode::Network, format!("{url}: the file changed on the server or lost Range support")));
    }
    let buf = wait(resp.array_buffer().map_err(super::web::internal("Response.arrayBuffer"))?, ErrorCode::Network, url).await?;
    let a = Uint8Array::new(&buf);
    if a.length() as u64 != r.end - r.start {
        return Err(Error::new(ErrorCode::Network, format!("{url}: the connection closed early")));
    }
    Ok(a)
}
