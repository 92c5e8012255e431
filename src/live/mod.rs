//! Live updates: a feed of "deployment X changed" events and the
//! subscription streams built on it.
//!
//! On Postgres the feed is filled by [`listener::listen`] from triggers, so
//! it sees every writer and every instance; on SQLite (one process) the
//! server's own mutations publish into it.

pub mod listener;
pub mod watch;

use std::{sync::Arc, time::Duration};

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
}

impl ChangeFeed {
    pub fn new(publish_mutations: bool) -> Self {
        Self::with(publish_mutations, Limits::default())
    }

    /// A feed whose subscriptions follow `limits`: coalescing interval and caps.
    pub fn with(publish_mutations: bool, limits: Limits) -> Self {
        let caps = Caps { per_user: limits.subscriptions_per_user, total: limits.subscriptions };
        Self { router: Arc::new(Router::new(limits.coalesce_interval, caps)), publish_mutations }
    }

    /// Where subscriptions join their groups.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The shortest interval between two messages of one subscription.
    pub fn interval(&self) -> Duration {
        self.router.interval()
    }

    /// Reports a change; it wakes only the groups watching it.
    pub fn send(&self, change: Change) {
        match change {
            Change::Deployment(id) => self.router.changed(id),
            Change::Resync => self.router.resync(),
        }
    }

    /// Called after a mutation commits; a no-op where triggers report changes.
    pub fn mutated(&self, id: Uuid) {
        if self.publish_mutations {
            self.send(Change::Deployment(id));
        }
    }
}
