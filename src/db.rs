//! Connecting to the database, migrating it, and counting the statements run.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::telemetry::{Metrics, operation};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DbErr,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

/// Counts every SQL statement a connection runs, in all (tests and the
/// benchmark read it to prove a request's statement budget) and in
/// `metrics` by entry point and per operation (see `telemetry::operation`).
#[derive(Debug, Clone, Default)]
pub struct StatementCounter {
    total: Arc<AtomicU64>,
    metrics: Metrics,
}

impl StatementCounter {
    /// A counter reporting in `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { total: Arc::default(), metrics }
    }

    pub fn get(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The metrics the statements are reported in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn record(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.metrics.statement(operation::statement_run());
    }

    /// Counts every statement `db` runs from now on.
    pub fn install(&self, db: &mut DatabaseConnection) {
        let counter = self.clone();
        db.set_metric_callback(move |_| counter.record());
    }
}

/// How long the database may take before a request fails with
/// `SERVICE_UNAVAILABLE` instead of waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbTimeouts {
    /// Waiting for a pooled connection (or a new one).
    pub acquire: Duration,
    /// One statement: Postgres' `statement_timeout`, SQLite's busy timeout.
    pub statement: Duration,
}

impl Default for DbTimeouts {
    fn default() -> Self {
        Self { acquire: Duration::from_secs(2), statement: Duration::from_secs(5) }
    }
}

/// Opens a pool on `url` (SQLite or Postgres) for migrations and tools: no
/// statement timeout, since a migration may rightly take long.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    open(url, max_connections, None).await
}

/// Opens the pool requests use: every wait on the database is bounded.
pub async fn connect_for_requests(
    url: &str,
    max_connections: u32,
    timeouts: DbTimeouts,
) -> Result<DatabaseConnection, DbErr> {
    open(url, max_connections, Some(timeouts)).await
}

async fn open(
    url: &str,
    max_connections: u32,
    timeouts: Option<DbTimeouts>,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url);
    let acquire = timeouts.map_or(Duration::from_secs(5), |t| t.acquire);
    // SQLite's busy timeout is how long a writer waits for the lock.
    let busy = timeouts.map_or(Duration::from_secs(10), |t| t.statement);
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(acquire)
        .acquire_timeout(acquire)
        // A ping before every checkout is a round trip per request; only a
        // connection idle for a while is checked.
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .sqlx_logging(false)
        // Every acquire's wait as a debug event: `telemetry` turns them into
        // the pool's acquire-time histogram (nothing is logged by default).
        .map_sqlx_postgres_pool_opts(|pool| pool.acquire_time_level(log::LevelFilter::Debug))
        .map_sqlx_sqlite_pool_opts(|pool| pool.acquire_time_level(log::LevelFilter::Debug))
        // WAL lets readers proceed while a writer commits; the busy timeout makes
        // concurrent writers wait for the lock instead of failing at once.
        .map_sqlx_sqlite_opts(move |opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(busy)
                .foreign_keys(true)
        });
    if let Some(timeouts) = timeouts {
        let millis = timeouts.statement.as_millis().to_string();
        options.map_sqlx_postgres_opts(move |opts| {
            opts.options([("statement_timeout", millis.as_str())])
        });
    }
    Database::connect(options).await
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}
