//! sha256 over bytes that live on the JS side, without copying them all into wasm memory at once.

use js_sys::{Function, Promise, Reflect, Uint8Array};
use sha2::{Digest, Sha256};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Bytes copied into wasm memory per step: bounds the scratch buffer however big the input is.
const WINDOW: u32 = 1 << 20;

/// An incremental sha256 with its own bounded scratch buffer.
pub struct Hasher {
    h: Sha256,
    scratch: Vec<u8>,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher { h: Sha256::new(), scratch: Vec::new() }
    }
}

impl Hasher {
    /// Hash a JS byte array, one window at a time.
    pub fn update_js(&mut self, a: &Uint8Array) {
        let len = a.length();
        let mut at = 0;
        while at < len {
            let n = (len - at).min(WINDOW);
            self.scratch.resize(n as usize, 0);
            a.subarray(at, at + n).copy_to(&mut self.scratch);
            self.h.update(&self.scratch);
            at += n;
        }
    }

    pub fn finish_hex(self) -> String {
        hex(&self.h.finalize())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// sha256 (hex) of a JS byte array: the platform's `crypto.subtle.digest` where the context has it
/// (secure contexts, Workers, Node; several times faster than hashing in wasm), else [`Hasher`].
pub async fn sha256_js(a: &Uint8Array) -> String {
    let subtle = super::web::global_get("crypto").and_then(|c| Reflect::get(&c, &"subtle".into()).ok());
    let digest = subtle.as_ref().and_then(|s| Reflect::get(s, &"digest".into()).ok()).and_then(|f| f.dyn_into::<Function>().ok());
    if let (Some(subtle), Some(digest)) = (subtle, digest) {
        if let Ok(p) = digest.call2(&subtle, &"SHA-256".into(), a).and_then(|p| p.dyn_into::<Promise>().map_err(Into::into)) {
            if let Ok(buf) = JsFuture::from(p).await {
                return hex(&Uint8Array::new(&buf).to_vec());
            }
        }
    }
    let mut h = Hasher::default();
    h.update_js(a);
    h.finish_hex()
}
