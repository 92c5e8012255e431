//! Webhooks: the endpoints users register, the last state of each
//! deployment the events were computed from (so each transition is told
//! once, whichever instance sees it and across restarts), and the outbox
//! of deliveries, written in the same transaction as the state they tell.

use sea_orm_migration::{prelude::*, schema::*};

use crate::WEBHOOKS;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let endpoints = Alias::new(WEBHOOKS.endpoints);
        manager
            .create_table(
                Table::create()
                    .table(endpoints.clone())
                    .col(uuid(Alias::new("id")).primary_key())
                    .col(uuid(Alias::new("user_id")))
                    .col(text(Alias::new("url")))
                    .col(text(Alias::new("events")))
                    .col(text_null(Alias::new("deployment_ids")))
                    .col(boolean(Alias::new("enabled")))
                    .col(text_null(Alias::new("disabled_reason")))
                    .col(text(Alias::new("secret")))
                    .col(text_null(Alias::new("previous_secret")))
                    .col(timestamp_with_time_zone_null(Alias::new("previous_secret_until")))
                    .col(timestamp_with_time_zone_null(Alias::new("failing_since")))
                    .col(timestamp_with_time_zone(Alias::new("created_at")))
                    .col(timestamp_with_time_zone(Alias::new("updated_at")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(WEBHOOKS.endpoints_by_user)
                    .table(endpoints)
                    .col(Alias::new("user_id"))
                    .to_owned(),
            )
            .await?;

        let states = Alias::new(WEBHOOKS.states);
        manager
            .create_table(
                Table::create()
                    .table(states.clone())
                    .col(uuid(Alias::new("deployment_id")).primary_key())
                    .col(uuid(Alias::new("user_id")))
                    .col(big_integer(Alias::new("sequence")))
                    .col(text_null(Alias::new("snapshot")))
                    .col(boolean(Alias::new("deleted")))
                    .col(timestamp_with_time_zone(Alias::new("updated_at")))
                    .to_owned(),
            )
            .await?;
        // Deployments that exist before webhooks do are described without
        // an event the first time they are seen (a null snapshot).
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            "INSERT INTO {states} (deployment_id, user_id, sequence, snapshot, deleted, updated_at) \
             SELECT id, user_id, 0, NULL, deleted_at IS NOT NULL, updated_at FROM deployments",
            states = WEBHOOKS.states
        ))
        .await?;

        let deliveries = Alias::new(WEBHOOKS.deliveries);
        manager
            .create_table(
                Table::create()
                    .table(deliveries.clone())
                    .col(uuid(Alias::new("id")).primary_key())
                    .col(uuid(Alias::new("endpoint_id")))
                    .col(uuid(Alias::new("user_id")))
                    .col(string_len(Alias::new("message_id"), 64))
                    .col(string_len(Alias::new("event_type"), 64))
                    .col(text(Alias::new("payload")))
                    .col(string_len(Alias::new("state"), 16))
                    .col(integer(Alias::new("attempts")))
                    .col(timestamp_with_time_zone(Alias::new("next_attempt_at")))
                    .col(uuid_null(Alias::new("lease")))
                    .col(timestamp_with_time_zone_null(Alias::new("lease_until")))
                    .col(integer_null(Alias::new("last_status_code")))
                    .col(text_null(Alias::new("last_error")))
                    .col(timestamp_with_time_zone(Alias::new("created_at")))
                    .to_owned(),
            )
            .await?;
        // The deliverer reads the due ones; an endpoint's list newest first.
        manager
            .create_index(
                Index::create()
                    .name(WEBHOOKS.deliveries_due)
                    .table(deliveries.clone())
                    .col(Alias::new("state"))
                    .col(Alias::new("next_attempt_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(WEBHOOKS.deliveries_by_endpoint)
                    .table(deliveries)
                    .col(Alias::new("endpoint_id"))
                    .col(Alias::new("created_at"))
                    .col(Alias::new("id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [WEBHOOKS.deliveries, WEBHOOKS.states, WEBHOOKS.endpoints] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}
