//! Routing and multiplexing of live updates.
//!
//! Subscriptions of one user to one deployment with one selection (its
//! plan) form a group. A change to deployment X wakes only X's groups; each
//! group refetches once per coalesced burst, and every member gets that one
//! result through a `watch` channel, which holds only the latest state, so
//! a slow reader gets coalesced states, never a queue. Different users
//! never share a group, so a result is always computed under its user's scope.

use std::{
    any::Any,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use foldhash::HashMap;

use futures_util::{Stream, stream};
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};
use uuid::Uuid;

use crate::{error::ApiError, ids::UserId};

/// After a listener reconnect, every watched deployment is refreshed once,
/// spread over this, so the database sees a ramp rather than a spike.
pub const RESYNC_SPREAD: Duration = Duration::from_secs(1);

/// What a group shares: one user, one deployment, one selection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub user: UserId,
    pub deployment: Uuid,
    /// The selection's plan, canonically written: equal plans read the same
    /// rows with the same statement.
    pub selection: String,
}

/// How many subscriptions an instance takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub per_user: usize,
    pub total: usize,
}

/// One refetch's result, numbered when the fetch started.
#[derive(Clone)]
struct Update<T> {
    started: u64,
    state: Result<T, ApiError>,
}

struct Group<T> {
    key: GroupKey,
    /// When the latest wake-up came (a change arrived), if one did since the
    /// last refetch started.
    woken: Mutex<Option<std::time::Instant>>,
    wake: Notify,
    updates: watch::Sender<Option<Update<T>>>,
}

/// A group as the router sees it, whatever its state type.
trait Member: Send + Sync {
    fn key(&self) -> &GroupKey;
    fn wake(&self);
    fn watchers(&self) -> usize;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<T: Send + Sync + 'static> Member for Group<T> {
    fn key(&self) -> &GroupKey {
        &self.key
    }

    fn wake(&self) {
        *self.woken.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
        // Stores one permit when the group is busy: bursts coalesce.
        self.wake.notify_one();
    }

    fn watchers(&self) -> usize {
        self.updates.receiver_count()
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// Every group of an instance, by deployment.
pub struct Router {
    routes: Mutex<HashMap<Uuid, Vec<Arc<dyn Member>>>>,
    users: Mutex<HashMap<UserId, usize>>,
    total: AtomicUsize,
    caps: Caps,
    interval: Duration,
    /// Numbers fetches as they start (first messages included).
    fetches: AtomicU64,
    refetches: AtomicU64,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("subscriptions", &self.subscriptions())
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

impl Router {
    pub fn new(interval: Duration, caps: Caps) -> Self {
        Self {
            routes: Mutex::default(),
            users: Mutex::default(),
            total: AtomicUsize::new(0),
            caps,
            interval,
            fetches: AtomicU64::new(0),
            refetches: AtomicU64::new(0),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Subscriptions open on this instance.
    pub fn subscriptions(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Refetches run for changes (each shared by its group).
    pub fn refetches(&self) -> u64 {
        self.refetches.load(Ordering::Relaxed)
    }

    /// Groups being watched (distinct user, deployment and selection).
    pub fn groups(&self) -> usize {
        self.routes.lock().map(|routes| routes.values().map(Vec::len).sum()).unwrap_or_default()
    }

    /// Wakes the groups watching `deployment`, and only those.
    pub fn changed(&self, deployment: Uuid) {
        if let Ok(routes) = self.routes.lock()
            && let Some(groups) = routes.get(&deployment)
        {
            groups.iter().for_each(|group| group.wake());
        }
    }

    /// Wakes every group once, spread over [`RESYNC_SPREAD`].
    pub fn resync(&self) {
        let groups: Vec<Arc<dyn Member>> = match self.routes.lock() {
            Ok(routes) => routes.values().flatten().cloned().collect(),
            Err(_) => return,
        };
        if groups.is_empty() {
            return;
        }
        tokio::spawn(async move {
            let (start, count) = (Instant::now(), u32::try_from(groups.len()).unwrap_or(u32::MAX));
            for (n, group) in (0..count).zip(groups) {
                tokio::time::sleep_until(start + RESYNC_SPREAD * n / count).await;
                group.wake();
            }
        });
    }

    /// Joins `key`'s group (starting it, with `fetch` as its refetch, if it
    /// is the first), or refuses when a cap is reached. The handle's stream
    /// starts with the state the caller reads *after* this returns. `fetch`
    /// is given when the latest change it must show arrived.
    pub fn watch<T, F, Fut>(
        self: &Arc<Self>,
        key: GroupKey,
        fetch: F,
    ) -> Result<Watching<T>, ApiError>
    where
        T: Clone + Send + Sync + 'static,
        F: FnMut(std::time::Instant) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let slot = self.take_slot(key.user)?;
        let mut routes = self.routes.lock().map_err(|_| poisoned())?;
        let groups = routes.entry(key.deployment).or_default();
        let joined = groups
            .iter()
            .find(|group| group.key() == &key)
            .and_then(|group| group.clone().into_any().downcast::<Group<T>>().ok());
        let updates = match joined {
            Some(group) => group.updates.subscribe(),
            None => {
                let (sender, updates) = watch::channel(None);
                let group = Arc::new(Group {
                    key,
                    woken: Mutex::default(),
                    wake: Notify::new(),
                    updates: sender,
                });
                groups.push(group.clone());
                // A refetch's statements count under their own entry point.
                let scope = crate::telemetry::Scope::new("subscription.refetch");
                tokio::spawn(scope.run(self.clone().run(group, fetch)));
                updates
            }
        };
        drop(routes);
        let since = self.fetches.fetch_add(1, Ordering::SeqCst);
        Ok(Watching { updates, since, _slot: slot })
    }

    /// A group's life: a refetch per coalesced burst of wake-ups, until no
    /// one watches.
    async fn run<T, F, Fut>(self: Arc<Self>, group: Arc<Group<T>>, mut fetch: F)
    where
        T: Clone + Send + Sync + 'static,
        F: FnMut(std::time::Instant) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let mut last: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                () = group.updates.closed() => {
                    if self.remove_if_unwatched(&group) {
                        return;
                    }
                    continue;
                }
                () = group.wake.notified() => {}
            }
            if let Some(last) = last {
                tokio::time::sleep_until(last + self.interval).await;
            }
            last = Some(Instant::now());
            let started = self.fetches.fetch_add(1, Ordering::SeqCst);
            self.refetches.fetch_add(1, Ordering::Relaxed);
            let woken = group.woken.lock().unwrap_or_else(|e| e.into_inner()).take();
            let state = fetch(woken.unwrap_or_else(std::time::Instant::now)).await;
            group.updates.send_replace(Some(Update { started, state }));
        }
    }

    /// Drops `group` unless someone joined it meanwhile (joining holds the
    /// same lock, so no one joins a group on its way out).
    fn remove_if_unwatched<T: Send + Sync + 'static>(&self, group: &Arc<Group<T>>) -> bool {
        let Ok(mut routes) = self.routes.lock() else { return true };
        if group.updates.receiver_count() > 0 {
            return false;
        }
        if let Some(groups) = routes.get_mut(&group.key.deployment) {
            groups.retain(|member| member.key() != &group.key || member.watchers() > 0);
            if groups.is_empty() {
                routes.remove(&group.key.deployment);
            }
        }
        true
    }

    fn take_slot(self: &Arc<Self>, user: UserId) -> Result<Slot, ApiError> {
        let mut users = self.users.lock().map_err(|_| poisoned())?;
        let mine = users.entry(user).or_default();
        if *mine >= self.caps.per_user {
            return Err(ApiError::TooManySubscriptions(format!(
                "you already run {} subscriptions on this server, the most allowed per user; end one first",
                self.caps.per_user
            )));
        }
        if self.total.load(Ordering::SeqCst) >= self.caps.total {
            return Err(ApiError::Busy(format!(
                "this server runs {} subscriptions, the most it takes; retry shortly",
                self.caps.total
            )));
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        Ok(Slot { router: self.clone(), user })
    }
}

fn poisoned() -> ApiError {
    ApiError::Busy("live updates are unavailable; retry shortly".to_owned())
}

/// A subscription's place in the caps, given back when it ends.
struct Slot {
    router: Arc<Router>,
    user: UserId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.router.total.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut users) = self.router.users.lock()
            && let Some(count) = users.get_mut(&self.user)
        {
            *count -= 1;
            if *count == 0 {
                users.remove(&self.user);
            }
        }
    }
}

/// One subscription's membership of its group.
pub struct Watching<T> {
    updates: watch::Receiver<Option<Update<T>>>,
    /// Fetches numbered below this started before the subscriber's own
    /// first read, so they can hold nothing newer: skipped.
    since: u64,
    _slot: Slot,
}

impl<T> std::fmt::Debug for Watching<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watching").field("since", &self.since).finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> Watching<T> {
    /// `first`, then the group's states as they come (the latest one when
    /// the reader is slow). A `DeploymentNotFound` (deleted, say) is sent
    /// and ends the stream.
    pub fn updates(self, first: T) -> impl Stream<Item = Result<T, ApiError>> + Send + use<T> {
        stream::unfold((Some(first), Some(self)), |(first, watching)| async move {
            if let Some(first) = first {
                return Some((Ok(first), (None, watching)));
            }
            let mut watching = watching?;
            loop {
                watching.updates.changed().await.ok()?;
                let Some(update) = watching.updates.borrow_and_update().clone() else { continue };
                if update.started < watching.since {
                    continue;
                }
                let ends = matches!(update.state, Err(ApiError::DeploymentNotFound(_)));
                return Some((update.state, (None, (!ends).then_some(watching))));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use futures_util::StreamExt;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const CAPS: Caps = Caps { per_user: 1_000, total: 10_000 };

    fn router() -> Arc<Router> {
        Arc::new(Router::new(Duration::from_millis(100), CAPS))
    }

    fn key(user: UserId, deployment: Uuid) -> GroupKey {
        GroupKey { user, deployment, selection: "status".into() }
    }

    /// A fetch that counts its calls and returns the count.
    fn counting(
        calls: &Arc<AtomicU32>,
    ) -> impl FnMut(std::time::Instant) -> std::future::Ready<Result<u32, ApiError>> + Send + 'static
    {
        let calls = calls.clone();
        move |_| std::future::ready(Ok(calls.fetch_add(1, Ordering::SeqCst) + 1))
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_wakes_only_the_watchers_of_its_deployment() {
        let (router, user) = (router(), UserId(Uuid::new_v4()));
        let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
        let (x_calls, y_calls) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let _x = router.watch(key(user, x), counting(&x_calls)).map(|w| w.updates(0));
        let _y = router.watch(key(user, y), counting(&y_calls)).map(|w| w.updates(0));
        settle().await;
        router.changed(x);
        settle().await;
        assert_eq!((x_calls.load(Ordering::SeqCst), y_calls.load(Ordering::SeqCst)), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn watchers_of_one_selection_share_one_refetch_and_users_never_share() -> TestResult {
        let router = router();
        let (alice, bob, id) = (UserId(Uuid::new_v4()), UserId(Uuid::new_v4()), Uuid::new_v4());
        let (calls, bob_calls) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let mut streams = (0..100)
            .map(|_| Ok(Box::pin(router.watch(key(alice, id), counting(&calls))?.updates(0))))
            .collect::<Result<Vec<_>, ApiError>>()?;
        let mut bobs = Box::pin(router.watch(key(bob, id), counting(&bob_calls))?.updates(0));
        for stream in &mut streams {
            assert_eq!(stream.next().await.and_then(Result::ok), Some(0));
        }
        bobs.next().await;
        assert_eq!(router.groups(), 2);
        for _ in 0..50 {
            router.changed(id);
        }
        for stream in &mut streams {
            assert_eq!(stream.next().await.and_then(Result::ok), Some(1), "one shared state");
        }
        assert_eq!(bobs.next().await.and_then(Result::ok), Some(1));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "100 watchers, 50 changes: one refetch");
        assert_eq!(bob_calls.load(Ordering::SeqCst), 1, "another user: a refetch of their own");
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_gets_the_latest_state_not_a_queue() -> TestResult {
        let (router, user, id) = (router(), UserId(Uuid::new_v4()), Uuid::new_v4());
        let calls = Arc::new(AtomicU32::new(0));
        let mut slow = Box::pin(router.watch(key(user, id), counting(&calls))?.updates(0));
        assert_eq!(slow.next().await.and_then(Result::ok), Some(0));
        for _ in 0..5 {
            router.changed(id);
            settle().await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 5, "five separate changes, five states");
        assert_eq!(slow.next().await.and_then(Result::ok), Some(5), "only the latest is kept");
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_resync_wakes_every_group_once_spread_over_time() -> TestResult {
        let (router, user) = (router(), UserId(Uuid::new_v4()));
        let (fetched, mut fetches) = tokio::sync::mpsc::unbounded_channel();
        let _streams = (0..10)
            .map(|_| {
                let fetched = fetched.clone();
                let fetch = move |_| {
                    let _ = fetched.send(Instant::now());
                    std::future::ready(Ok(()))
                };
                Ok(router.watch(key(user, Uuid::new_v4()), fetch)?.updates(()))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        settle().await;
        let start = Instant::now();
        router.resync();
        tokio::time::sleep(RESYNC_SPREAD * 2).await;
        let mut times = Vec::new();
        while let Ok(at) = fetches.try_recv() {
            times.push(at);
        }
        assert_eq!(times.len(), 10, "each group once");
        let spread = times.iter().max().copied().unwrap_or(start)
            - times.iter().min().copied().unwrap_or(start);
        assert!(spread >= RESYNC_SPREAD * 8 / 10, "spread over {spread:?}");
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn caps_refuse_with_their_codes_and_free_up_when_a_subscription_ends() {
        let router =
            Arc::new(Router::new(Duration::from_millis(100), Caps { per_user: 2, total: 3 }));
        let (alice, bob, carol) =
            (UserId(Uuid::new_v4()), UserId(Uuid::new_v4()), UserId(Uuid::new_v4()));
        let calls = Arc::new(AtomicU32::new(0));
        let a1 = router.watch(key(alice, Uuid::new_v4()), counting(&calls));
        let _a2 = router.watch(key(alice, Uuid::new_v4()), counting(&calls));
        let a3 = router.watch(key(alice, Uuid::new_v4()), counting(&calls));
        assert_eq!(a3.map(|_| ()).map_err(|e| e.code()), Err("TOO_MANY_SUBSCRIPTIONS"));
        let _b1 = router.watch(key(bob, Uuid::new_v4()), counting(&calls));
        let c1 = router.watch(key(carol, Uuid::new_v4()), counting(&calls));
        assert_eq!(c1.map(|_| ()).map_err(|e| e.code()), Err("SERVICE_UNAVAILABLE"));
        drop(a1);
        assert_eq!(router.subscriptions(), 2);
        assert!(router.watch(key(carol, Uuid::new_v4()), counting(&calls)).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_ends_with_its_last_watcher() -> TestResult {
        let (router, user, id) = (router(), UserId(Uuid::new_v4()), Uuid::new_v4());
        let calls = Arc::new(AtomicU32::new(0));
        let watching = router.watch(key(user, id), counting(&calls))?;
        assert_eq!(router.groups(), 1);
        drop(watching);
        settle().await;
        assert_eq!((router.groups(), router.subscriptions()), (0, 0));
        router.changed(id);
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        Ok(())
    }
}
