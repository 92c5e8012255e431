//! Postgres only: one capture trigger per table, for every write, without a
//! `WHEN (OLD.* IS DISTINCT FROM NEW.*)` condition on updates. Comparing the
//! old and new rows cost each writing transaction more than the log insert
//! it saved for the rare UPDATE that changes nothing (`bench/writes`,
//! pgbench alone: 0.86× of no trigger with the condition, 0.90× without;
//! BENCHMARKS.md). An unchanged row now appends a change like any other;
//! its subscribers receive nothing, since a subscription sends only answers
//! that differ from its last.
//!
//! Down restores migration 4's pair of triggers.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

use crate::CAPTURED_TABLES;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for table in CAPTURED_TABLES {
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {table}_capture ON {table}"))
                .await?;
            db.execute_unprepared(&format!(
                "DROP TRIGGER IF EXISTS {table}_capture_update ON {table}"
            ))
            .await?;
            db.execute_unprepared(&format!(
                "CREATE TRIGGER {table}_capture AFTER INSERT OR UPDATE OR DELETE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION deployql_capture_change()"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for table in CAPTURED_TABLES {
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {table}_capture ON {table}"))
                .await?;
            db.execute_unprepared(&format!(
                "CREATE TRIGGER {table}_capture AFTER INSERT OR DELETE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION deployql_capture_change()"
            ))
            .await?;
            db.execute_unprepared(&format!(
                "CREATE TRIGGER {table}_capture_update AFTER UPDATE ON {table} \
                 FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) \
                 EXECUTE FUNCTION deployql_capture_change()"
            ))
            .await?;
        }
        Ok(())
    }
}
