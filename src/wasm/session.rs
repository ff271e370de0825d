//! Saved sessions from JS (see [`crate::session`] for the file, [`crate::storage::sessions`] for
//! where it lives): the engine's cache written out layer by layer as JS byte arrays (wasm memory
//! holds one layer at a time), and read back from a stored `Blob` or the caller's bytes, each layer
//! checked against its hash before it reaches the cache.

use js_sys::Uint8Array;
use web_sys::Blob;

use crate::error::{Error, Result};
use crate::load::AnyEngine;

/// The session file of what `engine` holds, as pieces to store or concatenate (each layer
/// leaves wasm memory as it is read), and its token count.
pub async fn file_pieces(engine: &mut AnyEngine, model: &str) -> Result<(Vec<Uint8Array>, usize)> {
    if engine.cached_tokens().is_empty() {
        return Err(Error::invalid_argument("there is nothing to save: the engine holds no conversation yet (generate first)"));
    }
    let mut pieces = vec![Uint8Array::new_with_length(0)];
    let header = engine.save_session(model, |layer| pieces.push(Uint8Array::from(&layer[..]))).await?;
    pieces[0] = Uint8Array::from(&header[..]);
    Ok((pieces, engine.cached_tokens().len()))
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

impl Restored {
    /// `{tokens, alreadyHeld}` set on `out`.
    pub fn set_on(&self, out: &wasm_bindgen::JsValue) -> std::result::Result<(), wasm_bindgen::JsValue> {
        js_sys::Reflect::set(out, &"tokens".into(), &(self.tokens as f64).into())?;
        js_sys::Reflect::set(out, &"alreadyHeld".into(), &self.already_held.into())?;
        Ok(())
    }
}

/// Restore the session in `src` into `engine` (`Engine::load_session`); one the engine holds
/// already costs only its header. A damaged session is `INTEGRITY`.
pub async fn restore(engine: &mut AnyEngine, model: &str, src: &SessionBytes) -> Result<Restored> {
    let (tokens, already_held) = engine.load_session(model, src.size(), true, |at, len| src.read(at, len)).await?;
    Ok(Restored { tokens, already_held })
}
