//! A user's live deployments have distinct names. The partial unique index
//! makes two concurrent creates of one name collide in the database itself.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

use crate::LIVE_NAME_PER_USER as INDEX;

#[derive(DeriveIden)]
enum Deployments {
    Table,
    DeletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut index = Index::create();
        index.name(INDEX.name).table(Deployments::Table).unique();
        for column in INDEX.columns {
            index.col(Alias::new(*column));
        }
        index.and_where(Expr::col(Deployments::DeletedAt).is_null());
        manager.create_index(index).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX.name).table(Deployments::Table).to_owned())
            .await
    }
}
