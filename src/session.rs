//! Saved sessions: a conversation's token ids and its KV cache in one file, so that a page that
//! reloads continues the conversation without running its prompt again.
//!
//! ## File format (version 1)
//! ```text
//! "BLLMKV01"                     8 bytes, the magic (the last two digits are the version)
//! header length                  u32 little-endian, at most MAX_HEADER bytes
//! header                         JSON: SessionHeader
//! sha256(header)                 32 bytes
//! layer 0 keys, layer 0 values,  positions 0..nTokens, `kDim` (`vDim`) values each, in the
//! layer 1 keys, ...              cache type's layout (`kvCache`, absent: "f16"): f16 bit
//!                                patterns, little-endian, or q8_0 blocks (f16 scale, 32 i8)
//! ```
//! One layer (its keys then its values) is one chunk, with its sha256 in the header (`layers`).
//! The file's size must be exactly the prefix plus `nLayer * nTokens * (row(kDim) + row(vDim))`
//! ([`crate::backend::KvType::row_bytes`]), so a
//! truncated file, or a header that declares a huge size, is refused before anything is read past
//! the header. Everything is checked with checked arithmetic in u64 (wasm32's `usize` is 32 bits).
//!
//! The model's identity ([`model_identity`]) and the cache's shape must match the engine that
//! restores it (a q8_0 session restores only into a q8_0 cache); the tokens must fit its context
//! and its vocabulary. The CPU and the GPU read and write the same layout, so a session saved on
//! one restores on the other.
//!
//! Restoring never trusts a layer before its hash is checked; the engine forgets its cached tokens
//! before the first layer is written ([`crate::engine::Engine::load_session`]), so a restore that
//! fails half-way leaves an engine that runs the next prompt from scratch, never a mixed cache.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::{KvShape, KvType};
use crate::error::{Error, ErrorCode, Result};

pub const MAGIC: &[u8; 8] = b"BLLMKV01";
/// The longest header accepted (token ids as JSON: about 7 bytes each, so 2M tokens).
pub const MAX_HEADER: u32 = 16 << 20;
/// Bytes before the header: the magic and the header's length.
pub const LEAD: u64 = 12;
const HASH: u64 = 32;

/// What the file says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionHeader {
    pub version: u32,
    /// [`model_identity`] of the model that computed the cache.
    pub model: String,
    pub n_layer: usize,
    pub k_dim: usize,
    pub v_dim: usize,
    /// The cache type ([`KvType::name`]); files written before q8_0 caches existed have none: f16.
    #[serde(default = "f16_name")]
    pub kv_cache: String,
    /// The conversation's tokens, whose keys and values follow.
    pub tokens: Vec<u32>,
    /// sha256 (hex) of each layer's bytes.
    pub layers: Vec<String>,
}

/// What the restoring engine expects of a session.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    pub model: &'a str,
    pub shape: KvShape,
    pub n_vocab: usize,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A model's identity for sessions: sha256 over the file's size, its GGUF header (metadata and
/// tensor infos: `header`) and the first and last 64 KiB of its tensor data (`ends`), 32 hex
/// digits. Cheap on every source (no whole-file hash), and different for any two files that
/// differ in architecture, vocabulary, tensor layout or quantization.
pub fn model_identity(file_size: u64, header: &[u8], ends: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(file_size.to_le_bytes());
    h.update((header.len() as u64).to_le_bytes());
    // In pieces (the same digest): a fresh wasm module runs a function in its baseline code for
    // as long as one call lasts, and one call over a large vocabulary's header (Gemma 3: MBs)
    // took 200 ms there; from piece to piece the engine switches to the optimized code.
    for piece in header.chunks(1 << 16) {
        h.update(piece);
    }
    for e in ends {
        h.update((e.len() as u64).to_le_bytes());
        h.update(e);
    }
    hex(&h.finalize())[..32].to_owned()
}

fn f16_name() -> String {
    KvType::F16.name().to_owned()
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Integrity, format!("the saved session is damaged: {what}; it was removed"))
}

impl SessionHeader {
    pub fn new(model: &str, shape: KvShape, tokens: Vec<u32>) -> SessionHeader {
        SessionHeader {
            version: 1,
            model: model.to_owned(),
            n_layer: shape.n_layer,
            k_dim: shape.k_dim,
            v_dim: shape.v_dim,
            kv_cache: shape.ty.name().to_owned(),
            tokens,
            layers: Vec::new(),
        }
    }

    /// Bytes of one layer's keys and values, checked.
    pub fn layer_bytes(&self) -> Option<u64> {
        let ty = KvType::parse(&self.kv_cache).ok()?;
        let width = (ty.row_bytes(self.k_dim)? as u64).checked_add(ty.row_bytes(self.v_dim)? as u64)?;
        (self.tokens.len() as u64).checked_mul(width)
    }

    /// The magic, the header's length, the header and its hash: the bytes before the first layer.
    /// `layers` must hold every layer's hash by then.
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("a header serializes");
        let mut out = Vec::with_capacity(json.len() + 44);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&Sha256::digest(&json));
        out
    }

    /// The header's length from the file's first [`LEAD`] bytes, bounded by [`MAX_HEADER`] and by
    /// the file's size: how many more bytes (header and hash) to read.
    pub fn header_len(lead: &[u8], file_size: u64) -> Result<u64> {
        if lead.len() < LEAD as usize || file_size < LEAD {
            return Err(corrupt(format!("it is {file_size} bytes, too short for a session file")));
        }
        if &lead[..8] != MAGIC {
            return Err(corrupt("it does not start with a session file's magic (BLLMKV01)"));
        }
        let n = u32::from_le_bytes(lead[8..12].try_into().expect("4 bytes"));
        if n > MAX_HEADER || LEAD + n as u64 + HASH > file_size {
            return Err(corrupt(format!("its header claims {n} bytes of a {file_size}-byte file")));
        }
        Ok(n as u64 + HASH)
    }

    /// Parse and check the header (`rest`: the [`SessionHeader::header_len`] bytes after the
    /// lead) against the file's size and the restoring engine. Returns the header and the offset
    /// of the first layer. A damaged file, or one of another model or shape, is `INTEGRITY`; one
    /// longer than the engine's context is `CONTEXT_OVERFLOW` (it restores with a larger one).
    pub fn parse(rest: &[u8], file_size: u64, expect: Expect<'_>) -> Result<(SessionHeader, u64)> {
        if (rest.len() as u64) < HASH {
            return Err(corrupt("its header is cut short"));
        }
        let (json, hash) = rest.split_at(rest.len() - HASH as usize);
        if Sha256::digest(json).as_slice() != hash {
            return Err(corrupt("its header does not match its hash"));
        }
        let h: SessionHeader = serde_json::from_slice(json).map_err(|e| corrupt(format!("its header is not valid ({e})")))?;
        if h.version != 1 {
            return Err(corrupt(format!("it is version {}, this package reads version 1", h.version)));
        }
        if h.model != expect.model {
            return Err(corrupt(format!("it was saved from another model ({}, this one is {})", h.model, expect.model)));
        }
        let s = expect.shape;
        if (h.n_layer, h.k_dim, h.v_dim) != (s.n_layer, s.k_dim, s.v_dim) {
            return Err(corrupt(format!(
                "its cache has {} layers of {}+{} values per position, this model {} of {}+{}",
                h.n_layer, h.k_dim, h.v_dim, s.n_layer, s.k_dim, s.v_dim
            )));
        }
        if h.kv_cache != s.ty.name() {
            return Err(corrupt(format!("its cache holds {} values, this engine's {}", h.kv_cache, s.ty.name())));
        }
        if h.layers.len() != h.n_layer {
            return Err(corrupt(format!("it lists {} layer hashes for {} layers", h.layers.len(), h.n_layer)));
        }
        if let Some(&t) = h.tokens.iter().find(|&&t| t as usize >= expect.n_vocab) {
            return Err(corrupt(format!("token id {t} is outside the vocabulary of {}", expect.n_vocab)));
        }
        let offset = LEAD + rest.len() as u64;
        let payload = h.layer_bytes().and_then(|l| l.checked_mul(h.n_layer as u64));
        let expected = payload.and_then(|p| p.checked_add(offset));
        if expected != Some(file_size) {
            return Err(corrupt(format!(
                "it is {file_size} bytes, but {} tokens of this cache need {}",
                h.tokens.len(),
                expected.map_or("more than 2^64".into(), |e| e.to_string())
            )));
        }
        if h.tokens.len() > s.n_ctx {
            return Err(Error::new(
                ErrorCode::ContextOverflow,
                format!(
                    "the saved session holds {} tokens, more than this engine's context of {}; load the model with a larger context length",
                    h.tokens.len(),
                    s.n_ctx
                ),
            ));
        }
        Ok((h, offset))
    }

    /// Check layer `i`'s bytes against its recorded hash.
    pub fn check_layer(&self, i: usize, bytes: &[u8]) -> Result<()> {
        if Some(bytes.len() as u64) != self.layer_bytes() {
            return Err(corrupt(format!("layer {i} is {} bytes, not {}", bytes.len(), self.layer_bytes().unwrap_or(0))));
        }
        if self.layers.get(i).map(String::as_str) != Some(sha256_hex(bytes).as_str()) {
            return Err(corrupt(format!("layer {i} does not match its hash")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> KvShape {
        KvShape { n_layer: 2, k_dim: 4, v_dim: 2, n_ctx: 16, ty: KvType::F16 }
    }

    fn file(tokens: Vec<u32>) -> Vec<u8> {
        let mut h = SessionHeader::new("m", shape(), tokens);
        let n = h.layer_bytes().unwrap() as usize;
        let layers: Vec<Vec<u8>> = (0..2).map(|i| vec![i as u8 + 1; n]).collect();
        h.layers = layers.iter().map(|l| sha256_hex(l)).collect();
        let mut out = h.encode();
        layers.iter().for_each(|l| out.extend_from_slice(l));
        out
    }

    fn read(f: &[u8], expect: Expect<'_>) -> Result<SessionHeader> {
        let size = f.len() as u64;
        let n = SessionHeader::header_len(&f[..f.len().min(12)], size)? as usize;
        let (h, mut at) = SessionHeader::parse(&f[12..12 + n], size, expect)?;
        for i in 0..h.n_layer {
            let len = h.layer_bytes().unwrap();
            h.check_layer(i, &f[at as usize..(at + len) as usize])?;
            at += len;
        }
        Ok(h)
    }

    fn expect() -> Expect<'static> {
        Expect { model: "m", shape: shape(), n_vocab: 100 }
    }

    #[test]
    fn a_file_reads_back() {
        let f = file(vec![1, 2, 3]);
        assert_eq!(read(&f, expect()).unwrap().tokens, vec![1, 2, 3]);
    }

    #[test]
    fn hostile_files_are_refused_with_integrity() {
        let f = file(vec![1, 2, 3]);
        let code = |f: &[u8], e: Expect<'_>| read(f, e).unwrap_err().code;
        for cut in [0, 5, 12, 40, f.len() - 1] {
            assert_eq!(code(&f[..cut], expect()), ErrorCode::Integrity, "truncated at {cut}");
        }
        for at in [0, 9, 20, f.len() - 30, f.len() - 1] {
            let mut g = f.clone();
            g[at] ^= 0x10;
            assert_eq!(code(&g, expect()), ErrorCode::Integrity, "flipped byte {at}");
        }
        assert_eq!(code(&f, Expect { model: "other", ..expect() }), ErrorCode::Integrity);
        assert_eq!(code(&f, Expect { shape: KvShape { k_dim: 8, ..shape() }, ..expect() }), ErrorCode::Integrity);
        assert_eq!(code(&f, Expect { n_vocab: 3, ..expect() }), ErrorCode::Integrity);
        // An f16 session does not restore into a q8_0 cache, nor a q8_0 one into f16.
        let q8 = KvShape { k_dim: 64, v_dim: 32, ty: KvType::Q8_0, ..shape() };
        let e = read(&f, Expect { shape: KvShape { k_dim: 4, v_dim: 2, ..q8 }, ..expect() }).unwrap_err();
        assert!(e.code == ErrorCode::Integrity && e.message.contains("f16 values, this engine's q8_0"), "{}", e.message);
        let mut h = SessionHeader::new("m", q8, vec![1, 2]);
        assert_eq!(h.layer_bytes(), Some(2 * (2 * 34 + 34)), "q8_0 rows: 34 bytes per 32 values");
        h.layers = vec![sha256_hex(&[0; 204]); 2];
        let mut g = h.encode();
        g.extend_from_slice(&[0; 408]);
        assert!(read(&g, Expect { shape: q8, ..expect() }).is_ok());
        assert_eq!(code(&g, Expect { shape: KvShape { ty: KvType::F16, ..q8 }, ..expect() }), ErrorCode::Integrity);
        // A header that declares far more tokens than the file holds, with a valid hash.
        let mut h = SessionHeader::new("m", shape(), vec![0; 1 << 20]);
        h.layers = vec![String::new(); 2];
        assert_eq!(code(&h.encode(), expect()), ErrorCode::Integrity);
        // A header length past the bound.
        let mut g = f.clone();
        g[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(code(&g, expect()), ErrorCode::Integrity);
    }

    #[test]
    fn a_session_longer_than_the_context_asks_for_a_larger_one() {
        let f = file((0..10).collect());
        let e = read(&f, Expect { shape: KvShape { n_ctx: 8, ..shape() }, ..expect() }).unwrap_err();
        assert_eq!(e.code, ErrorCode::ContextOverflow);
    }
}
