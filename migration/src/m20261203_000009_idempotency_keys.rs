//! The answers of mutations sent with an idempotency key, recorded in the
//! same transaction as the mutation's writes, so a retry with the key
//! replays the answer instead of running again.

use sea_orm_migration::{prelude::*, schema::*};

use crate::IDEMPOTENCY_KEYS;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Alias::new(IDEMPOTENCY_KEYS.table);
        manager
            .create_table(
                Table::create()
                    .table(table.clone())
                    .col(uuid(Alias::new("user_id")))
                    .col(string_len(Alias::new("key"), 255))
                    .col(string_len(Alias::new("fingerprint"), 64))
                    .col(integer(Alias::new("status_code")))
                    .col(text(Alias::new("response")))
                    .col(timestamp_with_time_zone(Alias::new("created_at")))
                    .primary_key(Index::create().col(Alias::new("user_id")).col(Alias::new("key")))
                    .to_owned(),
            )
            .await?;
        // Pruning reads the oldest first, overall and per user.
        manager
            .create_index(
                Index::create()
                    .name(IDEMPOTENCY_KEYS.by_age)
                    .table(table.clone())
                    .col(Alias::new("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(IDEMPOTENCY_KEYS.by_user_and_age)
                    .table(table)
                    .col(Alias::new("user_id"))
                    .col(Alias::new("created_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Alias::new(IDEMPOTENCY_KEYS.table)).to_owned()).await
    }
}
