//! The documents clients registered with automatic persisted queries
//! (Apollo's `extensions.persistedQuery`), shared by every instance so a
//! hash registered on one is answered on all. Bounded by the server, which
//! drops the oldest registrations first.

use sea_orm_migration::{prelude::*, schema::*};

use crate::PERSISTED_QUERIES;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Alias::new(PERSISTED_QUERIES.table);
        manager
            .create_table(
                Table::create()
                    .table(table.clone())
                    .col(string_len(Alias::new("hash"), 64).primary_key())
                    .col(text(Alias::new("document")))
                    .col(timestamp_with_time_zone(Alias::new("registered_at")))
                    .to_owned(),
            )
            .await?;
        // Eviction reads the oldest registrations first.
        manager
            .create_index(
                Index::create()
                    .name(PERSISTED_QUERIES.by_age)
                    .table(table)
                    .col(Alias::new("registered_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new(PERSISTED_QUERIES.table)).to_owned())
            .await
    }
}
