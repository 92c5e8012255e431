//! Whether the database answers and takes writes, as the last operations
//! found: logged once per change rather than once per failed request,
//! counted in `/metrics`, and read by `/readyz`.
//!
//! A storage fault (a full disk, a read-only file, an I/O error) ends only
//! when a write succeeds, not when a read does (reads go on working, and
//! would make the state flap with every request). While one lasts, a probe
//! writes one row once a second; its first success ends the fault, so the
//! server recovers by itself within about a second of space being freed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::db::Db;

use crate::{db::FileWatch, error::StorageFault};

/// How often a write is tried while the database does not take them.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What an operation found of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// It answered.
    Answered,
    /// It could not be reached, or did not answer in time.
    Unavailable,
    /// It did not take a write.
    Storage(StorageFault),
}

const AVAILABLE: u8 = 0;
const UNAVAILABLE: u8 = 1;
/// `STORAGE + i` is the fault `StorageFault::ALL[i]` (`fault as u8`).
const STORAGE: u8 = 2;

#[derive(Debug, Default)]
pub(super) struct DatabaseHealth {
    state: AtomicU8,
    /// A SQLite file's permissions: no write ends a fault while it is read-only.
    file: Option<Arc<FileWatch>>,
    /// Operations failed for either reason.
    pub(super) failures: AtomicU64,
    /// Writes refused, by fault (the order of `StorageFault::ALL`).
    pub(super) faults: [AtomicU64; 3],
}

impl DatabaseHealth {
    /// Health that also heeds `file`'s permissions (see `db::FileWatch`).
    pub(super) fn watching(file: Option<Arc<FileWatch>>) -> Self {
        Self { file, ..Self::default() }
    }

    /// Notes an operation's outcome; a new storage fault starts the probe
    /// that ends it, writing through `db`.
    pub(super) fn record(self: &Arc<Self>, outcome: Outcome, db: &Db) {
        let state = self.state.load(Ordering::Relaxed);
        match outcome {
            // A read answered says nothing of writes.
            Outcome::Answered if state == UNAVAILABLE => {
                if self
                    .state
                    .compare_exchange(state, AVAILABLE, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    tracing::info!("database available again");
                }
            }
            Outcome::Answered => {}
            Outcome::Unavailable => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if state == AVAILABLE
                    && self
                        .state
                        .compare_exchange(state, UNAVAILABLE, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::warn!(
                        "database unavailable: failing requests with SERVICE_UNAVAILABLE"
                    );
                }
            }
            Outcome::Storage(fault) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.faults[fault as usize].fetch_add(1, Ordering::Relaxed);
                let faulted = STORAGE + fault as u8;
                let before = self.state.swap(faulted, Ordering::Relaxed);
                if before != faulted {
                    tracing::warn!(
                        reason = fault.reason(),
                        "database takes no writes: mutations fail with SERVICE_UNAVAILABLE \
                         until a write succeeds (probed every second)"
                    );
                }
                if before < STORAGE {
                    tokio::spawn(self.clone().probe_until_writable(db.clone()));
                }
            }
        }
    }

    /// The storage fault in force, if any (for `/readyz`).
    pub(super) fn storage_fault(&self) -> Option<StorageFault> {
        let state = self.state.load(Ordering::Relaxed);
        state.checked_sub(STORAGE).and_then(|i| StorageFault::ALL.get(usize::from(i)).copied())
    }

    /// Writes once a second until a write succeeds, then ends the fault.
    async fn probe_until_writable(self: Arc<Self>, db: Db) {
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            if self.file.as_ref().is_some_and(|file| file.is_read_only()) {
                continue;
            }
            match crate::db::probe_write(&db).await {
                Ok(()) => {
                    self.state.store(AVAILABLE, Ordering::Relaxed);
                    tracing::info!("database takes writes again");
                    return;
                }
                Err(err) => {
                    if let Some(fault) = StorageFault::of(&err) {
                        self.state.store(STORAGE + fault as u8, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}
