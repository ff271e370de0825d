//! `navigator.storage`: usage and quota, the up-front space check, and the persistence request.

use js_sys::Reflect;
use wasm_bindgen::JsCast;

use super::web::{storage_manager, wait};
use crate::error::{Error, ErrorCode, Result};

/// Room kept free beyond the model bytes (manifests, file-system overhead).
const HEADROOM: u64 = 1 << 20;

/// `navigator.storage.estimate()` for this origin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    pub usage: f64,
    pub quota: f64,
}

pub async fn usage() -> Result<Usage> {
    let sm = storage_manager().ok_or_else(|| Error::internal("navigator.storage is not available in this context"))?;
    let p = sm.estimate().map_err(super::web::internal("navigator.storage.estimate"))?;
    let e: web_sys::StorageEstimate = wait(p, ErrorCode::Internal, "navigator.storage.estimate").await?.unchecked_into();
    Ok(Usage { usage: e.get_usage().unwrap_or(0.0), quota: e.get_quota().unwrap_or(f64::INFINITY) })
}

/// Fail with `QUOTA_EXCEEDED` unless `needed` more bytes fit. Where the browser cannot tell (no
/// `navigator.storage`), the check passes and a failing write reports the problem instead.
pub async fn check(needed: u64) -> Result<()> {
    let Ok(u) = usage().await else { return Ok(()) };
    let available = (u.quota - u.usage).max(0.0);
    if needed.saturating_add(HEADROOM) as f64 > available {
        return Err(Error::new(
            ErrorCode::QuotaExceeded,
            format!(
                "not enough browser storage for this model: it needs {} but only {} is available \
                 (quota {}, used {}). Free space by deleting cached models, or load it without caching.",
                mb(needed as f64),
                mb(available),
                mb(u.quota),
                mb(u.usage)
            ),
        ));
    }
    Ok(())
}

/// Ask the browser not to evict our storage under pressure. Only pages have `persist()` (Workers do
/// not); the answer is advisory, so failures are ignored.
pub async fn request_persist() {
    let Some(sm) = storage_manager() else { return };
    let has = Reflect::get(&sm, &"persist".into()).map(|f| f.is_function()).unwrap_or(false);
    if has {
        if let Ok(p) = sm.persist() {
            let _ = wait(p, ErrorCode::Internal, "").await;
        }
    }
}

/// Whether the browser granted persistence (`None` where it cannot say).
pub async fn persisted() -> Option<bool> {
    let sm = storage_manager()?;
    if !Reflect::get(&sm, &"persisted".into()).ok()?.is_function() {
        return None;
    }
    wait(sm.persisted().ok()?, ErrorCode::Internal, "").await.ok()?.as_bool()
}

fn mb(bytes: f64) -> String {
    if bytes.is_infinite() {
        "unlimited".into()
    } else {
        format!("{:.1} MB", bytes / 1e6)
    }
}
