//! The per-model manifest: what is stored, where it came from, and which chunks are verified.
//!
//! Platform-independent (tested natively). One manifest per cached model, stored next to its chunks
//! as `manifest.json`. A model is a sequence of parts (one for a plain `.gguf`, N for a split GGUF);
//! each part is cut into chunks of `chunk_size` bytes (the last one shorter). `chunks[i]` is the
//! sha256 (lowercase hex) of chunk `i` as written to the store, or `None` while it is missing: a chunk
//! is recorded only after its bytes were written and hashed, so whatever a crash or reload leaves
//! behind, the recorded chunks are exactly the ones that are present.
//!
//! `complete` is set only when every chunk is recorded, the GGUF header of every part was checked
//! against the part's size, and (when the caller supplied one) the whole-file sha256 matched; that hash
//! is then kept in `sha256`.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Bumped when the layout changes; a manifest of another version is discarded with its chunks.
pub const MANIFEST_VERSION: u32 = 1;
/// 8 MiB: big enough that per-request overhead is negligible, small enough that an interrupted
/// download loses little and a chunk in flight (x concurrency) stays cheap in memory.
pub const DEFAULT_CHUNK_SIZE: u64 = 8 << 20;
/// Bounds on a caller-chosen chunk size (tests use small chunks to exercise many of them).
pub const MIN_CHUNK_SIZE: u64 = 4 << 10;
pub const MAX_CHUNK_SIZE: u64 = 256 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The cache key (the URL, the first part's URL for a split model, or a file identity).
    pub key: String,
    pub chunk_size: u64,
    pub parts: Vec<PartManifest>,
    pub complete: bool,
    /// Whole-file sha256 (hex) of the concatenated parts, set once verified.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Milliseconds since the Unix epoch when the model was last opened.
    pub last_used_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartManifest {
    /// Where the bytes came from: a URL, or `file:<name>` for a local file.
    pub source: String,
    pub size: u64,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
    /// sha256 (hex) of each chunk as stored, `None` while missing.
    pub chunks: Vec<Option<String>>,
}

/// What a response's validators say about the remote file a part was downloaded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remote {
    Same,
    /// The same file by its size and Last-Modified, but another ETag: the server's ETag varies by
    /// request.
    EtagVaries,
    /// Another file, or nothing says it is the same one.
    Changed,
}

/// ETags compared weakly (RFC 9110 8.8.3.2): `W/"x"` and `"x"` are the same tag.
fn etag_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

/// Number of chunks of `chunk_size` bytes covering `size` bytes.
/// Largest model the store accepts (a manifest claiming more is discarded; a download of more is
/// refused by the quota check long before).
pub const MAX_MODEL_SIZE: u64 = 1 << 40;

pub fn n_chunks(size: u64, chunk_size: u64) -> usize {
    size.div_ceil(chunk_size) as usize
}

/// Byte range of chunk `i` within a part of `size` bytes.
pub fn chunk_range(size: u64, chunk_size: u64, i: usize) -> Range<u64> {
    let start = i as u64 * chunk_size;
    start..(start + chunk_size).min(size)
}

impl PartManifest {
    pub fn new(source: String, size: u64, etag: Option<String>, last_modified: Option<String>, chunk_size: u64) -> Self {
        PartManifest { source, size, etag, last_modified, chunks: vec![None; n_chunks(size, chunk_size)] }
    }

    /// Whether a remote file of `size` bytes with these validators is the one this part was
    /// downloaded from: the size must match, and so must Last-Modified where both sides have it;
    /// then an ETag both sides have must match (weakly), unless Last-Modified matched, in which case
    /// a differing ETag means the server's ETags vary by request ([`Remote::EtagVaries`]). A server
    /// with no validator both sides share is never taken to be the same file: its stored chunks
    /// could be another version of the same size.
    pub fn compare_remote(&self, size: u64, etag: Option<&str>, last_modified: Option<&str>) -> Remote {
        if size != self.size {
            return Remote::Changed;
        }
        let lm_same = match (self.last_modified.as_deref(), last_modified) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        };
        if lm_same == Some(false) {
            return Remote::Changed;
        }
        match (self.etag.as_deref(), etag) {
            (Some(a), Some(b)) if etag_eq(a, b) => Remote::Same,
            (Some(_), Some(_)) if lm_same == Some(true) => Remote::EtagVaries,
            (Some(_), Some(_)) => Remote::Changed,
            _ if lm_same == Some(true) => Remote::Same,
            _ => Remote::Changed,
        }
    }

    /// [`PartManifest::compare_remote`] is not `Changed`.
    pub fn same_remote(&self, size: u64, etag: Option<&str>, last_modified: Option<&str>) -> bool {
        self.compare_remote(size, etag, last_modified) != Remote::Changed
    }

    /// Forget every chunk (the remote file changed or the stored bytes failed verification).
    pub fn clear(&mut self) {
        self.chunks.iter_mut().for_each(|c| *c = None);
    }

    pub fn missing(&self) -> Vec<usize> {
        (0..self.chunks.len()).filter(|&i| self.chunks[i].is_none()).collect()
    }

    pub fn stored_bytes(&self, chunk_size: u64) -> u64 {
        (0..self.chunks.len())
            .filter(|&i| self.chunks[i].is_some())
            .map(|i| {
                let r = chunk_range(self.size, chunk_size, i);
                r.end - r.start
            })
            .sum()
    }
}

impl Manifest {
    pub fn new(key: String, chunk_size: u64, parts: Vec<PartManifest>, now_ms: f64) -> Self {
        Manifest { version: MANIFEST_VERSION, key, chunk_size, parts, complete: false, sha256: None, last_used_ms: now_ms }
    }

    /// Total size of the logical file (all parts concatenated; [`Manifest::from_json`] and the
    /// download check that it fits in a u64).
    pub fn size(&self) -> u64 {
        self.parts.iter().fold(0u64, |a, p| a.saturating_add(p.size))
    }

    pub fn stored_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.stored_bytes(self.chunk_size)).sum()
    }

    pub fn all_chunks_stored(&self) -> bool {
        self.parts.iter().all(|p| p.chunks.iter().all(Option::is_some))
    }

    /// Offset of each part within the logical file.
    pub fn part_offsets(&self) -> Vec<u64> {
        let mut at = 0;
        self.parts
            .iter()
            .map(|p| {
                let o = at;
                at += p.size;
                o
            })
            .collect()
    }

    /// Every chunk overlapping `range` of the logical file, in order, as
    /// `(part, chunk, range within that chunk)`.
    pub fn chunks_in(&self, range: Range<u64>) -> Vec<(usize, usize, Range<u64>)> {
        let mut out = Vec::new();
        for (p, (part, base)) in self.parts.iter().zip(self.part_offsets()).enumerate() {
            let (s, e) = (range.start.max(base), range.end.min(base + part.size));
            if s >= e {
                continue;
            }
            let first = ((s - base) / self.chunk_size) as usize;
            let last = ((e - base - 1) / self.chunk_size) as usize;
            for c in first..=last {
                let cr = chunk_range(part.size, self.chunk_size, c);
                let (cs, ce) = (cr.start + base, cr.end + base);
                out.push((p, c, s.max(cs) - cs..e.min(ce) - cs));
            }
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a manifest always serializes")
    }

    /// Parse a stored manifest; `None` if it is unreadable, of another version or inconsistent (its
    /// entry is then discarded, never trusted).
    pub fn from_json(s: &str) -> Option<Manifest> {
        let m: Manifest = serde_json::from_str(s).ok()?;
        let consistent = m.version == MANIFEST_VERSION
            && (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&m.chunk_size)
            && !m.parts.is_empty()
            && m.parts.iter().try_fold(0u64, |a, p| a.checked_add(p.size)).is_some_and(|s| s <= MAX_MODEL_SIZE)
            && m.parts.iter().all(|p| {
                p.chunks.len() == n_chunks(p.size, m.chunk_size)
                    && p.chunks.iter().flatten().all(|h| is_sha256_hex(h))
            })
            && (!m.complete || m.all_chunks_stored());
        consistent.then_some(m)
    }
}

/// 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `Content-Range: bytes <start>-<end>/<total|*>` of a 206 response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    /// Exclusive.
    pub end: u64,
    pub total: Option<u64>,
}

pub fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (s, e) = range.trim().split_once('-')?;
    let (start, last): (u64, u64) = (s.trim().parse().ok()?, e.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if last < start || total.is_some_and(|t| last >= t) {
        return None;
    }
    Some(ContentRange { start, end: last.checked_add(1)?, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(sizes: &[u64], chunk: u64) -> Manifest {
        let parts = sizes.iter().map(|&s| PartManifest::new(format!("u{s}"), s, None, None, chunk)).collect();
        Manifest::new("k".into(), chunk, parts, 0.0)
    }

    #[test]
    fn chunk_math() {
        assert_eq!(n_chunks(0, 4096), 0);
        assert_eq!(n_chunks(4096, 4096), 1);
        assert_eq!(n_chunks(4097, 4096), 2);
        assert_eq!(chunk_range(10_000, 4096, 2), 8192..10_000);
        let mut p = PartManifest::new("u".into(), 10_000, None, None, 4096);
        assert_eq!(p.missing(), vec![0, 1, 2]);
        p.chunks[2] = Some("a".repeat(64));
        assert_eq!(p.stored_bytes(4096), 10_000 - 8192);
        assert_eq!(p.missing(), vec![0, 1]);
    }

    #[test]
    fn chunks_in_crosses_chunk_and_part_boundaries() {
        let m = manifest(&[10_000, 5_000], 4096);
        assert_eq!(m.chunks_in(4000..4200), vec![(0, 0, 4000..4096), (0, 1, 0..104)]);
        assert_eq!(m.chunks_in(9_990..10_010), vec![(0, 2, 1798..1808), (1, 0, 0..10)]);
        assert_eq!(m.chunks_in(0..15_000).len(), 5);
        assert!(m.chunks_in(15_000..15_001).is_empty());
        assert!(m.chunks_in(5..5).is_empty());
    }

    #[test]
    fn same_remote_needs_matching_validators() {
        let p = PartManifest::new("u".into(), 100, Some("\"v1\"".into()), Some("Mon".into()), 4096);
        assert!(p.same_remote(100, Some("\"v1\""), Some("Mon")));
        assert!(!p.same_remote(101, Some("\"v1\""), Some("Mon")));
        assert!(p.same_remote(100, Some("\"v2\""), Some("Mon")), "the ETag varies, Last-Modified decides");
        assert!(!p.same_remote(100, Some("\"v2\""), Some("Tue")));
        assert!(p.same_remote(100, None, Some("Mon")), "an answer without its ETag: Last-Modified decides");
        let q = PartManifest::new("u".into(), 100, None, Some("Mon".into()), 4096);
        assert!(q.same_remote(100, None, Some("Mon")));
        assert!(!q.same_remote(100, None, Some("Tue")));
        let r = PartManifest::new("u".into(), 100, None, None, 4096);
        assert!(!r.same_remote(100, None, None), "size alone identifies nothing");
    }

    /// Issue 25: weak ETags compare equal to strong ones; an ETag that differs while Last-Modified
    /// and the size agree is a server whose ETags vary, not a change; a changed Last-Modified is a
    /// change whatever the ETag says; with no shared validator nothing is the same.
    #[test]
    fn compare_remote_weak_etags_varying_etags_and_last_modified() {
        let both = PartManifest::new("u".into(), 100, Some("\"v1\"".into()), Some("Mon".into()), 4096);
        assert_eq!(both.compare_remote(100, Some("W/\"v1\""), Some("Mon")), Remote::Same);
        assert_eq!(both.compare_remote(100, Some("\"x7\""), Some("Mon")), Remote::EtagVaries);
        assert_eq!(both.compare_remote(100, Some("\"v1\""), Some("Tue")), Remote::Changed);
        assert_eq!(both.compare_remote(99, Some("\"v1\""), Some("Mon")), Remote::Changed);
        assert_eq!(both.compare_remote(100, None, Some("Mon")), Remote::Same, "Last-Modified alone still identifies it");
        let etag_only = PartManifest::new("u".into(), 100, Some("\"v1\"".into()), None, 4096);
        assert_eq!(etag_only.compare_remote(100, Some("\"v2\""), None), Remote::Changed);
        assert_eq!(etag_only.compare_remote(100, None, None), Remote::Changed);
        let lm_only = PartManifest::new("u".into(), 100, None, Some("Mon".into()), 4096);
        assert_eq!(lm_only.compare_remote(100, None, Some("Mon")), Remote::Same);
        assert_eq!(lm_only.compare_remote(100, None, Some("Tue")), Remote::Changed);
        assert_eq!(lm_only.compare_remote(100, Some("\"new\""), None), Remote::Changed);
    }

    #[test]
    fn json_roundtrip_and_rejects_inconsistent() {
        let mut m = manifest(&[10_000], 4096);
        m.parts[0].chunks[0] = Some("0".repeat(64));
        assert_eq!(Manifest::from_json(&m.to_json()), Some(m.clone()));
        let mut bad = m.clone();
        bad.complete = true; // not every chunk is stored
        assert_eq!(Manifest::from_json(&bad.to_json()), None);
        let mut bad = m.clone();
        bad.parts[0].chunks.pop();
        assert_eq!(Manifest::from_json(&bad.to_json()), None);
        let mut bad = m.clone();
        bad.parts[0].chunks[1] = Some("xyz".into());
        assert_eq!(Manifest::from_json(&bad.to_json()), None);
        assert_eq!(Manifest::from_json("{not json"), None);
        assert_eq!(Manifest::from_json(&m.to_json().replace("\"version\":1", "\"version\":99")), None);
    }

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 0-99/1000"), Some(ContentRange { start: 0, end: 100, total: Some(1000) }));
        assert_eq!(parse_content_range("bytes 5-5/*"), Some(ContentRange { start: 5, end: 6, total: None }));
        assert_eq!(parse_content_range("bytes 10-9/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes 0-18446744073709551615/*"), None, "last + 1 overflows");
    }

    #[test]
    fn manifests_claiming_more_than_a_model_can_be_are_discarded() {
        let mut m = manifest(&[10_000], 4096);
        m.parts[0].size = MAX_MODEL_SIZE + 1;
        m.parts[0].chunks = vec![None; n_chunks(m.parts[0].size, m.chunk_size)];
        assert_eq!(Manifest::from_json(&m.to_json()), None);
        let mut two = manifest(&[10_000, 10_000], 4096);
        for p in &mut two.parts {
            p.size = u64::MAX / 2 + 1; // the sum overflows
            p.chunks = vec![];
        }
        assert_eq!(Manifest::from_json(&two.to_json()), None);
    }
}
