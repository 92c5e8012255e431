//! Postgres only: change capture that does not serialize commits. The
//! triggers of migration 3 called `pg_notify`, and Postgres serializes every
//! committing transaction that notified on one queue lock: writers lost
//! 60 % of their throughput (BENCHMARKS.md). Instead, each change appends
//! the deployment's id and the writing transaction's id to an UNLOGGED
//! table: no WAL, no lock held until commit. Its one index, on the
//! transaction id, lets each deployql instance read only what is new, by
//! snapshot (see `live::capture` in the server); without it, reads scanning
//! the log cost writers more than the index does (BENCHMARKS.md). An
//! UPDATE that changes nothing (a heartbeat rewriting the same status)
//! appends nothing.
//!
//! Down restores the notify triggers.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

use crate::CAPTURED_TABLES as TABLES;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// The log; `{log}` is [`crate::CHANGE_LOG`]. UNLOGGED: a crash empties it,
/// and the readers then refresh everything they watch.
const LOG: &str = "
CREATE UNLOGGED TABLE IF NOT EXISTS {log} (
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    deployment_id uuid NOT NULL
)";

/// Readers ask for the transactions their last snapshot had not seen.
const INDEX: &str = "CREATE INDEX IF NOT EXISTS {log}_xid ON {log} (xid)";

const FUNCTION: &str = r"
CREATE OR REPLACE FUNCTION deployql_capture_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'deployments' THEN
        INSERT INTO {log} (deployment_id)
        VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
    ELSE
        INSERT INTO {log} (deployment_id)
        VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.deployment_id ELSE NEW.deployment_id END);
    END IF;
    RETURN NULL;
END $$";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(&LOG.replace("{log}", crate::CHANGE_LOG)).await?;
        db.execute_unprepared(&INDEX.replace("{log}", crate::CHANGE_LOG)).await?;
        db.execute_unprepared(&FUNCTION.replace("{log}", crate::CHANGE_LOG)).await?;
        for table in TABLES {
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {table}_notify ON {table}"))
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

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for table in TABLES {
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {table}_capture ON {table}"))
                .await?;
            db.execute_unprepared(&format!(
                "DROP TRIGGER IF EXISTS {table}_capture_update ON {table}"
            ))
            .await?;
            db.execute_unprepared(&format!(
                "CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION deployql_notify_deployment_changed()"
            ))
            .await?;
        }
        db.execute_unprepared("DROP FUNCTION IF EXISTS deployql_capture_change()").await?;
        db.execute_unprepared(&format!("DROP TABLE IF EXISTS {}", crate::CHANGE_LOG)).await?;
        Ok(())
    }
}
