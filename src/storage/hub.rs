//! Hugging Face Hub ids as model sources: `hf:owner/repo/path/to/file.gguf`, optionally ending
//! in `@revision` (a branch, tag or commit; default `main`), name the Hub's file URL
//! `{endpoint}/owner/repo/resolve/{revision}/path/to/file.gguf` (the Hub answers it with a
//! redirect to its CDN, which `fetch` follows). A file named as the first part of a split GGUF
//! (`name-00001-of-00003.gguf`, llama.cpp's `gguf-split`) stands for all its parts, in order.
//! Pure string work, natively testable; `open` (browsers) and the Node path of the JS layer resolve
//! through it.

use crate::error::{Error, Result};

/// The Hub's address (`hfEndpoint` overrides it: a mirror, or a test server).
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Most parts a split id may expand to.
const MAX_PARTS: usize = 512;

/// Whether `source` is a Hub id.
pub fn is_hub_id(source: &str) -> bool {
    source.starts_with("hf:")
}

/// The URL(s) of the Hub id `id` on `endpoint` (None: [`DEFAULT_ENDPOINT`]): one, or every part of
/// a split GGUF. Malformed ids are `INVALID_ARGUMENT`, saying what shape is expected.
pub fn resolve(id: &str, endpoint: Option<&str>) -> Result<Vec<String>> {
    const SHAPE: &str = "a Hugging Face id is hf:owner/repo/path/file.gguf, optionally ending in @revision";
    let bad = |why: &str| Error::invalid_argument(format!("{id:?}: {why} ({SHAPE})"));
    let rest = id.strip_prefix("hf:").ok_or_else(|| bad("no hf: prefix"))?;
    let (path, revision) = match rest.rsplit_once('@') {
        // A branch, tag or commit; a pull request's `refs/pr/N` is the one revision with slashes.
        Some((p, r)) if (!r.is_empty() && !r.contains(['/', '\\'])) || r.starts_with("refs/") => (p, r),
        Some(_) => return Err(bad("an empty revision")),
        None => (rest, "main"),
    };
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() < 3 {
        return Err(bad("an owner, a repository and a file are needed"));
    }
    if let Some(s) = segments.iter().find(|s| s.is_empty() || **s == "." || **s == ".." || s.chars().any(|c| c.is_control() || c == '\\')) {
        return Err(bad(&format!("a bad path segment {s:?}")));
    }
    let file = segments[segments.len() - 1];
    if !file.to_ascii_lowercase().ends_with(".gguf") {
        return Err(bad("the file must be a .gguf"));
    }
    let endpoint = endpoint.unwrap_or(DEFAULT_ENDPOINT).trim_end_matches('/');
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(Error::invalid_argument(format!("hfEndpoint must be an http(s) URL, got {endpoint:?}")));
    }
    let (owner, repo, dir) = (segments[0], segments[1], &segments[2..segments.len() - 1]);
    let url = |name: &str| {
        let mut p: Vec<String> = dir.iter().map(|s| encode(s)).collect();
        p.push(encode(name));
        format!("{endpoint}/{}/{}/resolve/{}/{}", encode(owner), encode(repo), encode(revision), p.join("/"))
    };
    match split_parts(file).map_err(|why| bad(&why))? {
        Some(names) => Ok(names.iter().map(|n| url(n)).collect()),
        None => Ok(vec![url(file)]),
    }
}

/// The part names of a split GGUF's first part `name-00001-of-0000N.gguf` (None: not that pattern).
fn split_parts(file: &str) -> std::result::Result<Option<Vec<String>>, String> {
    let Some(stem) = file.get(..file.len() - ".gguf".len()) else { return Ok(None) };
    let Some((head, of)) = stem.rsplit_once("-of-") else { return Ok(None) };
    let Some((base, index)) = head.rsplit_once('-') else { return Ok(None) };
    // gguf-split writes `%s-%05d-of-%05d.gguf`.
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(of) {
        return Ok(None);
    }
    let (i, n): (usize, usize) = (index.parse().map_err(|_| "a bad part number")?, of.parse().map_err(|_| "a bad part count")?);
    if i != 1 {
        return Err(format!("name the first part of a split model ({base}-{:0w$}-of-{of}.gguf)", 1, w = of.len()));
    }
    if n == 0 || n > MAX_PARTS {
        return Err(format!("a split model of {n} parts (at most {MAX_PARTS})"));
    }
    Ok(Some((1..=n).map(|k| format!("{base}-{k:0w$}-of-{of}.gguf", w = of.len())).collect()))
}

/// Percent-encode a path segment (RFC 3986 unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_resolve_to_the_hubs_file_urls() {
        assert_eq!(
            resolve("hf:unsloth/gemma-3-270m-it-GGUF/gemma-3-270m-it-Q4_K_M.gguf", None).unwrap(),
            ["https://huggingface.co/unsloth/gemma-3-270m-it-GGUF/resolve/main/gemma-3-270m-it-Q4_K_M.gguf"]
        );
        assert_eq!(
            resolve("hf:o/r/sub dir/m.gguf@v1.0", Some("http://127.0.0.1:9/hf/")).unwrap(),
            ["http://127.0.0.1:9/hf/o/r/resolve/v1.0/sub%20dir/m.gguf"]
        );
        assert_eq!(resolve("hf:o/r/m.gguf@refs/pr/3", None).unwrap(), ["https://huggingface.co/o/r/resolve/refs%2Fpr%2F3/m.gguf"]);
    }

    #[test]
    fn a_first_split_part_stands_for_all_parts() {
        let urls = resolve("hf:o/r/q/m-00001-of-00003.gguf", None).unwrap();
        assert_eq!(
            urls,
            [
                "https://huggingface.co/o/r/resolve/main/q/m-00001-of-00003.gguf",
                "https://huggingface.co/o/r/resolve/main/q/m-00002-of-00003.gguf",
                "https://huggingface.co/o/r/resolve/main/q/m-00003-of-00003.gguf",
            ]
        );
        let e = resolve("hf:o/r/m-00002-of-00003.gguf", None).unwrap_err();
        assert!(e.message.contains("m-00001-of-00003.gguf"), "{}", e.message);
        assert!(resolve("hf:o/r/m-00001-of-99999.gguf", None).unwrap_err().message.contains("at most"));
        // Not the split pattern: one file.
        assert_eq!(resolve("hf:o/r/m-1-of-2.gguf", None).unwrap().len(), 1);
    }

    #[test]
    fn malformed_ids_are_invalid_arguments() {
        for id in ["hf:o/m.gguf", "hf:o/r/m.bin", "hf:o/r/../m.gguf", "hf:o//m.gguf", "hf:o/r/m.gguf@", "hf:o/r/m.gguf@a/b", "o/r/m.gguf"] {
            let e = resolve(id, None).unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::InvalidArgument, "{id}");
        }
        assert!(resolve("hf:o/r/m.gguf", Some("file:///x")).unwrap_err().message.contains("hfEndpoint"));
    }
}
