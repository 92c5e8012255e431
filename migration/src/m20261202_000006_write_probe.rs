//! A one-row table the server writes to learn whether the database takes
//! writes again after a storage fault (a full disk, a read-only file): a
//! real write, so it fails exactly when a mutation would.

use sea_orm_migration::prelude::*;

use crate::WRITE_PROBE;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Alias::new(WRITE_PROBE.table);
        manager
            .create_table(
                Table::create()
                    .table(table.clone())
                    .col(ColumnDef::new(Alias::new("id")).integer().not_null().primary_key())
                    .col(ColumnDef::new(Alias::new(WRITE_PROBE.counter)).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        let row = Query::insert()
            .into_table(table)
            .columns([Alias::new("id"), Alias::new(WRITE_PROBE.counter)])
            .values_panic([1.into(), 0.into()])
            .to_owned();
        manager.exec_stmt(row).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Alias::new(WRITE_PROBE.table)).to_owned()).await
    }
}
