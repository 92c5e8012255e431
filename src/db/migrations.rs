//! Migrating a database that several processes start on at once, and one
//! that a different release migrated.
//!
//! Processes take turns: on SQLite a lock file beside the database (see
//! `sqlite_file`), on Postgres an advisory lock held by the transaction
//! that reads the applied migrations and applies the rest
//! (`pg_advisory_xact_lock`): whoever comes second waits for the first to
//! commit, then finds nothing left to apply. A transaction's lock is one a
//! transaction pooler keeps, and so are the statements the migrator
//! prepares: the whole run stays on one server connection, and those
//! statements are deallocated before it commits, leaving nothing behind
//! for the pooler's next client.

use std::collections::HashSet;

use migration::{Migrator, MigratorTrait, SchemaManager};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, IntoDatabaseExecutor, TransactionTrait,
};

use super::sqlite_file;

/// The advisory lock key of migrations on Postgres: "dqlmigra" in ASCII,
/// so that an operator finds it in `pg_locks` (`objid` 1768387169, the
/// lower half). The change log's pruner holds "deployql".
pub const MIGRATION_LOCK_KEY: i64 = 0x6471_6c6d_6967_7261;

/// A SQLite file's turn to migrate, until dropped (on Postgres the turn is
/// the migration's own transaction: see [`migrate_in_turn`]).
#[derive(Debug)]
pub struct MigrationTurn {
    _lock: Option<std::fs::File>,
}

impl MigrationTurn {
    /// Waits for this process's turn to migrate the database at `url`.
    pub async fn take(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres") {
            return Ok(Self { _lock: None });
        }
        sqlite_file::migrating(url).await.map(|lock| Self { _lock: lock })
    }
}

/// Applies this build's pending migrations to `db` when `decide`, shown
/// what the database applied, says so; in this process's turn.
pub async fn migrate_in_turn<E: From<DbErr>>(
    db: &DatabaseConnection,
    decide: impl FnOnce(&MigrationState) -> Result<bool, E>,
) -> Result<(), E> {
    if db.get_database_backend() != DbBackend::Postgres {
        let state = migration_state(db).await?;
        if decide(&state)? && !state.pending.is_empty() {
            Migrator::up(db, None).await?;
        }
        return Ok(());
    }
    let turn = db.begin().await?;
    turn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")).await?;
    let state = migration_state(&turn).await?;
    if decide(&state)? && !state.pending.is_empty() {
        Migrator::up(&turn, None).await?;
    }
    turn.execute_unprepared("DEALLOCATE ALL").await?;
    turn.commit().await?;
    Ok(())
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
pub async fn migration_state<'c>(
    db: impl IntoDatabaseExecutor<'c>,
) -> Result<MigrationState, DbErr> {
    let manager = SchemaManager::new(db);
    let db = manager.get_connection();
    let known: Vec<String> =
        Migrator::migrations().iter().map(|migration| migration.name().to_owned()).collect();
    if !manager.has_table("seaql_migrations").await? {
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
