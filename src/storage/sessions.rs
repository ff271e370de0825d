//! Saved sessions in browser storage: opaque files (the format is [`crate::session`]'s) with a
//! record each, under a cap with least-recently-used eviction.
//!
//! Layout: a tree of its own (OPFS `browser-llm-sessions/`, or the Cache API's
//! `browser-llm-sessions-v1`), one entry per (model, name), its id the first 32 hex digits of
//! sha256(model + "\n" + name); an entry holds `session` (the file) and `meta.json`
//! ([`SessionMeta`]), written in that order: an entry without a readable `meta.json` is an
//! unfinished save and is removed when seen. Saving, opening and deleting one entry hold the Web
//! Lock `browser-llm session <id>`, so two tabs never interleave their writes.
//!
//! ```text
//! save(model, name, pieces, tokens, max_bytes) -> SessionMeta    evicts least recently used first
//! open(model, name) -> Option<(Blob, SessionMeta)>                marks it used
//! list(model) -> Vec<SessionMeta>    remove(model, name) -> bool
//! ```

use js_sys::Uint8Array;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsCast;
use web_sys::Blob;

use super::store::{entry_id, Store};
use super::web::{now_ms, wait, with_lock};
use crate::error::{Error, ErrorCode, Result};

const FILE: &str = "session";
const META: &str = "meta.json";
/// The longest session name.
pub const MAX_NAME: usize = 256;
/// The default cap on all saved sessions together.
pub const DEFAULT_MAX_BYTES: u64 = 512 << 20;

/// What is recorded of a saved session.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionMeta {
    pub model: String,
    pub name: String,
    pub bytes: u64,
    pub tokens: usize,
    pub saved_at_ms: f64,
    pub used_at_ms: f64,
}

fn id_of(model: &str, name: &str) -> String {
    entry_id(&format!("{model}\n{name}"))
}

fn lock(id: &str) -> String {
    format!("browser-llm session {id}")
}

pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Error::invalid_argument(format!("a session name must be 1 to {MAX_NAME} bytes long")));
    }
    Ok(())
}

async fn meta_of(store: &Store, id: &str) -> Result<Option<SessionMeta>> {
    let Some(b) = store.file(id, META).await? else { return Ok(None) };
    let text = wait(b.text(), ErrorCode::Internal, "reading a session record").await?.as_string().unwrap_or_default();
    Ok(serde_json::from_str(&text).ok())
}

async fn write_meta(store: &Store, id: &str, m: &SessionMeta) -> Result<()> {
    let json = serde_json::to_string(m).expect("a record serializes");
    store.write_file(id, META, &[Uint8Array::from(json.as_bytes())]).await
}

/// Every readable record. An entry without one is removed under its lock (a save in progress
/// holds the lock until its record is written, so only an unfinished or damaged save goes).
async fn all(store: &Store) -> Result<Vec<(String, SessionMeta)>> {
    let mut out = Vec::new();
    for id in store.ids_with(META).await? {
        match meta_of(store, &id).await? {
            Some(m) if id_of(&m.model, &m.name) == id => out.push((id, m)),
            _ => {
                let found = with_lock(&lock(&id), None, async {
                    match meta_of(store, &id).await? {
                        Some(m) if id_of(&m.model, &m.name) == id => Ok(Some(m)),
                        _ => store.remove_id(&id).await.map(|_| None),
                    }
                })
                .await?;
                out.extend(found.map(|m| (id, m)));
            }
        }
    }
    Ok(out)
}

/// Store `pieces` (one session file) as `name` of `model`, first removing the least recently used
/// sessions (of any model) until every saved session together fits `max_bytes`. A session larger
/// than `max_bytes` by itself is `QUOTA_EXCEEDED` and nothing is removed.
pub async fn save(model: &str, name: &str, pieces: &[Uint8Array], tokens: usize, max_bytes: u64) -> Result<SessionMeta> {
    check_name(name)?;
    let bytes: u64 = pieces.iter().map(|p| p.length() as u64).sum();
    if bytes > max_bytes {
        return Err(Error::new(
            ErrorCode::QuotaExceeded,
            format!("the session is {} MiB, more than the {} MiB allowed for saved sessions (maxSessionBytes)", bytes >> 20, max_bytes >> 20),
        ));
    }
    let store = Store::sessions().await?;
    let id = id_of(model, name);
    let mut others: Vec<(String, SessionMeta)> = all(&store).await?.into_iter().filter(|(i, _)| *i != id).collect();
    others.sort_by(|a, b| a.1.used_at_ms.total_cmp(&b.1.used_at_ms));
    let mut total: u64 = others.iter().map(|(_, m)| m.bytes).sum::<u64>() + bytes;
    for (old, m) in &others {
        if total <= max_bytes {
            break;
        }
        with_lock(&lock(old), None, store.remove_id(old)).await?;
        total -= m.bytes;
    }
    let now = now_ms();
    let meta = SessionMeta { model: model.to_owned(), name: name.to_owned(), bytes, tokens, saved_at_ms: now, used_at_ms: now };
    with_lock(&lock(&id), None, async {
        store.remove_id(&id).await?;
        if let Err(e) = store.write_file(&id, FILE, pieces).await {
            let _ = store.remove_id(&id).await;
            return Err(e);
        }
        write_meta(&store, &id, &meta).await
    })
    .await?;
    Ok(meta)
}

/// The stored file of `name` of `model` and its record, marked as used now; `None` if there is none.
pub async fn open(model: &str, name: &str) -> Result<Option<(Blob, SessionMeta)>> {
    check_name(name)?;
    let store = Store::sessions().await?;
    let id = id_of(model, name);
    with_lock(&lock(&id), None, async {
        let Some(mut meta) = meta_of(&store, &id).await? else { return Ok(None) };
        let Some(file) = store.file(&id, FILE).await? else {
            store.remove_id(&id).await?;
            return Ok(None);
        };
        meta.used_at_ms = now_ms();
        write_meta(&store, &id, &meta).await?;
        Ok(Some((file, meta)))
    })
    .await
}

/// The saved sessions of `model` (of every model: `None`), most recently used first.
pub async fn list(model: Option<&str>) -> Result<Vec<SessionMeta>> {
    let store = Store::sessions().await?;
    let mut out: Vec<SessionMeta> = all(&store).await?.into_iter().map(|(_, m)| m).filter(|m| model.is_none_or(|x| m.model == x)).collect();
    out.sort_by(|a, b| b.used_at_ms.total_cmp(&a.used_at_ms));
    Ok(out)
}

/// Remove `name` of `model`; whether there was one.
pub async fn remove(model: &str, name: &str) -> Result<bool> {
    check_name(name)?;
    let store = Store::sessions().await?;
    let id = id_of(model, name);
    with_lock(&lock(&id), None, async {
        let had = store.file(&id, META).await?.is_some();
        store.remove_id(&id).await?;
        Ok(had)
    })
    .await
}

/// `len` bytes of `blob` from `offset`.
pub async fn read_range(blob: &Blob, offset: u64, len: u64) -> Result<Vec<u8>> {
    let part = blob
        .slice_with_f64_and_f64(offset as f64, (offset + len) as f64)
        .map_err(super::web::internal("slicing a session file"))?;
    let buf = wait(part.array_buffer(), ErrorCode::Internal, "reading a session file").await?;
    let a = Uint8Array::new(buf.unchecked_ref());
    if a.length() as u64 != len {
        return Err(Error::new(ErrorCode::Integrity, "the saved session is shorter than its record says; it was removed"));
    }
    Ok(a.to_vec())
}
