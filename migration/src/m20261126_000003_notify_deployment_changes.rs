//! Postgres only: every change to a deployment, its replicas, resources or
//! status history sends `pg_notify('deployql_deployment_changed', <deployment id>)`,
//! whoever the writer is (a deployql instance, the scheduler, psql). Each
//! deployql instance LISTENs and refreshes its subscribers.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const TABLES: [&str; 4] =
    ["deployments", "deployment_replicas", "deployment_resources", "deployment_status_history"];

/// The trigger function; `{channel}` is [`crate::CHANGE_CHANNEL`].
const FUNCTION: &str = r"
CREATE OR REPLACE FUNCTION deployql_notify_deployment_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed record;
    deployment uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    IF TG_TABLE_NAME = 'deployments' THEN
        deployment := changed.id;
    ELSE
        deployment := changed.deployment_id;
    END IF;
    PERFORM pg_notify('{channel}', deployment::text);
    RETURN NULL;
END $$";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(&FUNCTION.replace("{channel}", crate::CHANGE_CHANNEL)).await?;
        for table in TABLES {
            db.execute_unprepared(&format!(
                "CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION deployql_notify_deployment_changed()"
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
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {table}_notify ON {table}"))
                .await?;
        }
        db.execute_unprepared("DROP FUNCTION IF EXISTS deployql_notify_deployment_changed()")
            .await?;
        Ok(())
    }
}
