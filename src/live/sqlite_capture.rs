//! The SQLite change reader. Triggers append the id of each written
//! deployment to the change log (migration 7), whoever writes: this server,
//! a node agent, a script. Every `LIVE_POLL_INTERVAL` the reader asks
//! SQLite whether anyone committed since (`PRAGMA data_version`, answered
//! from memory) and only then reads the rows past the last one it read: one
//! write transaction runs at a time, so `seq` order is commit order. A gap
//! in `seq` means rows were pruned unread (a long pause): every subscriber
//! then reads again ([`Change::Resync`]), as after an error.

use std::{
    str::FromStr,
    time::{Duration, Instant},
};

use sea_orm::sqlx::{
    self, Row,
    sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions},
};
use uuid::Uuid;

use super::{Change, ChangeFeed};
use crate::db::Access;

const LOG: &str = migration::CHANGE_LOG;
/// Rows older than this are deleted (every reader has long read them).
const RETENTION_SECS: i64 = 30;
const PRUNE_EVERY: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Rows read at most at once; the rest on the next tick.
const BATCH: i64 = 10_000;

/// Reads the change log of the SQLite file at `database_url` into `feed`
/// every `interval`, for as long as the server runs.
pub async fn read_changes(
    database_url: String,
    feed: ChangeFeed,
    interval: Duration,
    access: Access,
) {
    let options = match SqliteConnectOptions::from_str(&database_url) {
        Ok(options) => {
            options.busy_timeout(Duration::from_secs(5)).read_only(access == Access::ReadOnly)
        }
        Err(err) => {
            tracing::error!(error = %err, "live updates disabled: bad DATABASE_URL");
            return;
        }
    };
    let pool = SqlitePoolOptions::new().max_connections(1).connect_lazy_with(options);
    let mut reader = Reader::default();
    let mut backoff = Duration::from_millis(100);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match reader.read(&pool, &feed).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(err) => {
                if reader.cursor.is_some() {
                    tracing::warn!(error = %err, "cannot read the change log; retrying");
                }
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
#[derive(Debug, Default)]
struct Reader {
    /// The last row read; none at start and after an error.
    cursor: Option<i64>,
    /// SQLite's count of commits by others, when last read.
    data_version: Option<i64>,
    last_prune: Option<Instant>,
}

impl Reader {
    async fn read(&mut self, pool: &SqlitePool, feed: &ChangeFeed) -> Result<(), sqlx::Error> {
        let mut connection = pool.acquire().await?;
        // Read to the end: a statement left unfinished keeps its read
        // transaction open, and with it a snapshot in which no other
        // process ever commits (data_version would never move).
        let versions: Vec<i64> =
            sqlx::query_scalar("PRAGMA data_version").fetch_all(&mut *connection).await?;
        let version = versions.first().copied().unwrap_or_default();
        if self.cursor.is_some() && self.data_version == Some(version) {
            return Ok(());
        }
        let Some(cursor) = self.cursor else {
            // Start, or after an error: nothing older is read; subscribers re-read.
            let last: Option<i64> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT MAX(seq) FROM {LOG}")))
                    .fetch_one(&mut *connection)
                    .await?;
            tracing::info!("reading deployment changes from the change log");
            self.cursor = Some(last.unwrap_or(0));
            self.data_version = Some(version);
            feed.restarted();
            feed.send(Change::Resync);
            feed.mark_live();
            feed.read_done();
            return Ok(());
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT seq, deployment_id FROM {LOG} WHERE seq > ? ORDER BY seq LIMIT {BATCH}"
        )))
        .bind(cursor)
        .fetch_all(&mut *connection)
        .await?;
        let mut last = cursor;
        for row in &rows {
            let seq: i64 = row.try_get(0)?;
            if seq != last + 1 {
                // Rows in between were pruned unread.
                feed.restarted();
                feed.send(Change::Resync);
            }
            last = seq;
            let id: Vec<u8> = row.try_get(1)?;
            if let Ok(id) = Uuid::from_slice(&id) {
                feed.send(Change::Deployment(id));
            }
        }
        self.cursor = Some(last);
        // A full batch leaves rows unread: read again on the next tick.
        self.data_version = (rows.len() < BATCH as usize).then_some(version);
        feed.read_done();
        Ok(())
    }

    /// Deletes rows older than the retention, every few seconds.
    async fn prune(&mut self, pool: &SqlitePool) {
        if self.last_prune.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.last_prune = Some(Instant::now());
        // The newest row stays: `seq` is one past the largest rowid, and
        // must never go back to values readers have passed.
        let delete = format!(
            "DELETE FROM {LOG} WHERE at < CAST(strftime('%s', 'now') AS INTEGER) - {RETENTION_SECS} \
             AND seq < (SELECT MAX(seq) FROM {LOG})"
        );
        if let Err(err) = sqlx::query(sqlx::AssertSqlSafe(delete)).execute(pool).await {
            tracing::debug!(error = %err, "cannot prune the change log; next time");
        }
    }
}
