//! One subscription's stream: the current state first, then a fresh state
//! after each relevant change, at most one per interval, always
//! ending on the latest state.

use std::{future::Future, time::Duration};

use futures_util::{Stream, stream};
use tokio::{
    sync::broadcast::{self, error::RecvError},
    time::Instant,
};
use uuid::Uuid;

use super::Change;
use crate::error::ApiError;

struct Watch<T, F> {
    id: Uuid,
    first: Option<T>,
    changes: broadcast::Receiver<Change>,
    fetch: F,
    last_sent: Instant,
    interval: Duration,
}

/// `first` is sent at once; after that `fetch` runs once per coalesced burst
/// of changes to `id` (bursts within `interval` of the last message are
/// coalesced into one). A `DeploymentNotFound` from `fetch` (deleted, say) is
/// sent and ends the stream.
pub fn updates<T, F, Fut>(
    id: Uuid,
    first: T,
    changes: broadcast::Receiver<Change>,
    interval: Duration,
    fetch: F,
) -> impl Stream<Item = Result<T, ApiError>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let last_sent = Instant::now();
    let watch = Watch { id, first: Some(first), changes, fetch, last_sent, interval };
    stream::unfold(Some(watch), |watch| async move {
        let mut watch = watch?;
        if let Some(first) = watch.first.take() {
            return Some((Ok(first), Some(watch)));
        }
        if !watch.next_change().await {
            return None;
        }
        // Coalesce: wait out the interval, then drop what queued meanwhile;
        // the fetch below reads the state after all of it.
        tokio::time::sleep_until(watch.last_sent + watch.interval).await;
        while watch.changes.try_recv().is_ok() {}
        watch.last_sent = Instant::now();
        match (watch.fetch)().await {
            Ok(state) => Some((Ok(state), Some(watch))),
            Err(err @ ApiError::DeploymentNotFound(_)) => Some((Err(err), None)),
            Err(err) => Some((Err(err), Some(watch))),
        }
    })
}

impl<T, F> Watch<T, F> {
    /// Waits for a change that concerns this deployment; false once the feed is gone.
    async fn next_change(&mut self) -> bool {
        loop {
            match self.changes.recv().await {
                Ok(Change::Deployment(id)) if id == self.id => return true,
                Ok(Change::Deployment(_)) => {}
                // Missed events: refresh to be safe.
                Ok(Change::Resync) | Err(RecvError::Lagged(_)) => return true,
                Err(RecvError::Closed) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use futures_util::StreamExt;

    use super::*;
    use crate::live::ChangeFeed;

    #[tokio::test(start_paused = true)]
    async fn first_state_then_one_coalesced_update_per_burst() {
        let feed = ChangeFeed::new(true);
        let (id, other) = (Uuid::new_v4(), Uuid::new_v4());
        let fetches = Arc::new(AtomicU32::new(0));
        let counter = fetches.clone();
        let stream = updates(id, 0, feed.subscribe(), feed.interval(), move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok(n) }
        });
        futures_util::pin_mut!(stream);
        assert!(matches!(stream.next().await, Some(Ok(0))));
        feed.send(Change::Deployment(other));
        for _ in 0..50 {
            feed.send(Change::Deployment(id));
        }
        assert!(matches!(stream.next().await, Some(Ok(1))), "50 changes, one message");
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn not_found_ends_the_stream() {
        let feed = ChangeFeed::new(true);
        let id = Uuid::new_v4();
        let stream = updates(id, (), feed.subscribe(), feed.interval(), move || async move {
            Err::<(), _>(ApiError::DeploymentNotFound(id.to_string()))
        });
        futures_util::pin_mut!(stream);
        assert!(matches!(stream.next().await, Some(Ok(()))));
        feed.send(Change::Resync);
        assert!(matches!(stream.next().await, Some(Err(ApiError::DeploymentNotFound(_)))));
        assert!(stream.next().await.is_none());
    }
}
