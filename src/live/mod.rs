//! Live updates: a feed of "deployment X changed" events and the
//! subscription streams built on it.
//!
//! On Postgres the feed is filled by [`listener::listen`] from triggers, so
//! it sees every writer and every instance; on SQLite (one process) the
//! server's own mutations publish into it.

pub mod listener;
pub mod watch;

use std::time::Duration;

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::config::Limits;

/// Events buffered per subscriber before it counts as lagging (and resyncs).
const FEED_CAPACITY: usize = 4096;

/// Something changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The deployment, or one of its replicas, resources or history rows.
    Deployment(Uuid),
    /// Changes may have been missed (the listener reconnected): refresh everything.
    Resync,
}

/// Fans changes out to every subscription of this instance.
#[derive(Debug, Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Change>,
    /// True where nothing else reports changes (SQLite): mutations publish.
    publish_mutations: bool,
    /// A subscription sends at most one message per interval.
    interval: Duration,
}

impl ChangeFeed {
    pub fn new(publish_mutations: bool) -> Self {
        let (sender, _) = broadcast::channel(FEED_CAPACITY);
        Self { sender, publish_mutations, interval: Limits::default().coalesce_interval }
    }

    /// Coalesces each subscription's changes to one message per `interval`.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The shortest interval between two messages of one subscription.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }

    /// Reports a change; with no subscriber it costs nothing.
    pub fn send(&self, change: Change) {
        // An error only means nobody is subscribed.
        let _ = self.sender.send(change);
    }

    /// Called after a mutation commits; a no-op where triggers report changes.
    pub fn mutated(&self, id: Uuid) {
        if self.publish_mutations {
            self.send(Change::Deployment(id));
        }
    }
}
