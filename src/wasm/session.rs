//! Saved sessions from JS (see [`crate::session`] for the file, [`crate::storage::sessions`] for
//! where it lives): the engine's cache written out layer by layer as JS byte arrays (wasm memory
//! holds one layer at a time), and read back from a stored `Blob` or the caller's bytes, each layer
//! checked against its hash before it reaches the cache.

use js_sys::Uint8Array;
use web_sys::Blob;

use crate::error::{Error, Result};
use crate::load::AnyEngine;
use crate::session::{sha256_hex, Expect, SessionHeader, LEAD};

/// The session file of what `engine` holds, as pieces to store or concatenate, and its token count.
pub async fn file_pieces(engine: &mut AnyEngine, model: &str) -> Result<(Vec<Uint8Array>, usize)> {
    let tokens = engine.cached_tokens().to_vec();
    if tokens.is_empty() {
        return Err(Error::invalid_argument("there is nothing to save: the engine holds no conversation yet (generate first)"));
    }
    let n = tokens.len();
    let mut h = SessionHeader::new(model, engine.kv_shape(), tokens);
    let mut pieces = Vec::with_capacity(h.n_layer + 1);
    pieces.push(Uint8Array::new_with_length(0));
    for l in 0..h.n_layer {
        let bytes = engine.read_kv_layer(l).await?;
        h.layers.push(sha256_hex(&bytes));
        pieces.push(Uint8Array::from(&bytes[..]));
    }
    pieces[0] = Uint8Array::from(&h.encode()[..]);
    Ok((pieces, n))
}

/// Where a session file is read from.
pub enum SessionBytes {
    Stored(Blob),
    Js(Uint8Array),
}

impl SessionBytes {
    fn size(&self) -> u64 {
        match self {
            SessionBytes::Stored(b) => b.size() as u64,
            SessionBytes::Js(a) => a.length() as u64,
        }
    }

    /// `len` bytes from `offset` (both within the size, checked by the caller's header checks).
    async fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        match self {
            SessionBytes::Stored(b) => crate::storage::sessions::read_range(b, offset, len).await,
            SessionBytes::Js(a) => {
                let end = offset.checked_add(len).filter(|&e| e <= a.length() as u64);
                let end = end.ok_or_else(|| Error::invalid_argument("session bytes: a range past the end"))?;
                Ok(a.subarray(offset as u32, end as u32).to_vec())
            }
        }
    }
}

/// What a restore did.
pub struct Restored {
    pub tokens: usize,
    /// The engine already held these tokens (the session was this engine's own, or restored
    /// before): only the header was read.
    pub already_held: bool,
}

/// Restore the session in `src` into `engine`: the header is checked against the engine, then
/// each layer against its hash as it is written. A damaged session is `INTEGRITY`.
pub async fn restore(engine: &mut AnyEngine, model: &str, src: &SessionBytes) -> Result<Restored> {
    let size = src.size();
    let expect = Expect { model, shape: engine.kv_shape(), n_vocab: engine.tokenizer().n_vocab() };
    let lead = src.read(0, LEAD.min(size)).await?;
    let n = SessionHeader::header_len(&lead, size)?;
    let rest = src.read(LEAD, n).await?;
    let (h, mut at) = SessionHeader::parse(&rest, size, expect)?;
    if engine.cached_tokens().starts_with(&h.tokens) {
        return Ok(Restored { tokens: h.tokens.len(), already_held: true });
    }
    let len = h.layer_bytes().expect("parse checked the size");
    engine.restore_begin(h.tokens.len())?;
    for l in 0..h.n_layer {
        let bytes = src.read(at, len).await?;
        h.check_layer(l, &bytes)?;
        engine.restore_layer(l, h.tokens.len(), &bytes)?;
        at += len;
    }
    let tokens = h.tokens.len();
    engine.restore_end(h.tokens);
    Ok(Restored { tokens, already_held: false })
}
