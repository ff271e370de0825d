//! [`StoredModel`]: reads a complete model by byte range, from the store or straight from the source.
//!
//! A read touches only the chunks (or part slices) it overlaps; each comes back as a JS byte array
//! (a `Blob` slice) and is copied once into the returned `Vec`. Loading a model reads the GGUF header
//! ([`StoredModel::header`]) and then the weights through the engine's `TensorSource` (see
//! `crate::wasm::source`): both backends read quantized tensors in pieces of at most 8 MiB (the
//! CPU repacks each piece into the weight it keeps, the GPU uploads it), so wasm memory never
//! holds the file twice (CPU) or more than one piece of it (GPU).
//!
//! Owns [`Backing`] (store, local Blobs, or URLs read by Range via [`super::http`]) and the reads,
//! header parsing, missing-chunk scan and whole-file sha256 over it. It depends on the store,
//! [`super::http`] and [`super::progress`], never on the download engine.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;

use js_sys::Uint8Array;
use web_sys::Blob;

use super::http::fetch_range_bytes;
use super::kind::StoreKind;
use super::manifest::{chunk_range, Manifest};
use super::progress::Reporter;
use super::sha::{sha256_js, Hasher};
use super::store::Store;
use super::web::blob_bytes;
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::{self, Gguf};

/// Read granularity where the source has no chunks of its own (Blobs, direct URLs).
const WINDOW: u64 = 8 << 20;

/// Verified chunks kept in JS memory for the reads that follow (loads read chunks in order).
const VERIFIED_KEPT: usize = 2;

pub(super) enum Backing {
    /// `blobs`: chunk files found (right size); `verified`: the last chunks read whole and checked
    /// against their recorded sha256, served from memory.
    Store {
        store: Rc<Store>,
        manifest: Manifest,
        blobs: RefCell<HashMap<(usize, usize), Blob>>,
        verified: RefCell<Vec<((usize, usize), Uint8Array)>>,
    },
    Blobs(Vec<Blob>),
    Urls { urls: Vec<String>, sizes: Vec<u64> },
}

impl Backing {
    pub fn store(store: Rc<Store>, manifest: Manifest) -> Backing {
        Backing::Store { store, manifest, blobs: RefCell::new(HashMap::new()), verified: RefCell::new(Vec::new()) }
    }
}

/// A part-relative piece of a read: `(part, chunk, range within the chunk)` for a store, `(part, 0,
/// range within the part)` otherwise.
type Seg = (usize, usize, Range<u64>);

/// A complete model, readable by byte range of the logical (concatenated) file.
pub struct StoredModel {
    key: String,
    /// `(offset, size)` of each part in the logical file.
    parts: Vec<(u64, u64)>,
    size: u64,
    pub(super) backing: Backing,
}

impl StoredModel {
    pub(super) fn new(key: String, backing: Backing) -> StoredModel {
        let sizes: Vec<u64> = match &backing {
            Backing::Store { manifest, .. } => manifest.parts.iter().map(|p| p.size).collect(),
            Backing::Blobs(b) => b.iter().map(|b| b.size() as u64).collect(),
            Backing::Urls { sizes, .. } => sizes.clone(),
        };
        // (Callers check that the sizes add up within a u64: see `storage::open_direct`.)
        let mut at = 0u64;
        let parts = sizes
            .iter()
            .map(|&s| {
                let start = at;
                at = at.saturating_add(s);
                (start, s)
            })
            .collect();
        StoredModel { key, parts, size: at, backing }
    }

    pub fn size(&self) -> u64 {
        self.size
    }
    /// The cache key.
    pub fn key(&self) -> &str {
        &self.key
    }
    /// Whether the bytes come from a copy in browser storage (not the source itself).
    pub fn is_stored(&self) -> bool {
        matches!(self.backing, Backing::Store { .. })
    }
    /// `(offset, size)` of each part (one for a plain GGUF); each part starts with its own header.
    pub fn parts(&self) -> &[(u64, u64)] {
        &self.parts
    }
    /// The store holding the bytes, `None` when reading straight from the source.
    pub fn store(&self) -> Option<StoreKind> {
        match &self.backing {
            Backing::Store { store, .. } => Some(store.kind()),
            _ => None,
        }
    }
    /// Whole-file sha256 when it was verified.
    pub fn sha256(&self) -> Option<&str> {
        match &self.backing {
            Backing::Store { manifest, .. } => manifest.sha256.as_deref(),
            _ => None,
        }
    }

    fn segments(&self, r: Range<u64>) -> Vec<Seg> {
        if let Backing::Store { manifest, .. } = &self.backing {
            return manifest.chunks_in(r);
        }
        let mut out = Vec::new();
        for (p, &(base, size)) in self.parts.iter().enumerate() {
            let (s, e) = (r.start.max(base), r.end.min(base + size));
            if s < e {
                out.push((p, 0, s - base..e - base));
            }
        }
        out
    }

    /// Ranges of the logical file that each lie in one segment, covering it in order.
    fn windows(&self) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        for &(base, size) in &self.parts {
            let step = match &self.backing {
                Backing::Store { manifest, .. } => manifest.chunk_size,
                _ => WINDOW,
            };
            let mut at = 0;
            while at < size {
                let end = (at + step).min(size);
                out.push(base + at..base + end);
                at = end;
            }
        }
        out
    }

    async fn chunk_blob(&self, part: usize, chunk: usize) -> Result<Option<Blob>> {
        let Backing::Store { store, manifest, blobs, .. } = &self.backing else { unreachable!() };
        if let Some(b) = blobs.borrow().get(&(part, chunk)) {
            return Ok(Some(b.clone()));
        }
        let r = chunk_range(manifest.parts[part].size, manifest.chunk_size, chunk);
        let b = store.chunk(&self.key, part, chunk).await?.filter(|b| b.size() as u64 == r.end - r.start);
        if let Some(b) = &b {
            blobs.borrow_mut().insert((part, chunk), b.clone());
        }
        Ok(b)
    }

    async fn seg_bytes(&self, (part, chunk, r): &Seg) -> Result<Uint8Array> {
        match &self.backing {
            Backing::Store { .. } => {
                let bytes = self.verified_chunk(*part, *chunk).await?;
                Ok(bytes.subarray(r.start as u32, r.end as u32))
            }
            Backing::Blobs(blobs) => slice_bytes(&blobs[*part], r.clone(), ErrorCode::InvalidArgument).await,
            Backing::Urls { urls, sizes } => fetch_range_bytes(&urls[*part], r.clone(), sizes[*part]).await,
        }
    }

    /// A stored chunk's bytes, read whole and checked against the sha256 recorded when it was
    /// written: storage changed behind our back (another program, a disk error, a hostile
    /// extension) is never used. A damaged chunk is forgotten in the manifest, so opening the model
    /// again downloads just that chunk.
    async fn verified_chunk(&self, part: usize, chunk: usize) -> Result<Uint8Array> {
        let Backing::Store { store, manifest, verified, .. } = &self.backing else { unreachable!() };
        if let Some((_, b)) = verified.borrow().iter().find(|(k, _)| *k == (part, chunk)) {
            return Ok(b.clone());
        }
        let damaged = |why: &str| {
            Error::new(
                ErrorCode::Integrity,
                format!("stored chunk {part}/{chunk} of {} {why}; open the model again to repair it", self.key),
            )
        };
        let blob = self.chunk_blob(part, chunk).await?.ok_or_else(|| damaged("is missing or has the wrong size"))?;
        // A chunk deleted since its Blob was taken cannot be read any more (NotReadableError).
        let bytes = blob_bytes(&blob, ErrorCode::Integrity, &format!("stored chunk {part}/{chunk} of {} could not be read (deleted from browser storage?)", self.key)).await?;
        let want = manifest.parts[part].chunks.get(chunk).cloned().flatten();
        if want.as_deref() != Some(sha256_js(&bytes).await.as_str()) {
            let mut m = manifest.clone();
            m.complete = false;
            m.sha256 = None;
            if let Some(c) = m.parts[part].chunks.get_mut(chunk) {
                *c = None;
            }
            let _ = store.save_manifest(&m).await;
            return Err(damaged("does not match the sha256 recorded when it was written"));
        }
        let mut v = verified.borrow_mut();
        if v.len() == VERIFIED_KEPT {
            v.remove(0);
        }
        v.push(((part, chunk), bytes.clone()));
        Ok(bytes)
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        if !offset.checked_add(len).is_some_and(|end| end <= self.size) {
            return Err(Error::invalid_argument(format!(
                "read of {len} bytes at {offset} is past the end of the model ({} bytes)",
                self.size
            )));
        }
        Ok(())
    }

    /// Bytes `offset..offset + len` of the logical file, as a JS array (not copied into wasm memory).
    pub async fn read_js(&self, offset: u64, len: usize) -> Result<Uint8Array> {
        self.check_range(offset, len as u64)?;
        let segs = self.segments(offset..offset + len as u64);
        if segs.len() == 1 {
            return self.seg_bytes(&segs[0]).await;
        }
        let out = Uint8Array::new_with_length(len as u32);
        let mut at = 0;
        for s in &segs {
            let b = self.seg_bytes(s).await?;
            out.set(&b, at);
            at += b.length();
        }
        Ok(out)
    }

    /// Bytes `offset..offset + len` of the logical (concatenated) file.
    pub async fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.check_range(offset, len as u64)?;
        let mut out = Vec::new();
        out.try_reserve_exact(len)
            .map_err(|_| Error::invalid_argument(format!("cannot allocate {len} bytes of wasm memory for a read")))?;
        out.resize(len, 0);
        let mut at = 0;
        for s in self.segments(offset..offset + len as u64) {
            let b = self.seg_bytes(&s).await?;
            let n = b.length() as usize;
            b.copy_to(&mut out[at..at + n]);
            at += n;
        }
        Ok(out)
    }

    /// Parse the GGUF header of part `i`, reading only as much of it as the header needs.
    pub async fn header_of_part(&self, i: usize) -> Result<Gguf> {
        let (base, size) = self.parts[i];
        gguf::read_header(size, |len| self.read(base, len as usize)).await.map_err(|e| match e.code {
            ErrorCode::BadGguf => Error::bad_gguf(format!("part {i}: {}", e.message)),
            _ => e,
        })
    }

    /// The model's GGUF header: the only part's, or for a split model every part's merged into
    /// one (`Gguf::merge_split`: tensor offsets relative to the start of the first part, so they
    /// index [`StoredModel::read`] directly).
    pub async fn header(&self) -> Result<Gguf> {
        let mut parts = Vec::new();
        for (i, &(base, size)) in self.parts.iter().enumerate() {
            parts.push((base, size, self.header_of_part(i).await?));
        }
        Gguf::merge_split(parts)
    }

    /// Chunks whose stored file is missing or has the wrong size.
    pub(super) async fn missing_chunks(&self) -> Result<Vec<(usize, usize)>> {
        let Backing::Store { manifest, .. } = &self.backing else { return Ok(vec![]) };
        let mut out = Vec::new();
        for (p, part) in manifest.parts.iter().enumerate() {
            for c in 0..part.chunks.len() {
                if self.chunk_blob(p, c).await?.is_none() {
                    out.push((p, c));
                }
            }
        }
        Ok(out)
    }

    /// Hash the whole file and compare with `want` (phase `"verify"`).
    pub(super) async fn verify_sha256(&self, want: &str, progress: &Rc<RefCell<Reporter>>) -> Result<()> {
        progress.borrow_mut().start("verify", 0, self.size);
        let mut h = Hasher::default();
        for w in self.windows() {
            let b = self.read_js(w.start, (w.end - w.start) as usize).await?;
            h.update_js(&b);
            progress.borrow_mut().add(w.end - w.start);
        }
        progress.borrow_mut().emit();
        let got = h.finish_hex();
        if got != want {
            return Err(Error::new(
                ErrorCode::Integrity,
                format!("{}: the file's sha256 is {got}, expected {want}; the bytes were discarded (try again)", self.key),
            ));
        }
        Ok(())
    }
}

async fn slice_bytes(b: &Blob, r: Range<u64>, code: ErrorCode) -> Result<Uint8Array> {
    let s = b.slice_with_f64_and_f64(r.start as f64, r.end as f64).map_err(super::web::internal("Blob.slice"))?;
    let a = blob_bytes(&s, code, "reading model bytes").await?;
    if a.length() as u64 != r.end - r.start {
        return Err(Error::new(code, format!("read {} bytes where {} were expected", a.length(), r.end - r.start)));
    }
    Ok(a)
}
