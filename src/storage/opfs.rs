//! Origin Private File System store.
//!
//! Layout: `<OPFS root>/browser-llm/<entry id>/manifest.json` and one file per chunk,
//! `p<part>-c<chunk>` (see [`super::store`] for the entry id). One file per chunk, not one big file:
//! outside a Worker the only OPFS writer is `createWritable()`, which with `keepExistingData` copies
//! the whole file per write; a chunk file is written whole, atomically (`createWritable()` commits on
//! `close()`), and a model written in a Worker reads the same on a page and vice versa.
//!
//! Chunks are written with a sync access handle where one exists (dedicated Workers: no swap-file
//! copy, no promise per write) and with `createWritable()` elsewhere. A sync-handle write that is
//! cut short (reload, crash) leaves a partial chunk file, but its chunk is not in the manifest, so it
//! is rewritten from scratch (truncated first) on resume. The manifest is always written with
//! `createWritable()`, so it is replaced atomically.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use web_sys::{
    Blob, FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions, FileSystemGetFileOptions,
    FileSystemReadWriteOptions, FileSystemRemoveOptions, FileSystemSyncAccessHandle, FileSystemWritableFileStream,
};

use super::web::{has_opfs, js_error, storage_manager, wait};
use crate::error::{Error, ErrorCode, Result};

const ROOT_DIR: &str = "browser-llm";
/// Saved sessions ([`crate::session`]), apart from the models.
pub const SESSIONS_DIR: &str = "browser-llm-sessions";

pub struct Opfs {
    root: FileSystemDirectoryHandle,
}

fn is_not_found(e: &Error) -> bool {
    e.message.contains("NotFoundError") || e.message.contains("TypeMismatchError")
}

impl Opfs {
    pub async fn open() -> Result<Opfs> {
        Self::open_at(ROOT_DIR).await
    }

    /// The store under directory `root` of the origin private file system.
    pub async fn open_at(root: &str) -> Result<Opfs> {
        if !has_opfs() {
            return Err(Error::invalid_argument("OPFS (navigator.storage.getDirectory) is not available in this context"));
        }
        let sm = storage_manager().expect("has_opfs checked navigator.storage");
        let top: FileSystemDirectoryHandle =
            wait(sm.get_directory(), ErrorCode::Internal, "opening the origin private file system").await?.unchecked_into();
        let opts = FileSystemGetDirectoryOptions::new();
        opts.set_create(true);
        let root = wait(top.get_directory_handle_with_options(root, &opts), ErrorCode::Internal, "opening OPFS directory")
            .await?
            .unchecked_into();
        Ok(Opfs { root })
    }

    async fn dir(&self, id: &str, create: bool) -> Result<Option<FileSystemDirectoryHandle>> {
        let opts = FileSystemGetDirectoryOptions::new();
        opts.set_create(create);
        match wait(self.root.get_directory_handle_with_options(id, &opts), ErrorCode::Internal, "opening an OPFS entry").await {
            Ok(d) => Ok(Some(d.unchecked_into())),
            Err(e) if !create && is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn file(dir: &FileSystemDirectoryHandle, name: &str, create: bool) -> Result<Option<FileSystemFileHandle>> {
        let opts = FileSystemGetFileOptions::new();
        opts.set_create(create);
        match wait(dir.get_file_handle_with_options(name, &opts), ErrorCode::Internal, "opening an OPFS file").await {
            Ok(f) => Ok(Some(f.unchecked_into())),
            Err(e) if !create && is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Read a file of entry `id`, `None` if either is missing.
    pub async fn read(&self, id: &str, name: &str) -> Result<Option<Blob>> {
        let Some(dir) = self.dir(id, false).await? else { return Ok(None) };
        let Some(fh) = Self::file(&dir, name, false).await? else { return Ok(None) };
        Ok(Some(wait(fh.get_file(), ErrorCode::Internal, "reading an OPFS file").await?.unchecked_into()))
    }

    /// Replace a file of entry `id` (created if needed) with the concatenation of `pieces`.
    pub async fn write(&self, id: &str, name: &str, pieces: &[Uint8Array], allow_sync: bool) -> Result<()> {
        let dir = self.dir(id, true).await?.expect("created");
        let fh = Self::file(&dir, name, true).await?.expect("created");
        if allow_sync && Reflect::has(&fh, &"createSyncAccessHandle".into()).unwrap_or(false) {
            let h: FileSystemSyncAccessHandle =
                wait(fh.create_sync_access_handle(), ErrorCode::Internal, "opening an OPFS sync access handle")
                    .await?
                    .unchecked_into();
            let r = write_sync(&h, pieces);
            h.close();
            return r;
        }
        let w: FileSystemWritableFileStream =
            wait(fh.create_writable(), ErrorCode::Internal, "opening an OPFS file for writing").await?.unchecked_into();
        for p in pieces {
            let step = match w.write_with_js_u8_array(p) {
                Ok(promise) => wait(promise, ErrorCode::Internal, "writing to OPFS").await.map(drop),
                Err(e) => Err(js_error(e, ErrorCode::Internal, "writing to OPFS")),
            };
            if let Err(e) = step {
                let _ = wait(w.abort(), ErrorCode::Internal, "").await;
                return Err(e);
            }
        }
        wait(w.close(), ErrorCode::Internal, "committing an OPFS file").await.map(drop)
    }

    pub async fn write_text(&self, id: &str, name: &str, text: &str) -> Result<()> {
        let bytes = Uint8Array::from(text.as_bytes());
        self.write(id, name, &[bytes], false).await
    }

    /// Remove entry `id` and everything in it; `Ok` if it does not exist.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let opts = FileSystemRemoveOptions::new();
        opts.set_recursive(true);
        match wait(self.root.remove_entry_with_options(id, &opts), ErrorCode::Internal, "removing an OPFS entry").await {
            Err(e) if !is_not_found(&e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Names of all entries.
    pub async fn ids(&self) -> Result<Vec<String>> {
        let iter = self.root.keys();
        let next: js_sys::Function =
            Reflect::get(&iter, &"next".into()).map_err(super::web::internal("listing OPFS"))?.unchecked_into();
        let mut out = Vec::new();
        loop {
            let p: js_sys::Promise = next.call0(&iter).map_err(super::web::internal("listing OPFS"))?.unchecked_into();
            let r = wait(p, ErrorCode::Internal, "listing OPFS").await?;
            if Reflect::get(&r, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
                return Ok(out);
            }
            if let Some(name) = Reflect::get(&r, &"value".into()).ok().and_then(|v| v.as_string()) {
                out.push(name);
            }
        }
    }
}

fn write_sync(h: &FileSystemSyncAccessHandle, pieces: &[Uint8Array]) -> Result<()> {
    let err = |e| js_error(e, ErrorCode::Internal, "writing to OPFS");
    h.truncate_with_f64(0.0).map_err(err)?;
    let mut at = 0.0;
    let opts = FileSystemReadWriteOptions::new();
    for p in pieces {
        opts.set_at(at);
        let n = h.write_with_js_u8_array_and_options(p, &opts).map_err(err)?;
        if n != p.length() as f64 {
            // The spec writes all or throws; a short write means the disk is full.
            return Err(Error::new(ErrorCode::QuotaExceeded, format!("OPFS wrote {n} of {} bytes", p.length())));
        }
        at += n;
    }
    h.flush().map_err(err)
}
