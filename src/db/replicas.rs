//! Reads on Postgres hot standbys (`DATABASE_REPLICA_URLS`), never staler
//! than `REPLICA_MAX_LAG`, and a user's own writes always seen on the
//! instance that made them.
//!
//! One task polls the primary's WAL position (`pg_current_wal_lsn()`) and
//! one each replica's replay position (`pg_last_wal_replay_lsn()`), every
//! half of the bound. A primary position is kept with the instant its poll
//! was *sent*, so everything committed before that instant is at or before
//! the position. A read goes to a replica only if the replica has replayed
//! at least the oldest primary position observed within the bound: it then
//! holds every commit older than the bound. Where no such observation
//! exists (the primary's poll failing, the process just started) or no
//! replica has replayed that far, the read goes to the primary.
//!
//! Read your writes: a user's commit is remembered with its instant; until
//! a primary position observed *after* it has been replayed, that user's
//! reads on this instance go to the primary. A subscription's refetch after
//! a change likewise needs a position observed after the change arrived.
//!
//! A read that fails on a replica (down, restarting, cancelled by recovery)
//! is run again on the primary, and the replica serves nothing more until
//! its next successful poll.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use foldhash::HashMap;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement};
use uuid::Uuid;

use super::Db;
use crate::telemetry::Metrics;

/// Which server answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Primary,
    Replica,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }
}

/// Where reads go: the primary alone, or also replicas within the bound.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reads {
    primary: Db,
    replicas: Option<Arc<Replicas>>,
    metrics: Metrics,
}

impl Reads {
    /// Every read on `primary`.
    pub fn primary_only(primary: Db, metrics: Metrics) -> Self {
        Self { primary, replicas: None, metrics }
    }

    /// Reads on `replicas` (each a request pool and a one-connection pool
    /// for its poll) while they are within `max_lag` of the primary, which
    /// `primary_poll` observes; the polls run until the process ends.
    pub fn with_replicas(
        primary: Db,
        primary_poll: Db,
        replicas: Vec<(Db, Db)>,
        max_lag: Duration,
        metrics: Metrics,
    ) -> Self {
        let (pools, polls): (Vec<_>, Vec<_>) = replicas.into_iter().unzip();
        let shared = Arc::new(Replicas {
            max_lag,
            seen: Mutex::default(),
            writers: Mutex::default(),
            replicas: pools
                .into_iter()
                .enumerate()
                .map(|(index, db)| {
                    Arc::new(Replica {
                        index,
                        db,
                        replayed: AtomicU64::new(0),
                        usable: AtomicBool::new(false),
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
        });
        let interval = poll_interval(max_lag);
        tokio::spawn(shared.clone().poll_primary(primary_poll, interval));
        for (replica, poll) in shared.replicas.iter().zip(polls) {
            let task =
                shared.clone().poll_replica(replica.clone(), poll, interval, metrics.clone());
            tokio::spawn(task);
        }
        Self { primary, replicas: Some(shared), metrics }
    }

    /// The primary: writes, and what must read it.
    pub fn primary(&self) -> &Db {
        &self.primary
    }

    /// Where `user`'s read goes now: a replica within the bound that holds
    /// the user's own writes, else the primary.
    pub fn for_user(&self, user: Uuid) -> Db {
        self.choose(user, None)
    }

    /// Where `user`'s read after a change that arrived at `changed` goes: a
    /// replica that holds that change too, else the primary.
    pub fn after(&self, user: Uuid, changed: Instant) -> Db {
        self.choose(user, Some(changed))
    }

    fn choose(&self, user: Uuid, after: Option<Instant>) -> Db {
        let Some(replicas) = &self.replicas else { return self.primary.clone() };
        match replicas.choose(user, after) {
            Some(replica) => Db::Replica(Arc::new(ReplicaRead {
                replica,
                primary: self.primary.clone(),
                fell_back: AtomicBool::new(false),
            })),
            None => self.primary.clone(),
        }
    }

    /// Called once `user`'s write committed: their reads here see it.
    pub fn wrote(&self, user: Uuid) {
        if let Some(replicas) = &self.replicas {
            let now = Instant::now();
            replicas.writers.lock().unwrap_or_else(|e| e.into_inner()).insert(user, now);
        }
    }

    /// Counts one read operation served through `db` (see
    /// [`Db::read_target`]), and says where it went.
    pub fn served(&self, db: &Db) -> Target {
        let target = db.read_target();
        self.metrics.db_read(target == Target::Replica);
        target
    }
}

/// How often positions are polled: twice per bound, within reason.
fn poll_interval(max_lag: Duration) -> Duration {
    (max_lag / 2).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Longest a poll may take; past it the target counts as unreachable.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);

/// How long primary positions are kept (for the lag each replica reports).
const KEEP: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Replicas {
    max_lag: Duration,
    /// Primary positions, oldest first, each with when its poll was sent.
    seen: Mutex<VecDeque<Observed>>,
    /// When each user's latest write on this instance committed, for as long
    /// as the bound alone does not cover it.
    writers: Mutex<HashMap<Uuid, Instant>>,
    replicas: Vec<Arc<Replica>>,
    /// Round robin among the replicas that qualify.
    next: AtomicUsize,
}

#[derive(Debug, Clone, Copy)]
struct Observed {
    at: Instant,
    lsn: u64,
}

#[derive(Debug)]
struct Replica {
    index: usize,
    db: Db,
    /// The replay position its last successful poll read.
    replayed: AtomicU64,
    /// Whether it answered its last poll as a standby (and no read has
    /// failed on it since).
    usable: AtomicBool,
}

impl Replicas {
    /// A replica for a read now, by `user`, after `after` if given.
    fn choose(&self, user: Uuid, after: Option<Instant>) -> Option<Arc<Replica>> {
        let now = Instant::now();
        let wrote = self.writers.lock().unwrap_or_else(|e| e.into_inner()).get(&user).copied();
        let since = wrote.max(after);
        let required = {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let window = now.checked_sub(self.max_lag);
            let first = window.map_or(0, |window| seen.partition_point(|o| o.at < window));
            let mut required = seen.get(first)?.lsn;
            if let Some(since) = since {
                let first = seen.partition_point(|o| o.at <= since);
                required = required.max(seen.get(first)?.lsn);
            }
            required
        };
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|k| &self.replicas[(start + k) % count])
            .find(|replica| {
                replica.usable.load(Ordering::Acquire)
                    && replica.replayed.load(Ordering::Acquire) >= required
            })
            .cloned()
    }

    /// How far behind a replica that replayed `replayed` is: zero when it
    /// holds the newest position seen, else the age of the newest position
    /// it holds (or of the oldest kept, if it holds none of them).
    fn lag(&self, replayed: u64, now: Instant) -> Duration {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.back() {
            None => Duration::ZERO,
            Some(newest) if replayed >= newest.lsn => Duration::ZERO,
            Some(_) => {
                let held = seen.partition_point(|o| o.lsn <= replayed);
                let since = seen.get(held.saturating_sub(1)).map_or(now, |o| o.at);
                now.saturating_duration_since(since)
            }
        }
    }

    async fn poll_primary(self: Arc<Self>, poll: Db, interval: Duration) {
        const SQL: &str = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn";
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticks.tick().await;
            let at = Instant::now();
            match position(&poll, SQL).await {
                Ok(Some(lsn)) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("the primary's WAL position reads again: replicas serve");
                    }
                    self.observed(Observed { at, lsn });
                }
                outcome => {
                    if !std::mem::replace(&mut failing, true) {
                        let error = outcome.err().unwrap_or_else(|| "no position".to_owned());
                        tracing::warn!(%error, "cannot read the primary's WAL position: every \
                             read goes to the primary until it reads again");
                    }
                }
            }
        }
    }

    fn observed(&self, observed: Observed) {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.push_back(observed);
            while seen.front().is_some_and(|o| observed.at.duration_since(o.at) > KEEP) {
                seen.pop_front();
            }
        }
        // A write older than the bound is covered by the bound alone: every
        // position a read may rely on from now was observed after it.
        if let Some(covered) = observed.at.checked_sub(self.max_lag) {
            let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
            writers.retain(|_, wrote| *wrote >= covered);
        }
    }

    async fn poll_replica(
        self: Arc<Self>,
        replica: Arc<Replica>,
        poll: Db,
        interval: Duration,
        metrics: Metrics,
    ) {
        const SQL: &str = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint AS lsn";
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let index = replica.index;
        loop {
            ticks.tick().await;
            let (usable, problem) = match position(&poll, SQL).await {
                Ok(Some(lsn)) => {
                    replica.replayed.store(lsn, Ordering::Release);
                    (true, None)
                }
                Ok(None) => (false, Some("it is not a standby (no replay position)".to_owned())),
                Err(error) => (false, Some(error)),
            };
            let was = replica.usable.swap(usable, Ordering::AcqRel);
            match problem {
                Some(error) if was => tracing::warn!(
                    replica = index,
                    %error,
                    "replica unusable: reads go to the primary until it answers again"
                ),
                None if !was => tracing::info!(replica = index, "replica serves reads"),
                _ => {}
            }
            let replayed = replica.replayed.load(Ordering::Acquire);
            metrics.replica_lag(index, self.lag(replayed, Instant::now()));
        }
    }
}

/// One poll's position; `None` where the function answers NULL.
async fn position(poll: &Db, sql: &str) -> Result<Option<u64>, String> {
    let statement = Statement::from_string(DbBackend::Postgres, sql);
    let row = tokio::time::timeout(POLL_TIMEOUT, poll.query_one_raw(statement))
        .await
        .map_err(|_| format!("no answer within {POLL_TIMEOUT:?}"))?
        .map_err(|err| err.to_string())?;
    let lsn: Option<i64> = match row {
        Some(row) => row.try_get("", "lsn").map_err(|err| err.to_string())?,
        None => None,
    };
    Ok(lsn.map(|lsn| u64::try_from(lsn).unwrap_or(0)))
}

/// One read operation's replica, and the primary it falls back to.
#[derive(Debug)]
pub struct ReplicaRead {
    replica: Arc<Replica>,
    primary: Db,
    /// Set once a statement failed on the replica: the rest of the
    /// operation reads the primary (which is never behind the replica).
    fell_back: AtomicBool,
}

impl ReplicaRead {
    /// The primary, which runs everything but reads.
    pub(super) fn primary(&self) -> &Db {
        &self.primary
    }

    /// Whether the replica still serves this operation.
    pub(super) fn on_replica(&self) -> bool {
        !self.fell_back.load(Ordering::Acquire)
    }

    /// Runs a read on the replica, or again on the primary if it fails there.
    pub(super) async fn query_all(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        if self.on_replica() {
            match self.replica.db.query_all_raw(statement.clone()).await {
                Ok(rows) => return Ok(rows),
                Err(err) => self.failed(&err),
            }
        }
        self.primary.query_all_raw(statement).await
    }

    fn failed(&self, err: &DbErr) {
        self.fell_back.store(true, Ordering::Release);
        if self.replica.usable.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                replica = self.replica.index,
                error = %err,
                "a read failed on a replica: read again on the primary; the replica serves \
                 nothing until its next poll"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(max_lag: Duration, replayed: &[u64]) -> Replicas {
        let db = Db::Pool(sea_orm::DatabaseConnection::default());
        Replicas {
            max_lag,
            seen: Mutex::default(),
            writers: Mutex::default(),
            replicas: replayed
                .iter()
                .enumerate()
                .map(|(index, lsn)| {
                    Arc::new(Replica {
                        index,
                        db: db.clone(),
                        replayed: AtomicU64::new(*lsn),
                        usable: AtomicBool::new(true),
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    #[test]
    fn a_replica_serves_only_once_it_holds_a_position_seen_within_the_bound() {
        let lag = Duration::from_millis(100);
        let shared = replicas(lag, &[50]);
        let user = Uuid::new_v4();
        assert!(shared.choose(user, None).is_none(), "no position seen yet: the primary");
        let now = Instant::now();
        shared.observed(Observed { at: now - Duration::from_millis(300), lsn: 40 });
        assert!(shared.choose(user, None).is_none(), "only a position older than the bound");
        shared.observed(Observed { at: now - Duration::from_millis(60), lsn: 50 });
        shared.observed(Observed { at: now, lsn: 70 });
        assert!(shared.choose(user, None).is_some(), "holds the oldest position within the bound");
        shared.replicas[0].replayed.store(49, Ordering::Release);
        assert!(shared.choose(user, None).is_none(), "behind it");
        shared.replicas[0].replayed.store(70, Ordering::Release);
        shared.replicas[0].usable.store(false, Ordering::Release);
        assert!(shared.choose(user, None).is_none(), "caught up but unusable");
    }

    #[test]
    fn a_writer_reads_the_primary_until_a_position_after_the_write_is_replayed() {
        let lag = Duration::from_secs(10);
        let shared = replicas(lag, &[50]);
        let (writer, other) = (Uuid::new_v4(), Uuid::new_v4());
        shared.observed(Observed { at: Instant::now(), lsn: 50 });
        shared.writers.lock().unwrap().insert(writer, Instant::now());
        assert!(shared.choose(writer, None).is_none(), "no position seen after the write");
        assert!(shared.choose(other, None).is_some(), "another user: the bound alone");
        shared.observed(Observed { at: Instant::now(), lsn: 60 });
        assert!(shared.choose(writer, None).is_none(), "the replica has not replayed it");
        shared.replicas[0].replayed.store(60, Ordering::Release);
        assert!(shared.choose(writer, None).is_some());
        let changed = Instant::now();
        assert!(shared.choose(other, Some(changed)).is_none(), "a change after every position");
    }

    #[test]
    fn lag_is_zero_when_caught_up_and_the_age_of_the_newest_held_position_otherwise() {
        let shared = replicas(Duration::from_millis(100), &[]);
        let now = Instant::now();
        shared.observed(Observed { at: now - Duration::from_secs(3), lsn: 10 });
        shared.observed(Observed { at: now - Duration::from_secs(2), lsn: 20 });
        shared.observed(Observed { at: now - Duration::from_secs(1), lsn: 30 });
        assert_eq!(shared.lag(30, now), Duration::ZERO);
        assert_eq!(shared.lag(25, now), Duration::from_secs(2));
        assert_eq!(shared.lag(5, now), Duration::from_secs(3));
    }
}
