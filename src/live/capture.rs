//! The Postgres change reader. Triggers append `(xid, deployment_id)` to the
//! change log (migration 4) for every write by anyone; each instance reads
//! the rows that became visible since its last read, on one dedicated
//! connection, every `LIVE_POLL_INTERVAL`.
//!
//! Rows become visible at their transaction's commit, not in the order they
//! were written, so a cursor on row order would skip a transaction that
//! committed after a later one. The cursor is the last read's snapshot
//! instead: the rows visible now and not then are exactly those of the
//! transactions that snapshot saw in progress (`xip`) or had not begun
//! (`xid >= xmax`). Every read happens in one statement, whose snapshot it
//! also returns. After a lost connection, a crash (the log is UNLOGGED) or
//! a pause long enough for rows to have been pruned, the reader cannot tell
//! what it missed and sends [`Change::Resync`]: every watched deployment is
//! read again.
//!
//! While this instance has no subscription, there is no one to tell: the
//! reader only takes a snapshot every 200 ms (for pruning and `/readyz`), and
//! the first subscription's changes are read from the last one, taken
//! before that subscription's first read, so nothing in between is missed.
//! The webhook detector listens all the time: then those idle reads (5 a
//! second) read the changes too, and hand them to it.

use std::{
    collections::{HashSet, VecDeque},
    str::FromStr,
    time::{Duration, Instant},
};

use sea_orm::sqlx::{
    self, Row,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
};
use uuid::Uuid;

use super::{Change, ChangeFeed};
use crate::db::Access;

/// The change log's table.
pub const LOG: &str = migration::CHANGE_LOG;
/// How the reader's connection shows in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "deployql-changes";

/// Rows are kept this long after every transaction before them ended; a
/// reader that has not read for half of it resyncs. Reads go through the
/// index on `xid`, so the log's length costs them little.
const RETENTION: Duration = Duration::from_secs(30);
const PRUNE_EVERY: Duration = Duration::from_secs(5);
/// How often an instance without subscriptions takes a snapshot. A first
/// subscription reads the changes since the last one: the shorter, the fewer
/// recent changes it refetches for (a tenth of the reads while watching).
const IDLE_READ_EVERY: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A snapshot's bounds: every transaction below `xmin` had ended; from
/// `xmax` up none had begun; `in_progress` lists those in between not yet ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    xmin: u64,
    xmax: u64,
    in_progress: Vec<u64>,
}

impl FromStr for Snapshot {
    type Err = String;

    /// Postgres' text form: `xmin:xmax:xip,xip,...`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.split(':');
        let number = |part: Option<&str>| {
            part.and_then(|n| n.parse::<u64>().ok()).ok_or_else(|| format!("bad snapshot `{text}`"))
        };
        let (xmin, xmax) = (number(parts.next())?, number(parts.next())?);
        let in_progress = match parts.next() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|xid| xid.parse().map_err(|_| format!("bad snapshot `{text}`")))
                .collect::<Result<_, _>>()?,
        };
        Ok(Self { xmin, xmax, in_progress })
    }
}

impl Snapshot {
    /// `in_progress` as a Postgres array literal.
    fn in_progress_array(&self) -> String {
        let xids: Vec<String> = self.in_progress.iter().map(u64::to_string).collect();
        format!("{{{}}}", xids.join(","))
    }
}

/// The rows visible now that a snapshot (its xmax and in-progress list)
/// did not see, and the current snapshot, in one statement. The values are
/// numbers written here, so the statement is sent as one simple query:
/// nothing prepared stays on the server, which a transaction pooler
/// (PgBouncer) requires.
fn read_statement(xmax: u64, in_progress: &str) -> String {
    format!(
        "SELECT s.snapshot::text, c.deployment_id::text \
         FROM (SELECT pg_current_snapshot() AS snapshot) s \
         LEFT JOIN {LOG} c ON c.xid >= '{xmax}'::xid8 OR c.xid = ANY('{in_progress}'::xid8[])"
    )
}

/// Reads the change log into `feed` forever, every `interval`; a writing
/// server also prunes it.
pub async fn read_changes(
    database_url: String,
    feed: ChangeFeed,
    interval: Duration,
    access: Access,
) {
    let options = match PgConnectOptions::from_str(&database_url) {
        Ok(options) => options.application_name(APPLICATION_NAME),
        Err(err) => {
            tracing::error!(error = %err, "live updates disabled: bad DATABASE_URL");
            return;
        }
    };
    let pool = PgPoolOptions::new().max_connections(1).connect_lazy_with(options);
    let mut reader = Reader {
        cursor: None,
        lost_track: true,
        last_read: None,
        horizons: VecDeque::new(),
        last_prune: None,
    };
    let mut backoff = Duration::from_millis(100);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let watched = feed.router().subscriptions() > 0;
        if !watched && reader.last_read.is_some_and(|at| at.elapsed() < IDLE_READ_EVERY) {
            continue;
        }
        // The webhook detector needs every change, but not at once: while
        // no one here subscribes, the idle snapshots carry the changes too.
        let reading = watched || feed.tap().is_listening();
        match reader.read(&pool, &feed, reading).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(err) => {
                if !reader.lost_track {
                    tracing::warn!(error = %err, "cannot read the change log; retrying");
                }
                reader.lost_track = true;
                reader.cursor = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        if access == Access::ReadWrite {
            reader.prune(&pool).await;
        }
    }
}

/// Where the reader stands.
#[derive(Debug)]
struct Reader {
    /// The last read's snapshot, and when it was taken; none after an
    /// error, and while no one here watches.
    cursor: Option<(Snapshot, Instant)>,
    /// Changes may have been missed (at start, after an error): the next
    /// read counts as a restart.
    lost_track: bool,
    last_read: Option<Instant>,
    /// Past snapshots' `xmin`, to know what every reader has read.
    horizons: VecDeque<(Instant, u64)>,
    last_prune: Option<Instant>,
}

impl Reader {
    /// Reads what changed since the cursor while someone here watches;
    /// otherwise only takes a snapshot, the cursor a first subscription
    /// will read from.
    async fn read(
        &mut self,
        pool: &PgPool,
        feed: &ChangeFeed,
        watched: bool,
    ) -> Result<(), sqlx::Error> {
        // Without a cursor (start, error, a pause past half the retention),
        // what happened before is unknown: take a snapshot, read nothing
        // older, and have every subscriber re-read.
        let cursor = self.cursor.take().filter(|(_, at)| at.elapsed() < RETENTION / 2);
        let paused =
            cursor.is_none() && self.last_read.is_some_and(|at| at.elapsed() >= RETENTION / 2);
        let (xmax, in_progress) = match cursor.as_ref().filter(|_| watched) {
            Some((since, _)) => (since.xmax, since.in_progress_array()),
            None => (u64::MAX, "{}".to_owned()),
        };
        let read = read_statement(xmax, &in_progress);
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(read)).fetch_all(pool).await?;
        let mut snapshot = None;
        let mut changed = HashSet::new();
        for row in &rows {
            snapshot = snapshot.or(row.try_get::<String, _>(0).ok());
            if let Some(id) =
                row.try_get::<Option<String>, _>(1)?.and_then(|id| Uuid::parse_str(&id).ok())
            {
                changed.insert(id);
            }
        }
        let snapshot: Snapshot = snapshot
            .ok_or_else(|| sqlx::Error::Protocol("no snapshot returned".into()))?
            .parse()
            .map_err(sqlx::Error::Protocol)?;
        if self.lost_track || paused {
            tracing::info!("reading deployment changes from the change log");
            feed.restarted();
            self.lost_track = false;
        }
        if watched && cursor.is_none() {
            feed.send(Change::Resync);
        }
        for id in changed {
            feed.send(Change::Deployment(id));
        }
        feed.mark_live();
        feed.read_done();
        let now = Instant::now();
        self.horizons.push_back((now, snapshot.xmin));
        self.last_read = Some(now);
        // An idle read's snapshot is a subscriber's starting point only if
        // no one subscribed before it was taken (that one's first read may
        // precede the snapshot): then the previous one, taken while no one
        // watched, stays the cursor.
        let arrived = !watched && feed.router().subscriptions() > 0;
        self.cursor = if arrived { cursor } else { Some((snapshot, now)) };
        Ok(())
    }

    /// Deletes the rows of transactions that ended more than the retention
    /// ago: every reader that read since has seen them.
    async fn prune(&mut self, pool: &PgPool) {
        if self.last_prune.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
            return;
        }
        let mut horizon = None;
        while let Some(&(at, xmin)) = self.horizons.front() {
            if at.elapsed() < RETENTION {
                break;
            }
            horizon = Some(xmin);
            self.horizons.pop_front();
        }
        self.last_prune = Some(Instant::now());
        let Some(horizon) = horizon else { return };
        match delete_before(pool, horizon).await {
            Ok(true) => {}
            // Another instance is pruning: what it deletes is gone for
            // every reader alike (see `PRUNE_LOCK`).
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(error = %err, "cannot prune the change log");
                return;
            }
        }
        // The deleted rows' space is reused only once vacuumed: without
        // this (autovacuum off, or behind), the log and the next prune's
        // index scan grow with every prune. SKIP_LOCKED: while another
        // instance vacuums it, this reader does not wait for it.
        let vacuum = format!("VACUUM (SKIP_LOCKED) {LOG}");
        if let Err(err) = sqlx::raw_sql(sqlx::AssertSqlSafe(vacuum)).execute(pool).await {
            tracing::warn!(error = %err, "cannot vacuum the change log");
        }
    }
}

/// The advisory lock an instance holds while it prunes the log. Any
/// instance's horizon is safe for all (every reader that read within half
/// the retention has seen the rows, and one that did not resyncs), so one
/// pruner at a time is enough; the others skip their turn rather than wait
/// on the same rows with their reader's only connection.
pub const PRUNE_LOCK: i64 = 0x6465_706c_6f79_716c; // "deployql"

/// Deletes the rows of transactions before `horizon`, unless another
/// instance is pruning (then `false`).
async fn delete_before(pool: &PgPool, horizon: u64) -> Result<bool, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    let lock = format!("SELECT pg_try_advisory_xact_lock({PRUNE_LOCK})");
    let claimed: bool =
        sqlx::raw_sql(sqlx::AssertSqlSafe(lock)).fetch_one(&mut *transaction).await?.try_get(0)?;
    if claimed {
        let delete = format!("DELETE FROM {LOG} WHERE xid < '{horizon}'::xid8");
        sqlx::raw_sql(sqlx::AssertSqlSafe(delete)).execute(&mut *transaction).await?;
    }
    transaction.commit().await?;
    Ok(claimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_parse_from_postgres_text() {
        assert_eq!(
            "748:753:748,750".parse(),
            Ok(Snapshot { xmin: 748, xmax: 753, in_progress: vec![748, 750] })
        );
        assert_eq!("753:753:".parse(), Ok(Snapshot { xmin: 753, xmax: 753, in_progress: vec![] }));
        assert!("garbage".parse::<Snapshot>().is_err());
        let snapshot = Snapshot { xmin: 1, xmax: 9, in_progress: vec![3, 5] };
        assert_eq!(snapshot.in_progress_array(), "{3,5}");
    }
}
