//! [`StoreKind`]: which persistent store holds (or should hold) a model's bytes. Shared by the
//! stores, the reader and the public API, so it lives below all of them.

/// Which persistent store to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreKind {
    /// OPFS when available, else the Cache API.
    #[default]
    Auto,
    Opfs,
    CacheApi,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Auto => "auto",
            StoreKind::Opfs => "opfs",
            StoreKind::CacheApi => "cache",
        }
    }
    pub fn parse(s: &str) -> Option<StoreKind> {
        match s {
            "auto" => Some(StoreKind::Auto),
            "opfs" => Some(StoreKind::Opfs),
            "cache" | "cache-api" => Some(StoreKind::CacheApi),
            _ => None,
        }
    }
}
