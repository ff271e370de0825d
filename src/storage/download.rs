//! The download engine: fill a [`Store`] with every missing chunk of a model and return its complete
//! manifest. [`download`] runs the stages in order: probe each part ([`probe_parts`]), check the
//! quota and plan the work ([`plan`]), fetch ranged or local chunks a few at a time
//! ([`fetch_chunks`]), store parts from servers without Range support as one stream each
//! ([`stream_part`]), then check headers and the whole-file hash and mark the copy complete
//! ([`finalize`]). Per chunk: fetch, GGUF check of chunk 0, sha256, write, manifest update. See the
//! module docs of [`super`] for the contract.
//!
//! HTTP lives in [`super::http`], sources and the session in [`super::source`]; [`StoredModel`] is
//! used only for the final checks.

use std::ops::Range;
use std::rc::Rc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use js_sys::Uint8Array;
use web_sys::Response;

use super::http::{header, probe_url, probe_whole, Body, Probe};
use super::manifest::{chunk_range, n_chunks, parse_content_range, Manifest, PartManifest, Remote};
use super::quota;
use super::reader::{Backing, StoredModel};
use super::sha::Hasher;
use super::source::{PartSource, Session};
use super::store::{write_error, Store};
use super::web::{self, blob_bytes, now_ms};
use crate::timer::sleep_ms;
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::{self, Parsed};

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

/// A chunk to fetch: `(part, chunk, the probe's response when it holds this chunk)`.
type Job = (usize, usize, Option<Response>);

/// The work left after probing: the manifest being filled, the chunks to fetch, the parts to
/// stream, and which parts still need their GGUF header checked.
struct Plan {
    m: Manifest,
    jobs: Vec<Job>,
    streams: Vec<(usize, Probe)>,
    header_unchecked: Vec<bool>,
    /// Bytes of the whole model, 0 while some part's size is unknown (until its stream ends).
    total_bytes: u64,
}

/// What a chunk's answer gives when its validators say the remote file is not the one the
/// download started with (see [`is_changed`]).
fn changed_error(url: &str, what: &str) -> Error {
    Error::new(ErrorCode::Network, format!("{url} changed on the server during the download ({what})"))
}

/// Whether `e` is the error of a chunk whose file changed mid-download: the caller starts over as
/// one stream (`stream: true`), never mixing the versions.
pub(super) fn is_changed(e: &Error) -> bool {
    e.code == ErrorCode::Network && e.message.contains(" changed on the server during the download (")
}

/// Download (or resume) every missing chunk into `store`; returns the complete manifest.
/// `stream`: read every URL part as one response (no Range requests), as after a change.
pub(super) async fn download(
    sess: &Session,
    store: &Rc<Store>,
    sources: &[PartSource],
    existing: Option<Manifest>,
    sha256: Option<&str>,
    stream: bool,
) -> Result<Manifest> {
    let chunk_size = existing.as_ref().map_or(sess.chunk_size, |m| m.chunk_size);
    let mut parts: Vec<Option<PartManifest>> = match existing {
        Some(m) => m.parts.into_iter().map(Some).collect(),
        None => sources.iter().map(|_| None).collect(),
    };
    // 1. Probe each part that still misses chunks.
    let (probes, changed) = probe_parts(sess, sources, &mut parts, chunk_size, stream).await?;
    // 2. Room for the missing bytes, then the plan.
    let Plan { mut m, jobs, streams, mut header_unchecked, total_bytes } =
        plan(sess, store, sources, parts, probes, chunk_size, changed).await?;
    // 3. Chunked download of every ranged (or local) part.
    fetch_chunks(sess, store, sources, &mut m, jobs, &mut header_unchecked, total_bytes).await?;
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
    finalize(sess, store, sources, m, &header_unchecked, sha256).await
}

/// Stage 1: probe each part that still misses chunks: size, validators, Range support. Updates
/// `parts` (a part whose remote file changed starts afresh; `None` while its size is unknown) and
/// returns each part's probe (`None` for local files and complete parts) and whether any part
/// changed. A server with neither ETag nor Last-Modified is read as one stream: nothing would tell
/// its chunks' answers apart if the file changed between them.
async fn probe_parts(
    sess: &Session,
    sources: &[PartSource],
    parts: &mut [Option<PartManifest>],
    chunk_size: u64,
    stream: bool,
) -> Result<(Vec<Option<Probe>>, bool)> {
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
                let mut probe = if stream { probe_whole(&sess.net, url).await? } else { probe_url(&sess.net, url, want, first).await? };
                if probe.ranged && probe.etag.is_none() && probe.last_modified.is_none() {
                    if let Some(b) = probe.resp.as_ref().and_then(Response::body) {
                        web::ignore_rejection(b.cancel());
                    }
                    probe = probe_whole(&sess.net, url).await?;
                }
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
                    if p.ranged_chunk.is_some_and(|c| c >= n_chunks(s, chunk_size)) {
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
    Ok((probes, changed))
}

/// Stage 2: check the quota for the missing bytes (before storing any), ask for persistence, and
/// lay out the work: the manifest to fill (saved at once when the remote file `changed`, so the
/// old file's chunks are forgotten before any is overwritten), the chunk jobs and the streams.
#[allow(clippy::too_many_arguments)]
async fn plan(
    sess: &Session,
    store: &Rc<Store>,
    sources: &[PartSource],
    parts: Vec<Option<PartManifest>>,
    probes: Vec<Option<Probe>>,
    chunk_size: u64,
    changed: bool,
) -> Result<Plan> {
    if parts.iter().all(Option::is_some) {
        let needed = parts.iter().flatten().fold(0u64, |a, p| a.saturating_add(p.size.saturating_sub(p.stored_bytes(chunk_size))));
        if let Err(e) = quota::check(needed).await {
            sess.cancel_in_flight();
            return Err(e);
        }
    }
    sess.check_aborted()?;

    let placeholder = |i: usize| PartManifest::new(sources[i].describe(), 0, None, None, chunk_size);
    let m = Manifest::new(
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
    Ok(Plan { m, jobs, streams, header_unchecked, total_bytes })
}

/// Stage 3: fetch `jobs`, `concurrency` chunks at a time, recording each in `m` as it is stored.
async fn fetch_chunks(
    sess: &Session,
    store: &Rc<Store>,
    sources: &[PartSource],
    m: &mut Manifest,
    mut jobs: Vec<Job>,
    header_unchecked: &mut [bool],
    total_bytes: u64,
) -> Result<()> {
    let chunk_size = m.chunk_size;
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
            Ok(f) => record(store, m, &f).await.map(|()| f),
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
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Stage 5: check the GGUF header of every part not checked on the way and the whole-file sha256
/// (when given), then save `m` as complete.
async fn finalize(
    sess: &Session,
    store: &Rc<Store>,
    sources: &[PartSource],
    mut m: Manifest,
    header_unchecked: &[bool],
    sha256: Option<&str>,
) -> Result<Manifest> {
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
            Err(e) if e.code == ErrorCode::Network && !is_changed(&e) && attempt < sess.retries => {
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
            let s = b.slice_with_f64_and_f64(range.start as f64, range.end as f64).map_err(web::internal("Blob.slice"))?;
            let a = blob_bytes(&s, ErrorCode::InvalidArgument, "reading the local file").await?;
            if a.length() as u64 != len {
                return Err(Error::invalid_argument("the local file changed while it was being read"));
            }
            sess.progress.borrow_mut().add(len);
            (vec![a], None)
        }
        PartSource::Url(url) => {
            // One answer, or several where the server answers a Range request with fewer bytes
            // than asked: each continues where the last stopped, and each must come from the
            // file the download started with (size, ETag, Last-Modified: see
            // `PartManifest::compare_remote`), or the chunk would mix two versions.
            let mut pieces = Vec::new();
            let mut content_type = None;
            let mut at = range.start;
            let mut next = probe;
            while at < range.end {
                let resp = match next.take() {
                    Some(r) => r,
                    None => sess.net.get(url, Some(at..range.end)).await?,
                };
                let cr = header(&resp, "Content-Range").and_then(|v| parse_content_range(&v));
                let Some(cr) = cr.filter(|cr| resp.status() == 206 && cr.start == at && cr.end > at && cr.end <= range.end) else {
                    return Err(Error::new(
                        ErrorCode::Network,
                        format!("{url}: the server stopped answering Range requests as before (the file may have changed); try again"),
                    ));
                };
                let (etag, lm) = (header(&resp, "ETag"), header(&resp, "Last-Modified"));
                if part.compare_remote(cr.total.unwrap_or(u64::MAX), etag.as_deref(), lm.as_deref()) == Remote::Changed {
                    let what = format!(
                        "size {:?}, ETag {etag:?}, Last-Modified {lm:?}; it was {} bytes, ETag {:?}, Last-Modified {:?}",
                        cr.total, part.size, part.etag, part.last_modified
                    );
                    return Err(changed_error(url, &what));
                }
                content_type = content_type.or_else(|| header(&resp, "Content-Type"));
                let want = cr.end - at;
                let mut body = Body::new(&resp);
                let (mut got_pieces, got) = body.take(&sess.net, &sess.progress, want).await?;
                body.cancel();
                if got != want {
                    return Err(Error::new(
                        ErrorCode::Network,
                        format!("{url}: the connection closed after {} of {len} bytes of chunk {c}", at - range.start + got),
                    ));
                }
                pieces.append(&mut got_pieces);
                at = cr.end;
            }
            (pieces, content_type)
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
        let (pieces, got) = body.take(&sess.net, &sess.progress, chunk_size).await?;
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
