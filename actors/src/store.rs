//! `Store`: the actor that owns the sled database ([`Db`]). It runs on a `SyncArbiter` thread,
//! so its handlers may block on disk without stalling any async actor or HTTP worker.
//!
//! Every mutation that answers an operator is flushed to disk before the reply, so an
//! acknowledged change survives `kill -9`. Pair scores are written in batches and flushed
//! with them.
//!
//! Disk trouble: once the disk refuses a write (full, read-only), sled refuses every later
//! write of that database handle, even after space is back. The store therefore marks itself
//! broken on a disk error and, before the next write, closes the handle and opens the database
//! again (the data dir's lock is held while any handle lives, so it keeps exactly one). While
//! the disk is still full it answers writes at once with the free space it sees, and reads
//! keep using the old handle (sled's reads are unaffected by its write error).

mod db;
mod error;
mod messages;

use std::path::PathBuf;

use actix::prelude::*;

pub use db::export::{ExportedPolicy, ImportError, ImportSummary, StoreExport, EXPORT_FORMAT};
pub use db::mirror::{MirrorInfo, RegistryCopy};
pub use db::registry::WebhookDelta;
pub use db::{open, Db, Duplicate, Snapshot, DB_DIR, SCHEMA_VERSION};
pub use error::StoreError;
#[cfg(any(test, feature = "fault-injection"))]
pub use messages::InjectWriteFailure;
pub use messages::{
    ApplyWebhook, DeleteOrchestrator, DeletePolicy, Flush, ForgetCapability, ForgetPairs, GetMirror,
    InsertOrchestrator, Load, MirrorRegistry, Ping, PutPolicy, ReconcileConfig, SavePairs, Size, UpdateOrchestrator,
};

/// Free bytes the disk must have before a broken store reopens: sled writes whole segments
/// (512 KiB) and a snapshot when it opens, so less than this would fail again at once.
const REOPEN_MIN_FREE: u64 = 1 << 20;

/// The store actor.
pub struct Store {
    /// The data dir (the database lives in its [`DB_DIR`]).
    data_dir: PathBuf,
    /// `None` only between closing a broken handle and a reopen that failed.
    db: Option<Db>,
    /// A disk error made sled refuse writes: reopen before the next one.
    broken: bool,
    /// The fleet whose registry the registry trees mirror (etcd backend).
    mirror_prefix: Option<String>,
    /// Fault injection, carried over a reopen.
    #[cfg(any(test, feature = "fault-injection"))]
    fail_writes: bool,
}

impl Store {
    /// The actor for an opened database.
    pub(crate) fn new(db: Db) -> Self {
        Self {
            data_dir: db.data_dir(),
            db: Some(db),
            broken: false,
            mirror_prefix: None,
            #[cfg(any(test, feature = "fault-injection"))]
            fail_writes: false,
        }
    }

    /// Starts the actor on its own thread. The database handle moves into the actor (no copy
    /// stays behind in the arbiter's factory), so that a reopen can take the data dir's lock.
    pub fn start(db: Db) -> Addr<Store> {
        let data_dir = db.data_dir();
        let first = parking_lot::Mutex::new(Some(Store::new(db)));
        // The factory runs again only if the actor stopped, which it never does; should it,
        // the new actor opens the database at its first write.
        SyncArbiter::start(1, move || {
            first.lock().take().unwrap_or_else(|| Store {
                data_dir: data_dir.clone(),
                db: None,
                broken: true,
                mirror_prefix: None,
                #[cfg(any(test, feature = "fault-injection"))]
                fail_writes: false,
            })
        })
    }

    /// The database for a read.
    fn read(&self) -> Result<&Db, StoreError> {
        self.db.as_ref().ok_or_else(|| {
            StoreError::Disk(
                "the database was closed after a disk error and has not reopened yet (it does at the next write \
                 once the disk has room)"
                    .into(),
            )
        })
    }

    /// Runs a write, reopening the database first if a disk error broke it; a disk error from
    /// this write marks it broken.
    fn write<T>(&mut self, f: impl FnOnce(&Db) -> Result<T, StoreError>) -> Result<T, StoreError> {
        if self.broken {
            self.reopen()?;
        }
        let res = f(self.read()?);
        if let Err(StoreError::Disk(detail)) = &res {
            if !self.broken {
                tracing::error!(error = %detail, "store write failed on disk; the database reopens before the next write");
            }
            self.broken = true;
        }
        res
    }

    /// Closes the broken handle and opens the database again, unless the disk is still full.
    fn reopen(&mut self) -> Result<(), StoreError> {
        let path = self.data_dir.join(DB_DIR);
        if let Some(free) = free_bytes(&path).filter(|free| *free < REOPEN_MIN_FREE) {
            return Err(StoreError::Disk(format!(
                "the disk holding {} is full ({free} bytes free); writes resume once it has {REOPEN_MIN_FREE} bytes \
                 free (acknowledged changes are safe)",
                path.display()
            )));
        }
        // sled's write error is sticky and the lock is the handle's: the old one goes first.
        self.db = None;
        #[allow(unused_mut)] // Only fault injection changes it.
        let mut db = db::open(&self.data_dir)?;
        #[cfg(any(test, feature = "fault-injection"))]
        db.set_fail_writes(self.fail_writes);
        self.db = Some(db);
        self.broken = false;
        metrics::counter!(crate::metrics::STORE_REOPENS).increment(1);
        tracing::info!(path = %path.display(), "store reopened after a disk error: writes resume");
        Ok(())
    }

    #[cfg(any(test, feature = "fault-injection"))]
    fn set_fail_writes(&mut self, fail: bool) {
        self.fail_writes = fail;
        if let Some(db) = &mut self.db {
            db.set_fail_writes(fail);
        }
    }
}

/// Bytes an unprivileged process may still write on the file system holding `path`.
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

impl Actor for Store {
    type Context = SyncContext<Self>;
}
