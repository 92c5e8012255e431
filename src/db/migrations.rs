//! Migrating a database that several processes start on at once, and one
//! that a different release migrated.
//!
//! Processes take turns: on SQLite a lock file beside the database (see
//! `sqlite_file`), on Postgres an advisory lock held by a transaction of
//! its own (`pg_advisory_xact_lock`), which a transaction pooler keeps for
//! as long as the transaction lasts, unlike a session's lock. Whoever comes
//! second waits for the first to commit, then finds nothing left to apply.

use std::collections::HashSet;

use migration::{Migrator, MigratorTrait, SchemaManager};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};

use super::{Access, sqlite_file};

/// The advisory lock key of migrations on Postgres: "deployql" in ASCII,
/// so that an operator finds it in `pg_locks` (`objid` 1870229868, the
/// lower half).
pub const MIGRATION_LOCK_KEY: i64 = 0x6465_706c_6f79_716c;

/// This process's turn to migrate, until dropped.
#[derive(Debug)]
pub enum MigrationTurn {
    /// The lock file of a SQLite database.
    File(std::fs::File),
    /// The transaction holding the advisory lock, on a pool of its own (a
    /// connection that the migrations themselves do not need).
    Postgres(DatabaseTransaction, DatabaseConnection),
    /// An in-memory SQLite database: nobody else sees it.
    Alone,
}

impl MigrationTurn {
    /// Waits for this process's turn to migrate the database at `url`.
    pub async fn take(url: &str) -> Result<Self, String> {
        if !url.starts_with("postgres") {
            return Ok(sqlite_file::migrating(url).await?.map_or(Self::Alone, Self::File));
        }
        let cannot = |err: DbErr| format!("cannot take the migration lock: {err}");
        let pool = super::open(url, 1, None, Access::ReadWrite, None).await.map_err(cannot)?;
        let turn = pool.begin().await.map_err(cannot)?;
        let lock = format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})");
        turn.execute_unprepared(&lock).await.map_err(cannot)?;
        Ok(Self::Postgres(turn, pool))
    }

    /// Ends the turn at once (dropping it ends it too, once the lock's
    /// connection closes).
    pub async fn end(self) {
        if let Self::Postgres(turn, pool) = self {
            turn.commit().await.ok();
            pool.close().await.ok();
        }
    }
}

/// The migrations this build knows, against those the database applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationState {
    /// Known here and not applied yet, oldest first.
    pub pending: Vec<String>,
    /// Applied, and unknown to this build: a newer release migrated it.
    pub unknown: Vec<String>,
}

/// Reads what the database applied without writing anything (asking the
/// migrator would first create its table).
pub async fn migration_state(db: &DatabaseConnection) -> Result<MigrationState, DbErr> {
    let known: Vec<String> =
        Migrator::migrations().iter().map(|migration| migration.name().to_owned()).collect();
    if !SchemaManager::new(db).has_table("seaql_migrations").await? {
        return Ok(MigrationState { pending: known, unknown: Vec::new() });
    }
    let backend = db.get_database_backend();
    let statement =
        sea_orm::Statement::from_string(backend, "SELECT version FROM seaql_migrations");
    let applied = db
        .query_all_raw(statement)
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "version"))
        .collect::<Result<HashSet<_>, _>>()?;
    let known_set: HashSet<&String> = known.iter().collect();
    let mut unknown: Vec<String> =
        applied.iter().filter(|version| !known_set.contains(version)).cloned().collect();
    unknown.sort();
    let pending = known.into_iter().filter(|version| !applied.contains(version)).collect();
    Ok(MigrationState { pending, unknown })
}
