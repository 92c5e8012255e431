//! SQLite only: the change log of migration 4, for SQLite. Triggers append
//! the deployment's id to `deployql_changes` for every write to the four
//! tables, by anyone (the server, a node agent, a script), in the writer's
//! own transaction; the server reads the rows past the last one it read.
//! SQLite runs one write transaction at a time, so the rows' order is their
//! commit order and a cursor on `seq` misses nothing. `seq` is the rowid
//! (one past the largest), not AUTOINCREMENT, which would write
//! `sqlite_sequence` on every insert too; the pruning keeps the newest row,
//! so a deleted `seq` is never handed out again.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

use crate::{CAPTURED_TABLES, CHANGE_LOG};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// The column naming the deployment a row of `table` belongs to.
fn deployment_column(table: &str) -> &'static str {
    if table == "deployments" { "id" } else { "deployment_id" }
}

const OPERATIONS: [(&str, &str); 3] = [("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            "CREATE TABLE {CHANGE_LOG} (\
               seq INTEGER PRIMARY KEY, \
               deployment_id BLOB NOT NULL, \
               at INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER)))"
        ))
        .await?;
        for table in CAPTURED_TABLES {
            let column = deployment_column(table);
            for (operation, row) in OPERATIONS {
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER {CHANGE_LOG}_{table}_{op} AFTER {operation} ON {table} \
                     BEGIN INSERT INTO {CHANGE_LOG} (deployment_id) VALUES ({row}.{column}); END",
                    op = operation.to_lowercase()
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        for table in CAPTURED_TABLES {
            for (operation, _) in OPERATIONS {
                let op = operation.to_lowercase();
                db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {CHANGE_LOG}_{table}_{op}"))
                    .await?;
            }
        }
        db.execute_unprepared(&format!("DROP TABLE IF EXISTS {CHANGE_LOG}")).await.map(|_| ())
    }
}
