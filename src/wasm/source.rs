//! A model source as the engine's [`TensorSource`]: bytes the caller holds (a JS `Uint8Array`,
//! never copied whole into wasm memory) or a model in browser storage ([`StoredModel`]). Each read
//! copies just the requested range into wasm memory: a piece of at most 8 MiB of a quantized
//! tensor (the CPU backend repacks it into the weight it keeps; the GPU backend uploads and drops
//! it), a small tensor whole; it reports progress (phase `"load"`, bytes of weights read) and
//! honours the load's `AbortSignal`.

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};

use crate::backend::{TensorBytes, TensorSource};
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::{self, Gguf};
use crate::storage::{ProgressFn, Reporter, Source, StoredModel};

/// The URL(s) of a Hugging Face id `hf:owner/repo/path/file.gguf[@revision]` (all parts of a split
/// model), on `endpoint` or the Hub (`storage::hub`). For the JS layer's Node path; in browsers
/// storage resolves ids itself.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = resolveHubId)]
pub fn resolve_hub_id(id: &str, endpoint: Option<String>) -> Result<Vec<String>, JsValue> {
    crate::storage::hub::resolve(id, endpoint.as_deref()).map_err(super::to_js_error)
}

/// The model source argument: a URL, a Hugging Face id, a Blob/File, or an array of either (split
/// parts, in order).
pub fn parse_source(v: &JsValue) -> Result<Source> {
    if let Some(s) = v.as_string() {
        return Ok(Source::Url(s));
    }
    if let Some(b) = v.dyn_ref::<web_sys::Blob>() {
        return Ok(Source::Blob(b.clone()));
    }
    if js_sys::Array::is_array(v) {
        let a: &js_sys::Array = v.unchecked_ref();
        if let Some(urls) = a.iter().map(|x| x.as_string()).collect::<Option<Vec<_>>>() {
            return Ok(Source::Urls(urls));
        }
        if a.iter().all(|x| x.is_instance_of::<web_sys::Blob>()) {
            return Ok(Source::Blobs(a.iter().map(JsCast::unchecked_into).collect()));
        }
    }
    Err(Error::invalid_argument("the model source must be a URL string, a Blob/File, or an array of either"))
}

#[derive(Clone)]
pub enum Bytes {
    /// A whole GGUF file held by JS.
    Js(Uint8Array),
    Stored(Rc<StoredModel>),
}

pub struct ModelSource {
    bytes: Bytes,
    size: u64,
    signal: Option<web_sys::AbortSignal>,
    progress: RefCell<Reporter>,
}

impl ModelSource {
    pub fn new(bytes: Bytes, signal: Option<web_sys::AbortSignal>, on_progress: Option<ProgressFn>) -> ModelSource {
        let size = match &bytes {
            Bytes::Js(a) => a.length() as u64,
            Bytes::Stored(m) => m.size(),
        };
        ModelSource { bytes, size, signal, progress: RefCell::new(Reporter::new(on_progress)) }
    }

    /// The bytes this source reads, to read them again later.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The GGUF header (for split models in storage: the parts' headers merged), read by growing
    /// prefixes. Starts the `"load"` progress phase over the tensor bytes.
    pub async fn header(&self) -> Result<Gguf> {
        let g = match &self.bytes {
            Bytes::Js(_) => gguf::read_header(self.size, |len| self.copy(0..len)).await?,
            Bytes::Stored(m) => m.header().await?,
        };
        self.progress.borrow_mut().start("load", 0, g.data_len());
        Ok(g)
    }

    /// The model's identity for saved sessions ([`crate::session::model_identity`]): its header
    /// and the first and last 64 KiB of its tensor data, read again here.
    pub async fn identity(&self, gguf: &Gguf) -> Result<String> {
        const END: u64 = 64 << 10;
        let start = gguf.data_offset.min(self.size);
        let header = self.copy(0..start).await?;
        let head = self.copy(start..start.saturating_add(END).min(self.size)).await?;
        let tail = self.copy(self.size.saturating_sub(END).max(start)..self.size).await?;
        Ok(crate::session::model_identity(self.size, &header, &[&head, &tail]))
    }

    /// Run `f` (this source's reads) so that no tab deletes or rewrites the stored copy meanwhile
    /// (`storage::while_reading`).
    pub async fn reading<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        match &self.bytes {
            Bytes::Js(_) => f.await,
            Bytes::Stored(m) => crate::storage::while_reading(m, f).await,
        }
    }

    /// Fires the `"load"` progress report for the last bytes read.
    pub fn finish(&self) {
        self.progress.borrow_mut().emit();
    }

    fn check_abort(&self) -> Result<()> {
        if self.signal.as_ref().is_some_and(|s| s.aborted()) {
            return Err(Error::new(ErrorCode::Aborted, "the load was aborted"));
        }
        Ok(())
    }

    /// `range` copied into a new wasm-memory buffer (allocated fallibly: a range that does not fit
    /// wasm memory is an error, not a trap).
    async fn copy(&self, range: Range<u64>) -> Result<Vec<u8>> {
        self.check_abort()?;
        if range.start > range.end || range.end > self.size {
            return Err(Error::bad_gguf(format!("bytes {range:?} lie past the end of the {}-byte file", self.size)));
        }
        let len = usize::try_from(range.end - range.start).map_err(|_| too_big(range.end - range.start))?;
        match &self.bytes {
            Bytes::Js(a) => {
                let (start, end) = (u32::try_from(range.start), u32::try_from(range.end));
                let (Ok(start), Ok(end)) = (start, end) else {
                    return Err(Error::invalid_argument(
                        "models over 4 GiB cannot be passed as bytes: load them from a URL or a File (browser storage)",
                    ));
                };
                let mut out = Vec::new();
                out.try_reserve_exact(len).map_err(|_| too_big(len as u64))?;
                out.resize(len, 0);
                a.subarray(start, end).copy_to(&mut out);
                Ok(out)
            }
            Bytes::Stored(m) => {
                let out = m.read(range.start, len).await?;
                self.check_abort()?;
                Ok(out)
            }
        }
    }
}

fn too_big(n: u64) -> Error {
    Error::invalid_argument(format!("cannot allocate {n} bytes of wasm memory for the model's weights"))
}

impl TensorSource for ModelSource {
    fn file_len(&self) -> u64 {
        self.size
    }
    async fn read(&self, range: Range<u64>) -> Result<TensorBytes> {
        let bytes = self.copy(range).await?;
        let n = bytes.len();
        self.progress.borrow_mut().add(n as u64);
        Ok(TensorBytes::new(Arc::new(bytes), 0..n))
    }
}
