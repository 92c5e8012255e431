//! The database as requests use it, whichever way statements are sent:
//! sea-orm's pool (prepared statements, the default), or a pool of simple
//! queries for transaction poolers (see `simple`). Both are a sea-orm
//! [`ConnectionTrait`], so entity queries and hand-built statements run on
//! either alike.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

use super::{
    replicas::{ReplicaRead, Target},
    shared::{Savepoint, SharedTxn},
    simple::{SimplePool, SimpleTransaction},
};

/// A pool of database connections, cheap to clone.
#[derive(Debug, Clone)]
pub enum Db {
    /// sea-orm's own pool: SQLite, or Postgres with prepared statements.
    Pool(DatabaseConnection),
    /// Postgres through simple queries only (`DB_PREPARED_STATEMENTS=false`).
    Simple(SimplePool),
    /// One read operation's replica (see `replicas`): its queries run there,
    /// or on the primary once one fails; anything else runs on the primary.
    Replica(std::sync::Arc<ReplicaRead>),
    /// One operation's transaction (see `shared`): its statements run in
    /// it, and a transaction begun on it is a savepoint.
    Within(std::sync::Arc<SharedTxn>),
}

impl From<DatabaseConnection> for Db {
    fn from(db: DatabaseConnection) -> Self {
        Self::Pool(db)
    }
}

/// One transaction of a [`Db`].
#[derive(Debug)]
pub enum Txn {
    Pool(DatabaseTransaction),
    Simple(SimpleTransaction),
    Savepoint(Savepoint),
}

impl Db {
    /// A transaction that writes. On SQLite it takes the write lock at
    /// BEGIN, so a concurrent writer waits (busy timeout) instead of
    /// failing on upgrade.
    pub async fn begin_write(&self) -> Result<Txn, DbErr> {
        match self {
            Self::Pool(db) => db
                .begin_with_options(TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..TransactionOptions::default()
                })
                .await
                .map(Txn::Pool),
            Self::Simple(pool) => pool.begin().await.map(Txn::Simple),
            Self::Replica(read) => Box::pin(read.primary().begin_write()).await,
            Self::Within(shared) => shared.savepoint().await.map(Txn::Savepoint),
        }
    }

    /// Which server a read through this handle went to (the primary for a
    /// replica's read that fell back).
    pub fn read_target(&self) -> Target {
        match self {
            Self::Replica(read) if read.on_replica() => Target::Replica,
            _ => Target::Primary,
        }
    }

    /// Checks that a connection answers.
    pub async fn ping(&self) -> Result<(), DbErr> {
        match self {
            Self::Pool(db) => db.ping().await,
            Self::Simple(pool) => pool.execute_unprepared("SELECT 1").await.map(|_| ()),
            Self::Replica(read) => Box::pin(read.primary().ping()).await,
            Self::Within(shared) => shared.execute_unprepared("SELECT 1").await.map(|_| ()),
        }
    }

    /// Closes every connection.
    pub async fn close(self) {
        match self {
            Self::Pool(db) => drop(db.close().await),
            Self::Simple(pool) => pool.pool.close().await,
            // The pools are their owners' to close.
            Self::Replica(_) | Self::Within(_) => {}
        }
    }

    /// Connections in use, idle, and at most.
    pub fn pool_connections(&self) -> (u32, u32, u32) {
        fn counts<D: sea_orm::sqlx::Database>(pool: &sea_orm::sqlx::Pool<D>) -> (u32, u32, u32) {
            let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
            (pool.size().saturating_sub(idle), idle, pool.options().get_max_connections())
        }
        match self {
            Self::Pool(db) if db.get_database_backend() == DbBackend::Postgres => {
                counts(db.get_postgres_connection_pool())
            }
            Self::Pool(db) => counts(db.get_sqlite_connection_pool()),
            Self::Simple(pool) => counts(&pool.pool),
            Self::Replica(read) => read.primary().pool_connections(),
            Self::Within(_) => (1, 0, 1),
        }
    }

    /// Calls `on_statement` for every statement run from now on.
    pub fn on_statement(&mut self, on_statement: impl Fn() + Send + Sync + 'static) {
        match self {
            Self::Pool(db) => db.set_metric_callback(move |_| on_statement()),
            Self::Simple(pool) => pool.on_statement = Some(std::sync::Arc::new(on_statement)),
            // Each pool counts its own statements.
            Self::Replica(_) | Self::Within(_) => {}
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            Self::Pool(db) => db.get_database_backend(),
            Self::Simple(_) | Self::Replica(_) => DbBackend::Postgres,
            Self::Within(shared) => shared.get_database_backend(),
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Self::Pool(db) => db.execute_raw(stmt).await,
            Self::Simple(pool) => pool.execute(&stmt).await,
            Self::Replica(read) => read.primary().execute_raw(stmt).await,
            Self::Within(shared) => shared.execute_raw(stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            Self::Pool(db) => db.execute_unprepared(sql).await,
            Self::Simple(pool) => pool.execute_unprepared(sql).await,
            Self::Replica(read) => read.primary().execute_unprepared(sql).await,
            Self::Within(shared) => shared.execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Self::Pool(db) => db.query_one_raw(stmt).await,
            Self::Simple(pool) => Ok(pool.query_all(&stmt).await?.into_iter().next()),
            Self::Replica(read) => Ok(read.query_all(stmt).await?.into_iter().next()),
            Self::Within(shared) => shared.query_one_raw(stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Self::Pool(db) => db.query_all_raw(stmt).await,
            Self::Simple(pool) => pool.query_all(&stmt).await,
            Self::Replica(read) => read.query_all(stmt).await,
            Self::Within(shared) => shared.query_all_raw(stmt).await,
        }
    }
}

impl Txn {
    pub async fn commit(self) -> Result<(), DbErr> {
        match self {
            Self::Pool(txn) => txn.commit().await,
            Self::Simple(txn) => txn.commit().await,
            Self::Savepoint(savepoint) => savepoint.commit().await,
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Txn {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            Self::Pool(txn) => txn.get_database_backend(),
            Self::Simple(_) => DbBackend::Postgres,
            Self::Savepoint(savepoint) => savepoint.shared().get_database_backend(),
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Self::Pool(txn) => txn.execute_raw(stmt).await,
            Self::Simple(txn) => txn.execute(&stmt).await,
            Self::Savepoint(savepoint) => savepoint.shared().execute_raw(stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            Self::Pool(txn) => txn.execute_unprepared(sql).await,
            Self::Simple(txn) => txn.execute_unprepared(sql).await,
            Self::Savepoint(savepoint) => savepoint.shared().execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Self::Pool(txn) => txn.query_one_raw(stmt).await,
            Self::Simple(txn) => Ok(txn.query_all(&stmt).await?.into_iter().next()),
            Self::Savepoint(savepoint) => savepoint.shared().query_one_raw(stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Self::Pool(txn) => txn.query_all_raw(stmt).await,
            Self::Simple(txn) => txn.query_all(&stmt).await,
            Self::Savepoint(savepoint) => savepoint.shared().query_all_raw(stmt).await,
        }
    }
}
