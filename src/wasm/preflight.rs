//! `preflight(source, options)`: what loading `source` with `options` (those of `load`) would
//! take, before any download (see `crate::preflight`). The header comes from the stored copy when
//! browser storage holds one (no request at all), from a `File` or bytes whole, and from a URL as
//! far as its first 1/128 (at most 4 MiB, after a 4 KiB probe): a whole header where it fits,
//! else the metadata there (the products' types then inferred). In Node the JS layer passes
//! `{ size, read(offset, length) }` over the file.
//!
//! Resolves to `{ fileBytes, architecture, quantization, quantizationExact, contextLength,
//! kvBytes, fitsQuota, fitsMemory, memoryReason, backend, backendReason, persisted, stored,
//! headerBytesRead, estimate: { decodeTokensPerSecond, prefillTokensPerSecond, ms } }`.

use js_sys::{Function, Promise, Reflect, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::convert::{from_js, to_js, to_js_error, JsResult};
use super::options::JsLoadOptions;
use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::GPU_KV_BUDGET;
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::{self, Gguf, Parsed};
use crate::load::{pick_backend, Picked};
use crate::preflight::{estimate, fits_cpu, fits_gpu, Estimate, MemoryFit, Shape};
use crate::storage::{OpenOptions, StoredModel};

/// The largest prefix read of a remote file: 1/128 of it, at most this.
const MAX_PREFIX: u64 = 4 << 20;
const MIN_PREFIX: u64 = 64 << 10;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    file_bytes: u64,
    architecture: String,
    quantization: Vec<(String, u64)>,
    quantization_exact: bool,
    context_length: usize,
    kv_bytes: u64,
    fits_quota: Option<bool>,
    fits_memory: bool,
    memory_reason: String,
    backend: &'static str,
    backend_reason: String,
    persisted: Option<bool>,
    stored: bool,
    header_bytes_read: u64,
    estimate: JsEstimate,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsEstimate {
    decode_tokens_per_second: f64,
    prefill_tokens_per_second: f64,
    ms: f64,
}

/// Where the header is read from.
enum Header {
    Stored(StoredModel),
    Bytes(Uint8Array),
    /// `{ size, read(offset, length) => Promise<Uint8Array> }`.
    Reader { size: u64, read: Function, this: JsValue },
}

impl Header {
    fn size(&self) -> u64 {
        match self {
            Header::Stored(m) => m.size(),
            Header::Bytes(a) => a.length() as u64,
            Header::Reader { size, .. } => *size,
        }
    }

    async fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let len = len.min(self.size().saturating_sub(offset));
        match self {
            Header::Stored(m) => m.read(offset, len as usize).await,
            Header::Bytes(a) => Ok(a.subarray(offset as u32, (offset + len) as u32).to_vec()),
            Header::Reader { read, this, .. } => {
                let p = read.call2(this, &JsValue::from_f64(offset as f64), &JsValue::from_f64(len as f64)).map_err(read_error)?;
                let v = wasm_bindgen_futures::JsFuture::from(Promise::resolve(&p)).await.map_err(read_error)?;
                let a = v.dyn_into::<Uint8Array>().map_err(|_| Error::invalid_argument("read(offset, length) must resolve to a Uint8Array"))?;
                Ok(a.to_vec())
            }
        }
    }

    /// The whole header, read by growing prefixes.
    async fn whole(&self) -> Result<Gguf> {
        match self {
            Header::Stored(m) => m.header().await,
            _ => gguf::read_header(self.size(), |len| self.read(0, len)).await,
        }
    }
}

fn read_error(e: JsValue) -> Error {
    let msg = Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string()).or_else(|| e.as_string()).unwrap_or_default();
    Error::new(ErrorCode::Network, format!("reading the model failed: {msg}"))
}

/// The model's shape, read as little as the source allows; and how many bytes that took.
async fn shape_of(h: &Header, remote: bool) -> Result<(Shape, u64)> {
    if !remote {
        let g = h.whole().await?;
        return Ok((Shape::from_gguf(&g)?, g.data_offset));
    }
    let size = h.size();
    let len = (size / 128).clamp(MIN_PREFIX, MAX_PREFIX).min(size);
    let prefix = h.read(0, len).await?;
    if let Parsed::Complete(g) = gguf::parse(&prefix, Some(size))? {
        return Ok((Shape::from_gguf(&g)?, len));
    }
    match Shape::from_metadata(&gguf::scan_metadata(&prefix)?, size) {
        Ok(s) => Ok((s, len)),
        // The sizes are not among the first entries: the whole header, then.
        Err(_) => {
            let g = h.whole().await?;
            Ok((Shape::from_gguf(&g)?, g.data_offset.max(len)))
        }
    }
}

fn reader(source: &JsValue) -> Option<Header> {
    if source.is_instance_of::<web_sys::Blob>() || !source.is_object() {
        return None;
    }
    let size = Reflect::get(source, &"size".into()).ok()?.as_f64()?;
    let read = Reflect::get(source, &"read".into()).ok()?.dyn_into::<Function>().ok()?;
    (size >= 0.0 && size.fract() == 0.0).then(|| Header::Reader { size: size as u64, read, this: source.clone() })
}

async fn run(source: JsValue, options: JsValue) -> Result<Report> {
    let opts = from_js::<JsLoadOptions>(options, "preflight options")?.check()?;
    let (header, remote, stored) = if let Some(a) = source.dyn_ref::<Uint8Array>() {
        (Header::Bytes(a.clone()), false, false)
    } else if let Some(r) = reader(&source) {
        (r, true, false)
    } else {
        let src = super::source::parse_source(&source)?;
        let is_url = matches!(src, crate::storage::Source::Url(_) | crate::storage::Source::Urls(_));
        let open = opts.open_options();
        match crate::storage::open_stored(src.clone(), &open).await? {
            Some(m) => (Header::Stored(m), false, true),
            None => {
                let direct = OpenOptions { on_progress: None, ..open };
                (Header::Stored(crate::storage::open_unchecked(src, direct).await?), is_url, false)
            }
        }
    };
    let file_bytes = header.size();
    let (shape, header_bytes_read) = shape_of(&header, remote).await?;
    let context_length = shape.context_length(opts.engine.n_ctx);
    let kv = shape.kv_shape(context_length).with_type(opts.engine.kv_type);
    let kv_bytes = kv.bytes().unwrap_or(u64::MAX);
    let (backend, backend_reason, fit, est): (&'static str, String, MemoryFit, Estimate) = match pick_backend(&opts.engine).await? {
        Picked::Cpu(reason) => {
            let mut b = CpuBackend::new();
            let est = estimate(&mut b, &shape).await?;
            ("cpu", reason, fits_cpu(file_bytes, kv_bytes), est)
        }
        Picked::Gpu { mut backend, auto } => {
            let limit = (backend.ctx.limits.max_storage_buffer_binding_size as u64).min(backend.ctx.limits.max_buffer_size);
            let fit = fits_gpu(&shape, kv, limit, GPU_KV_BUDGET);
            let how = if auto { "GPU backend (auto)" } else { "GPU backend, as requested" };
            let reason = format!("{how}; adapter: {}; its self-check runs at load", backend.ctx.describe());
            let est = estimate(&mut backend, &shape).await?;
            ("webgpu", reason, fit, est)
        }
    };
    let fits_quota = if stored {
        Some(true)
    } else if !opts.cache || !crate::storage::has_storage() {
        None
    } else {
        crate::storage::usage().await.ok().map(|u| (u.quota - u.usage) >= file_bytes as f64 + (1 << 20) as f64)
    };
    Ok(Report {
        file_bytes,
        architecture: shape.architecture.clone(),
        quantization: shape.quantization.clone(),
        quantization_exact: shape.exact,
        context_length,
        kv_bytes,
        fits_quota,
        fits_memory: fit.fits,
        memory_reason: fit.reason,
        backend,
        backend_reason,
        persisted: crate::storage::quota::persisted().await,
        stored,
        header_bytes_read,
        estimate: JsEstimate {
            decode_tokens_per_second: est.decode_tokens_per_second,
            prefill_tokens_per_second: est.prefill_tokens_per_second,
            ms: est.ms,
        },
    })
}

/// See the module docs.
#[wasm_bindgen(js_name = preflight)]
pub async fn preflight(source: JsValue, options: JsValue) -> JsResult<JsValue> {
    let r = run(source, options).await.map_err(to_js_error)?;
    to_js(&r)
}
