//! HTTP for model downloads and uncached reads: requests that bypass the HTTP cache, status ->
//! [`Error`] mapping, the cancellation and inactivity timeout of one `open` call's requests
//! ([`Requests`]: a request or body read that gets nothing for the timeout fails with `NETWORK`),
//! the first answer for a part ([`probe_url`] -> [`Probe`]: size, validators, Range support),
//! response bodies read in pieces ([`Body`]) and single Range reads ([`fetch_range_bytes`]).

use std::cell::RefCell;
use std::ops::Range;

use js_sys::{Array, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, AbortSignal, ReadableStreamDefaultReader, Request, RequestCache, RequestInit, Response};

use super::manifest::parse_content_range;
use super::progress::Reporter;
use super::web::{self, wait};
use crate::error::{Error, ErrorCode, Result};
use crate::timer::Deadline;

/// Default inactivity timeout of downloads and uncached reads: a request or a body read that gets
/// nothing for this long fails with `NETWORK`.
pub const DEFAULT_INACTIVITY_TIMEOUT_MS: u32 = 30_000;

/// The requests of one `open` call: aborted when the caller's signal fires or when we cancel the
/// ones in flight (after a failure, or when the call ends).
pub(super) struct Requests {
    user_signal: Option<AbortSignal>,
    ctrl: AbortController,
    /// Aborts when the caller's signal does or when we cancel in-flight requests.
    signal: AbortSignal,
    /// Milliseconds a request or a body read may go without an answer (0: no limit).
    timeout_ms: u32,
}

impl Requests {
    pub fn new(user_signal: Option<AbortSignal>, timeout_ms: u32) -> Result<Requests> {
        let ctrl = AbortController::new().map_err(web::internal("AbortController"))?;
        let signal = match &user_signal {
            Some(s) => AbortSignal::any(&js_sys::Array::of2(s, &ctrl.signal())),
            None => ctrl.signal(),
        };
        Ok(Requests { user_signal, ctrl, signal, timeout_ms })
    }

    /// Await `p` (a request for `url` or a read of its body). Nothing for the inactivity timeout
    /// is a `NETWORK` error naming the URL and what stalled, and cancels this call's requests;
    /// other failures are mapped as [`web::wait`] does, `ABORTED` whenever the caller aborted.
    pub async fn within(&self, p: Promise, url: &str, what: &str, code: ErrorCode) -> Result<JsValue> {
        if self.timeout_ms == 0 {
            return wait(p, code, &format!("{what} {url}")).await.map_err(|e| self.classify(e));
        }
        let deadline = Deadline::new(self.timeout_ms);
        match JsFuture::from(Promise::race(&Array::of2(&p, deadline.promise()))).await {
            Ok(v) => Ok(v),
            Err(e) if Deadline::passed(&e) => {
                self.cancel();
                let secs = self.timeout_ms as f64 / 1000.0;
                Err(self.classify(Error::new(
                    ErrorCode::Network,
                    format!("{url}: the server stalled ({what}: nothing for {secs} s; inactivityTimeout); try again"),
                )))
            }
            Err(e) => Err(self.classify(web::js_error(e, code, &format!("{what} {url}")))),
        }
    }

    pub fn timeout_ms(&self) -> u32 {
        self.timeout_ms
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

    /// A request under this call's signal and inactivity timeout; errors are `ABORTED` whenever
    /// the caller aborted.
    pub async fn get(&self, url: &str, range: Option<Range<u64>>) -> Result<Response> {
        let req = request_for(url, range, Some(&self.signal))?;
        let resp: Response = self.within(web::fetch_promise(&req), url, "waiting for an answer from", ErrorCode::Network).await?.unchecked_into();
        check_status(url, resp)
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

/// `resp` to a GET of `url`; any status outside 2xx is a `NETWORK` error (message "HTTP <status>
/// for <url>: ...", see [`is_http_status`]).
fn check_status(url: &str, resp: Response) -> Result<Response> {
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
pub(super) async fn probe_whole(net: &Requests, url: &str) -> Result<Probe> {
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
    url: String,
    reader: Option<ReadableStreamDefaultReader>,
    pending: Option<Uint8Array>,
}

impl Body {
    pub fn new(resp: &Response) -> Body {
        let reader = resp.body().map(|b| b.get_reader().unchecked_into());
        Body { url: resp.url(), reader, pending: None }
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
                    let r = net.within(reader.read(), &self.url, "the connection was lost reading", ErrorCode::Network).await?;
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

/// Bytes `r` of a URL of `size` bytes, by Range request (for `cache: false`), under the default
/// inactivity timeout.
pub(super) async fn fetch_range_bytes(url: &str, r: Range<u64>, size: u64) -> Result<Uint8Array> {
    let net = Requests::new(None, DEFAULT_INACTIVITY_TIMEOUT_MS)?;
    let resp = net.get(url, Some(r.clone())).await?;
    let cr = header(&resp, "Content-Range").and_then(|v| parse_content_range(&v));
    if resp.status() != 206 || !cr.is_some_and(|cr| cr.start == r.start && cr.end == r.end && cr.total == Some(size)) {
        return Err(Error::new(ErrorCode::Network, format!("{url}: the file changed on the server or lost Range support")));
    }
    let body = resp.array_buffer().map_err(web::internal("Response.arrayBuffer"))?;
    let buf = net.within(body, url, "the connection was lost reading", ErrorCode::Network).await?;
    let a = Uint8Array::new(&buf);
    if a.length() as u64 != r.end - r.start {
        return Err(Error::new(ErrorCode::Network, format!("{url}: the connection closed early")));
    }
    Ok(a)
}
