//! Live updates: a feed of "deployment X changed" events and the
//! subscription streams built on it.
//!
//! The server fills the feed from the change log the triggers write
//! ([`capture::read_changes`] on Postgres, [`sqlite_capture::read_changes`]
//! on SQLite), so it sees every writer and, on Postgres, every instance.
//! Without a reader (an app built in-process, as the tests do), the
//! server's own mutations publish into it on SQLite.

pub mod capture;
pub mod sqlite_capture;
pub mod watch;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use uuid::Uuid;

pub use self::watch::{Caps, GroupKey, Router, Watching};
use crate::config::Limits;

/// Something changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The deployment, or one of its replicas, resources or history rows.
    Deployment(Uuid),
    /// Changes may have been missed (the listener reconnected): refresh everything.
    Resync,
}

/// Routes changes to the subscriptions of this instance that watch them.
#[derive(Debug, Clone)]
pub struct ChangeFeed {
    router: Arc<Router>,
    /// True where nothing else reports changes (SQLite): mutations publish.
    publish_mutations: bool,
    /// Whether changes flow: at once on SQLite, after the change reader's
    /// first read on Postgres (`/readyz` waits for it).
    live: Arc<AtomicBool>,
    counts: Arc<Counts>,
    /// Every change, for the webhook detector, once it listens.
    tap: Arc<Tap>,
}

/// The deployments changed since the webhook detector last took them: a
/// set, so a burst of writes to one deployment is one entry.
#[derive(Debug, Default)]
pub struct Tap {
    listening: AtomicBool,
    changed: std::sync::Mutex<Changed>,
    wake: tokio::sync::Notify,
}

/// What the tap holds.
#[derive(Debug, Default)]
pub struct Changed {
    pub deployments: std::collections::HashSet<Uuid>,
    /// Changes may have been missed: look at every deployment.
    pub everything: bool,
}

impl Tap {
    /// Starts collecting changes; the first take is "everything".
    pub fn listen(&self) {
        if let Ok(mut changed) = self.changed.lock() {
            changed.everything = true;
        }
        self.listening.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    fn put(&self, change: Change) {
        if !self.is_listening() {
            return;
        }
        if let Ok(mut changed) = self.changed.lock() {
            match change {
                Change::Deployment(id) => drop(changed.deployments.insert(id)),
                Change::Resync => changed.everything = true,
            }
        }
        self.wake.notify_one();
    }

    /// Puts back what could not be handled, to be taken again.
    pub fn put_back(&self, taken: Changed) {
        if let Ok(mut changed) = self.changed.lock() {
            changed.deployments.extend(taken.deployments);
            changed.everything |= taken.everything;
        }
    }

    /// Waits for changes, then takes them all.
    pub async fn take(&self) -> Changed {
        loop {
            if let Ok(mut changed) = self.changed.lock()
                && (changed.everything || !changed.deployments.is_empty())
            {
                return std::mem::take(&mut *changed);
            }
            self.wake.notified().await;
        }
    }
}

/// What the feed has carried, for `/metrics`.
#[derive(Debug, Default)]
struct Counts {
    changes: AtomicU64,
    restarts: AtomicU64,
    reads: AtomicU64,
}

/// What the feed has carried so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedCounts {
    /// Changes received.
    pub changes: u64,
    /// Times the change reader started over.
    pub restarts: u64,
    /// Reads of the change log (or, with no subscription here, of a snapshot).
    pub reads: u64,
}

impl ChangeFeed {
    pub fn new(publish_mutations: bool) -> Self {
        Self::with(publish_mutations, Limits::default())
    }

    /// A feed whose subscriptions follow `limits`: coalescing interval and caps.
    pub fn with(publish_mutations: bool, limits: Limits) -> Self {
        let caps = Caps { per_user: limits.subscriptions_per_user, total: limits.subscriptions };
        let router = Arc::new(Router::new(limits.coalesce_interval, caps));
        Self {
            router,
            publish_mutations,
            live: Arc::new(AtomicBool::new(publish_mutations)),
            counts: Arc::default(),
            tap: Arc::default(),
        }
    }

    /// Whether changes reach subscriptions yet.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// Called by the change reader once it has read.
    pub fn mark_live(&self) {
        self.live.store(true, Ordering::Relaxed);
    }

    /// Where subscriptions join their groups.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The shortest interval between two messages of one subscription.
    pub fn interval(&self) -> Duration {
        self.router.interval()
    }

    /// Where the webhook detector takes every change from.
    pub fn tap(&self) -> &Arc<Tap> {
        &self.tap
    }

    /// Reports a change; it wakes only the groups watching it.
    pub fn send(&self, change: Change) {
        self.tap.put(change);
        match change {
            Change::Deployment(id) => {
                self.counts.changes.fetch_add(1, Ordering::Relaxed);
                self.router.changed(id);
            }
            Change::Resync => self.router.resync(),
        }
    }

    /// Called by the change reader when it starts over, at start and after
    /// an error or a pause in which it may have missed changes.
    pub fn restarted(&self) {
        self.counts.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Called by the change reader after each read.
    pub fn read_done(&self) {
        self.counts.reads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> FeedCounts {
        FeedCounts {
            changes: self.counts.changes.load(Ordering::Relaxed),
            restarts: self.counts.restarts.load(Ordering::Relaxed),
            reads: self.counts.reads.load(Ordering::Relaxed),
        }
    }

    /// Called after a mutation commits; a no-op where triggers report changes.
    pub fn mutated(&self, id: Uuid) {
        if self.publish_mutations {
            self.send(Change::Deployment(id));
        }
    }
}
