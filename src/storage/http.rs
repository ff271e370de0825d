//! HTTP for model downloads and uncached reads: requests that bypass the HTTP cache, status ->
//! [`Error`] mapping, the cancellation of one `open` call's requests ([`Requests`]), the first
//! answer for a part ([`probe_url`] -> [`Probe`]: size, validators, Range support), response bodies
//! read in pieces ([`Body`]) and single Range reads ([`fetch_range_bytes`]).

use std::cell::RefCell;
use std::ops::Range;

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use web_sys::{AbortController, AbortSignal, ReadableStreamDefaultReader, Request, RequestCache, RequestInit, Response};

use super::manifest::parse_content_range;
use super::progress::Reporter;
use super::web::{self, fetch, wait};
use crate::error::{Error, ErrorCode, Result};

/// The requests of one `open` call: aborted when the caller's signal fires or when we cancel the
/// ones in flight (after a failure, or when the call ends).
pub(super) struct Requests {
    user_signal: Option<AbortSignal>,
    ctrl: AbortController,
    /// Aborts when the caller's signal does or when we cancel in-flight requests.
    signal: AbortSignal,
}

impl Requests {
    pub fn new(user_signal: Option<AbortSignal>) -> Result<Requests> {
        let ctrl = AbortController::new().map_err(web::internal("AbortController"))?;
        let signal = match &user_signal {
            Some(s) => AbortSignal::any(&js_sys::Array::of2(s, &ctrl.signal())),
            None => ctrl.signal(),
        };
        Ok(Requests { user_signal, ctrl, signal })
    }

    /// The caller's `AbortSignal`, if any.
    pub fn user_signal(&self) -> Option<&AbortSignal> {
        self.user_signal.as_ref()
    }

    pub fn check_aborted(&self) -> Result<()> {
        if self.user_signal.as_ref().is_some_and(|s| s.aborted()) {
            return Err(Error::new(ErrorCode::Aborted, "the download was aborted"));
        }
        Ok(())
    }

    /// An error from a request or a read: `ABORTED` whenever the caller aborted.
    pub fn classify(&self, e: Error) -> Error {
        match self.check_aborted() {
            Err(a) => a,
            Ok(()) => e,
        }
    }

    /// Cancel every request still in flight.
    pub fn cancel(&self) {
        self.ctrl.abort();
    }

    /// A request under this call's signal; errors are `ABORTED` whenever the caller aborted.
    pub async fn get(&self, url: &str, range: Option<Range<u64>>) -> Result<Response> {
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
        .map_err(|e| web::js_error(e, ErrorCode::InvalidArgument, &format!("bad model URL {url:?}")))?;
    if let Some(r) = range {
        req.headers().set("Range", &format!("bytes={}-{}", r.start, r.end - 1)).map_err(web::internal("Range header"))?;
    }
    Ok(req)
}

/// Whether `e` is [`request`]'s error for an HTTP `status`.
pub(super) fn is_http_status(e: &Error, status: u16) -> bool {
    e.code == ErrorCode::Network && e.message.starts_with(&format!("HTTP {status} "))
}

/// A GET of `url` (bytes `range` when given); any status outside 2xx is a `NETWORK` error
/// (message "HTTP <status> for <url>: ...", see [`is_http_status`]).
pub(super) async fn request(url: &str, range: Option<Range<u64>>, signal: Option<&AbortSignal>) -> Result<Response> {
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

pub(super) fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers().get(name).ok().flatten()
}

/// The answer to the first request for a part.
pub(super) struct Probe {
    pub resp: Option<Response>,
    /// The server honours Range requests (HTTP 206).
    pub ranged: bool,
    /// The chunk `resp` holds, when ranged.
    pub ranged_chunk: Option<usize>,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Request bytes `first` (chunk `chunk`) of `url` and read size, validators and Range support
/// from the answer.
pub(super) async fn probe_url(net: &Requests, url: &str, first: Range<u64>, chunk: usize) -> Result<Probe> {
    let (resp, first, chunk) = match net.get(url, Some(first.clone())).await {
        // 416: the file is now shorter than the chunk we would resume from (it shrank or was
        // replaced): probe it afresh from its start, so the caller sees the new size and starts over.
        Err(e) if first.start > 0 && is_http_status(&e, 416) => (net.get(url, Some(0..first.end - first.start)).await?, 0..first.end - first.start, 0),
        r => (r?, first, chunk),
    };
    let etag = header(&resp, "ETag");
    let last_modified = header(&resp, "Last-Modified");
    if resp.status() == 206 && header(&resp, "Content-Range").is_none() {
        // Range works but CORS hides Content-Range (a CDN without it in
        // Access-Control-Expose-Headers): the file's size is unknowable from ranged answers, so
        // read it as one stream, as from a server without Range support.
        if let Some(b) = resp.body() {
            super::web::ignore_rejection(b.cancel());
        }
        return probe_whole(net, url).await;
    }
    if resp.status() == 206 {
        let cr = header(&resp, "Content-Range").and_then(|v| parse_content_range(&v));
        let Some(cr) = cr.filter(|cr| cr.start == first.start && cr.total.is_some()) else {
            return Err(Error::new(ErrorCode::Network, format!("{url}: the server answered a Range request with a bad Content-Range")));
        };
        return Ok(Probe { resp: Some(resp), ranged: true, ranged_chunk: Some(chunk), size: cr.total, etag, last_modified });
    }
    probe_from_full(resp)
}

/// A GET of the whole file, as its probe (the streaming path).
async fn probe_whole(net: &Requests, url: &str) -> Result<Probe> {
    probe_from_full(net.get(url, None).await?)
}

/// The probe of a response that carries the whole file (HTTP 200).
fn probe_from_full(resp: Response) -> Result<Probe> {
    let etag = header(&resp, "ETag");
    let last_modified = header(&resp, "Last-Modified");
    // No Range support; the body is the whole file. Its length is known unless the server
    // compresses on the fly (Content-Length then counts compressed bytes).
    let encoded = header(&resp, "Content-Encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity"));
    let size = if encoded { None } else { header(&resp, "Content-Length").and_then(|v| v.trim().parse().ok()) };
    Ok(Probe { resp: Some(resp), ranged: false, ranged_chunk: None, size, etag, last_modified })
}

/// Reads a response body in pieces of the caller's choosing; the bytes stay on the JS side.
pub(super) struct Body {
    reader: Option<ReadableStreamDefaultReader>,
    pending: Option<Uint8Array>,
}

impl Body {
    pub fn new(resp: &Response) -> Body {
        let reader = resp.body().map(|b| b.get_reader().unchecked_into());
        Body { reader, pending: None }
    }

    /// Up to `n` bytes; fewer only at the end of the body. Each piece is added to `progress`.
    pub async fn take(&mut self, net: &Requests, progress: &RefCell<Reporter>, n: u64) -> Result<(Vec<Uint8Array>, u64)> {
        let mut out = Vec::new();
        let mut got = 0u64;
        while got < n {
            let piece = match self.pending.take() {
                Some(p) => p,
                None => {
                    let Some(reader) = &self.reader else { break };
                    let r = wait(reader.read(), ErrorCode::Network, "the connection was lost during the download")
                        .await
                        .map_err(|e| net.classify(e))?;
                    if Reflect::get(&r, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
                        self.reader = None;
                        break;
                    }
                    Reflect::get(&r, &"value".into()).map_err(web::internal("stream read"))?.unchecked_into()
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
            progress.borrow_mut().add(used);
        }
        Ok((out, got))
    }

    pub fn cancel(&mut self) {
        if let Some(r) = self.reader.take() {
            web::ignore_rejection(r.cancel());
        }
    }
}

/// Bytes `r` of a URL of `size` bytes, by Range request (for `cache: false`).
pub(super) async fn fetch_range_bytes(url: &str, r: Range<u64>, size: u64) -> Result<Uint8Array> {
    let resp = request(url, Some(r.clone()), None).await?;
    let cr = header(&resp, "Content-Range").and_then(|v| parse_content_range(&v));
    if resp.status() != 206 || !cr.is_some_and(|cr| cr.start == r.start && cr.end == r.end && cr.total == Some(size)) {
        return Err(Error::new(ErrorCode::Network, format!("{url}: the file changed on the server or lost Range support")));
    }
    let buf = wait(resp.array_buffer().map_err(web::internal("Response.arrayBuffer"))?, ErrorCode::Network, url).await?;
    let a = Uint8Array::new(&buf);
    if a.length() as u64 != r.end - r.start {
        return Err(Error::new(ErrorCode::Network, format!("{url}: the connection closed early")));
    }
    Ok(a)
}
