//! `StoreError`: every way the store fails, worded with the recovery an operator needs.

use std::path::Path;

/// A store failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// sled reported corruption: the database cannot be trusted.
    #[error(
        "the store at {path} is corrupt ({detail}). Recovery: stop the gateway, move {path} aside, \
             restore it from a `store export` backup or start with an empty data dir (orchestrators \
             added through the admin API must then be added again)"
    )]
    Corrupt {
        /// Database directory.
        path: String,
        /// sled's words.
        detail: String,
    },
    /// The database could not be opened (damaged files, a foreign or too old format).
    #[error(
        "the store at {path} cannot be opened ({detail}). Recovery: stop the gateway, move {path} aside, \
             then either restore a backup with `byoc-gateway store import FILE --data-dir DIR` into the now empty data \
             dir, or start with the empty data dir (orchestrators added through the admin API must then be added \
             again; configured ones come back from the config)"
    )]
    Unopenable {
        /// Database directory.
        path: String,
        /// sled's words.
        detail: String,
    },
    /// The database was written by a newer gateway.
    #[error(
        "the store at {path} has schema version {found}; this gateway understands only {supported} \
             (export it with the gateway version that wrote it, then import)"
    )]
    Schema {
        /// Database directory.
        path: String,
        /// Version found.
        found: u32,
        /// The version this gateway reads (carried here so that the error names it without
        /// reaching into the database module, which builds these errors).
        supported: u32,
    },
    /// The disk refused a write or a read (full, read-only, failing). sled refuses every
    /// later write of a database after one, so the store reopens it before the next write.
    #[error("store disk error: {0}")]
    Disk(String),
    /// Any other failure (a locked data dir, a write refused by fault injection).
    #[error("store I/O error: {0}")]
    Io(String),
    /// A value could not be decoded.
    #[error("store holds an undecodable value under {key}: {detail}")]
    Decode {
        /// The key.
        key: String,
        /// serde's words.
        detail: String,
    },
}

impl StoreError {
    pub(crate) fn from_sled(e: sled::Error, path: &Path) -> Self {
        match e {
            sled::Error::Corruption { .. } => {
                StoreError::Corrupt { path: path.display().to_string(), detail: e.to_string() }
            }
            sled::Error::Io(io) if is_disk_full(&io) => StoreError::Disk(format!(
                "the disk holding {} is full (no space left on device); writes resume once space is freed, and \
                 every acknowledged change is safe",
                path.display()
            )),
            sled::Error::Io(io) => StoreError::Disk(format!("{} ({io})", path.display())),
            other => StoreError::Io(other.to_string()),
        }
    }
}

/// Whether sled's I/O error is a full disk. sled hands a write error it saw on its flusher
/// thread to later callers as a new error carrying the first one's debug text, so the kind
/// alone does not always tell.
fn is_disk_full(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::StorageFull
        || io.raw_os_error() == Some(28)
        || io.to_string().contains("StorageFull")
}
