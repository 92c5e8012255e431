//! Connecting to the database, migrating it, and counting the statements run.

mod handle;
mod migrations;
mod replicas;
mod shared;
mod simple;
mod sqlite_file;

pub use self::handle::{Db, Txn};
pub use self::migrations::{
    MIGRATION_LOCK_KEY, MigrationState, MigrationTurn, migrate_in_turn, migration_state,
};
pub use self::replicas::{Reads, Target};
pub use self::shared::SharedTxn;
pub use self::sqlite_file::{FileWatch, ServingLock, check_writable, for_reading};

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
    sqlx::{
        pool::PoolConnectionMetadata,
        sqlite::{SqliteJournalMode, SqliteSynchronous},
    },
};

/// Whether a connection may go back to the pool (or out of it): only when
/// no transaction is open on it. A transaction is still open after an
/// error that left its state uncertain: SQLite rolls a transaction back by
/// itself on SQLITE_FULL or SQLITE_IOERR, the ROLLBACK that follows fails,
/// and the driver still counts the transaction open, so every later
/// "transaction" on that connection would be a savepoint inside one that
/// never commits, each answered ok and all lost. Such a connection is
/// closed instead; a fresh one takes its place. So is a SQLite connection
/// opened before the file was last seen read-only (see [`FileWatch`]).
fn settled<C: sea_orm::sqlx::Connection>(
    connection: &C,
    metadata: &PoolConnectionMetadata,
    file: Option<&FileWatch>,
) -> bool {
    if connection.is_in_transaction() {
        tracing::debug!("closing a database connection left inside a transaction by an error");
        return false;
    }
    !file.is_some_and(|file| file.opened_before_mark(metadata.age))
}

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
    pub fn install(&self, db: &mut Db) {
        let counter = self.clone();
        db.on_statement(move || counter.record());
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
    open(url, max_connections, None, Access::ReadWrite, None, Eager).await
}

/// Opens the pool requests use: every wait on the database is bounded.
/// Without `prepared_statements`, Postgres gets simple queries only (see
/// `simple`), for a transaction pooler.
pub async fn connect_for_requests(
    url: &str,
    max_connections: u32,
    timeouts: DbTimeouts,
    access: Access,
    file: Option<Arc<FileWatch>>,
    prepared_statements: bool,
) -> Result<Db, DbErr> {
    if !prepared_statements && url.starts_with("postgres") {
        return open_simple(url, max_connections, timeouts, Eager).await;
    }
    open(url, max_connections, Some(timeouts), access, file, Eager).await.map(Db::Pool)
}

/// Opens a replica's pool for requests (`max_connections`) and a pool of
/// one connection for its position poll, without waiting for either: a
/// replica that is down at start serves nothing until it answers, and the
/// server starts all the same. Its connections open in the background.
pub async fn connect_replica(
    url: &str,
    max_connections: u32,
    timeouts: DbTimeouts,
    prepared_statements: bool,
) -> Result<(Db, Db), DbErr> {
    let connect = async |max| {
        if prepared_statements {
            open(url, max, Some(timeouts), Access::ReadWrite, None, Lazy).await.map(Db::Pool)
        } else {
            open_simple(url, max, timeouts, Lazy).await
        }
    };
    let (requests, poll) = (connect(max_connections).await?, connect(1).await?);
    let warming = requests.clone();
    tokio::spawn(async move { warm(&warming, max_connections).await });
    Ok((requests, poll))
}

/// Whether opening a pool waits for its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// Connects and warms the pool before returning: a database that is
    /// not there fails at start.
    Eager,
    /// Returns at once; connections open as they are needed.
    Lazy,
}
use Opening::{Eager, Lazy};

/// A Postgres pool of simple queries, kept full like sea-orm's (see `open`).
async fn open_simple(
    url: &str,
    max_connections: u32,
    timeouts: DbTimeouts,
    opening: Opening,
) -> Result<Db, DbErr> {
    use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let options: PgConnectOptions =
        url.parse().map_err(|err| DbErr::Conn(sea_orm::RuntimeErr::Internal(format!("{err}"))))?;
    let pool_options = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(max_connections)
        .acquire_timeout(timeouts.acquire)
        .acquire_time_level(log::LevelFilter::Debug)
        .test_before_acquire(false)
        .after_release(|connection, metadata| {
            Box::pin(std::future::ready(Ok(settled(connection, &metadata, None))))
        })
        .before_acquire(|connection, metadata| {
            Box::pin(async move {
                if !settled(connection, &metadata, None) {
                    return Ok(false);
                }
                // Only a connection idle for a while is checked (a round trip).
                if metadata.idle_for < IDLE_CHECK {
                    return Ok(true);
                }
                Ok(sea_orm::sqlx::Connection::ping(connection).await.is_ok())
            })
        });
    let pool = match opening {
        Eager => pool_options
            .connect_with(options)
            .await
            .map_err(|err| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(Arc::new(err))))?,
        Lazy => pool_options.connect_lazy_with(options),
    };
    let db = Db::Simple(simple::SimplePool::new(pool, Some(timeouts.statement)));
    if opening == Eager {
        warm(&db, max_connections).await;
    }
    Ok(db)
}

/// Whether a Postgres `url` reaches the database through a transaction
/// pooler: two connections prepare the same statement (sqlx names each
/// connection's first one alike), and behind such a pooler the second finds
/// the first's on the server connection they share, or the first loses its
/// own to another. Directly, each has a server connection of its own and
/// both succeed. `Err` when it cannot be told (the database unreachable).
pub async fn behind_transaction_pooler(url: &str) -> Result<bool, String> {
    use sea_orm::sqlx::{Connection, Executor, PgConnection};
    let pooled = |err: &sea_orm::sqlx::Error| {
        err.as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| code == "42P05" || code == "26000")
    };
    let mut first = PgConnection::connect(url).await.map_err(|err| err.to_string())?;
    let mut second = PgConnection::connect(url).await.map_err(|err| err.to_string())?;
    let mut found = false;
    for connection in [&mut first, &mut second] {
        match sea_orm::sqlx::query("SELECT 1").execute(&mut *connection).await {
            Ok(_) => {}
            Err(err) if pooled(&err) => found = true,
            Err(err) => return Err(err.to_string()),
        }
    }
    // What this check prepared goes, wherever the pooler put it.
    let _ = first.execute("DEALLOCATE ALL").await;
    let _ = second.execute("DEALLOCATE ALL").await;
    let _ = tokio::join!(first.close(), second.close());
    Ok(found)
}

/// How long a pooled connection may sit idle before it is checked on checkout.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// Whether the server writes to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    /// `READ_ONLY`: a SQLite file is opened read-only, so neither this
    /// process nor a bug in it can write to it.
    ReadOnly,
}

async fn open(
    url: &str,
    max_connections: u32,
    timeouts: Option<DbTimeouts>,
    access: Access,
    file: Option<Arc<FileWatch>>,
    opening: Opening,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url);
    options.connect_lazy(opening == Lazy);
    let acquire = timeouts.map_or(Duration::from_secs(5), |t| t.acquire);
    // SQLite's busy timeout is how long a writer waits for the lock.
    let busy = timeouts.map_or(Duration::from_secs(10), |t| t.statement);
    options
        .max_connections(max_connections)
        // A request pool keeps every connection open, and replaces one that
        // closes in the background: a connection opened while the database is
        // slow spends round trips on its handshakes that no request waits for.
        .min_connections(if timeouts.is_some() { max_connections } else { 1 })
        .connect_timeout(acquire)
        .acquire_timeout(acquire)
        // A ping before every checkout is a round trip per request; only a
        // connection idle for a while is checked.
        .test_before_acquire_if_idle_for(IDLE_CHECK)
        .sqlx_logging(false)
        // Every acquire's wait as a debug event: `telemetry` turns them into
        // the pool's acquire-time histogram (nothing is logged by default).
        .map_sqlx_postgres_pool_opts(|pool| {
            pool.acquire_time_level(log::LevelFilter::Debug)
                .after_release(|connection, metadata| {
                    Box::pin(std::future::ready(Ok(settled(connection, &metadata, None))))
                })
                .before_acquire(|connection, metadata| {
                    Box::pin(std::future::ready(Ok(settled(connection, &metadata, None))))
                })
        })
        .map_sqlx_sqlite_pool_opts(move |pool| {
            let (released, acquired) = (file.clone(), file.clone());
            pool.acquire_time_level(log::LevelFilter::Debug)
                .after_release(move |connection, metadata| {
                    let keep = settled(connection, &metadata, released.as_deref());
                    Box::pin(std::future::ready(Ok(keep)))
                })
                .before_acquire(move |connection, metadata| {
                    let keep = settled(connection, &metadata, acquired.as_deref());
                    Box::pin(std::future::ready(Ok(keep)))
                })
        })
        // WAL lets readers proceed while a writer commits; the busy timeout makes
        // concurrent writers wait for the lock instead of failing at once. A
        // read-only connection leaves the journal mode as the file has it.
        .map_sqlx_sqlite_opts(move |opts| {
            let opts = match access {
                Access::ReadWrite => opts.journal_mode(SqliteJournalMode::Wal),
                Access::ReadOnly => opts.read_only(true).create_if_missing(false),
            };
            opts.synchronous(SqliteSynchronous::Normal).busy_timeout(busy).foreign_keys(true)
        });
    if let Some(timeouts) = timeouts {
        let millis = timeouts.statement.as_millis().to_string();
        options.map_sqlx_postgres_opts(move |opts| {
            opts.options([("statement_timeout", millis.as_str())])
        });
    }
    let db = Database::connect(options).await?;
    if timeouts.is_some() && opening == Eager {
        warm(&Db::Pool(db.clone()), max_connections).await;
    }
    Ok(db)
}

/// Opens the pool's connections before the first request needs them
/// (afterwards the pool replaces those that close by itself).
async fn warm(db: &Db, connections: u32) {
    use futures_util::future::join_all;
    let count = usize::try_from(connections).unwrap_or(1);
    match db {
        Db::Pool(db) if db.get_database_backend() == sea_orm::DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            drop(join_all((0..count).map(|_| pool.acquire())).await);
        }
        Db::Pool(db) => {
            let pool = db.get_sqlite_connection_pool();
            drop(join_all((0..count).map(|_| pool.acquire())).await);
        }
        Db::Simple(pool) => {
            drop(join_all((0..count).map(|_| pool.pool.acquire())).await);
        }
        Db::Replica(_) | Db::Within(_) => {}
    }
}

/// Writes one row (migration 6's probe table): `Ok` when the database
/// takes writes now.
pub async fn probe_write(db: &impl sea_orm::ConnectionTrait) -> Result<(), DbErr> {
    let (table, counter) = (migration::WRITE_PROBE.table, migration::WRITE_PROBE.counter);
    let update = format!("UPDATE {table} SET {counter} = {counter} + 1 WHERE id = 1");
    db.execute_unprepared(&update).await.map(|_| ())
}

/// What the database at `url` applied, read without writing anything
/// (through a read-only connection on SQLite).
pub async fn migration_state_at(url: &str) -> Result<MigrationState, DbErr> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let db = open(url, 1, None, Access::ReadOnly, None, Eager).await?;
    let state = if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        // In one transaction, its prepared statements deallocated: a
        // transaction pooler's next client finds none (see `migrations`).
        let txn = db.begin().await?;
        let state = migration_state(&txn).await;
        txn.execute_unprepared("DEALLOCATE ALL").await?;
        txn.commit().await?;
        state
    } else {
        migration_state(&db).await
    };
    db.close().await.ok();
    state
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}
