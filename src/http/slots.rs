//! Slots for work, not for waiting: a GraphQL request takes a slot only
//! once it is authenticated and its body is read, so stalled or anonymous
//! clients hold none. At most `max_in_flight` run at once and at most
//! `per_user` of one user; a request waits up to `queue_timeout` for each,
//! then is refused so the client can retry (429 for a user over their
//! share, 503 when the whole server is busy).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use foldhash::HashMap;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::telemetry::{Metrics, Refusal as Counted};

/// Why no slot was had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// This user already runs their share.
    UserBusy,
    /// The server runs all it may.
    Busy,
}

#[derive(Debug)]
pub(super) struct Slots {
    global: Arc<Semaphore>,
    max_in_flight: usize,
    users: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
    per_user: usize,
    queue_timeout: Duration,
    /// Requests waiting for a slot now.
    waiting: AtomicUsize,
    /// Where refusals are counted.
    metrics: Metrics,
}

/// A running request's slot; released when dropped.
#[derive(Debug)]
pub(super) struct Slot<'a> {
    slots: &'a Slots,
    user: Uuid,
    user_permit: Option<OwnedSemaphorePermit>,
    _global: OwnedSemaphorePermit,
}

impl Slots {
    pub(super) fn new(
        max_in_flight: usize,
        per_user: usize,
        queue_timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            global: Arc::new(Semaphore::new(max_in_flight.max(1))),
            max_in_flight: max_in_flight.max(1),
            users: Mutex::default(),
            per_user: per_user.clamp(1, max_in_flight.max(1)),
            queue_timeout,
            waiting: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Requests waiting for a slot now.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Slots taken now (requests and socket operations running).
    pub(super) fn running(&self) -> usize {
        self.max_in_flight.saturating_sub(self.global.available_permits())
    }

    pub(super) async fn acquire(&self, user: Uuid) -> Result<Slot<'_>, Refusal> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let slot = self.wait_for_slot(user).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if let Err(refusal) = &slot {
            self.metrics.refused(match refusal {
                Refusal::UserBusy => Counted::RateLimited,
                Refusal::Busy => Counted::ServerBusy,
            });
        }
        slot
    }

    async fn wait_for_slot(&self, user: Uuid) -> Result<Slot<'_>, Refusal> {
        let user_semaphore = self.user_semaphore(user);
        let user_permit = tokio::time::timeout(self.queue_timeout, user_semaphore.acquire_owned())
            .await
            .ok()
            .and_then(Result::ok);
        let Some(user_permit) = user_permit else {
            self.forget_idle(user);
            return Err(Refusal::UserBusy);
        };
        let global = tokio::time::timeout(self.queue_timeout, self.global.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok);
        match global {
            Some(global) => {
                Ok(Slot { slots: self, user, user_permit: Some(user_permit), _global: global })
            }
            None => {
                drop(user_permit);
                self.forget_idle(user);
                Err(Refusal::Busy)
            }
        }
    }

    fn user_semaphore(&self, user: Uuid) -> Arc<Semaphore> {
        let mut users = self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        users.entry(user).or_insert_with(|| Arc::new(Semaphore::new(self.per_user))).clone()
    }

    /// Drops a user's entry once nobody holds or waits for it, so the map
    /// holds only users with requests in flight.
    fn forget_idle(&self, user: Uuid) {
        let mut users = self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if users.get(&user).is_some_and(|semaphore| Arc::strong_count(semaphore) == 1) {
            users.remove(&user);
        }
    }

    #[cfg(test)]
    fn users(&self) -> usize {
        self.users.lock().map_or(0, |users| users.len())
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        // The permit holds the semaphore's Arc: release it before looking.
        drop(self.user_permit.take());
        self.slots.forget_idle(self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_user_over_their_share_waits_then_is_refused_while_others_run() {
        let slots = Slots::new(4, 1, Duration::from_millis(50), Metrics::default());
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let running = slots.acquire(alice).await;
        assert!(running.is_ok());
        assert_eq!(slots.acquire(alice).await.err(), Some(Refusal::UserBusy));
        assert!(slots.acquire(bob).await.is_ok(), "another user is not held up");
        drop(running);
        assert!(slots.acquire(alice).await.is_ok(), "the slot came back");
    }

    #[tokio::test]
    async fn a_full_server_refuses_after_the_queue_timeout() {
        let slots = Slots::new(1, 1, Duration::from_millis(50), Metrics::default());
        let held = slots.acquire(Uuid::new_v4()).await;
        assert!(held.is_ok());
        assert_eq!(slots.acquire(Uuid::new_v4()).await.err(), Some(Refusal::Busy));
    }

    #[tokio::test]
    async fn idle_users_leave_no_entry() {
        let slots = Slots::new(4, 2, Duration::from_millis(50), Metrics::default());
        for _ in 0..10 {
            let slot = slots.acquire(Uuid::new_v4()).await;
            assert!(slot.is_ok());
        }
        assert_eq!(slots.users(), 0);
    }
}
