//! A user's live deployments have distinct names. The partial unique index
//! makes two concurrent creates of one name collide in the database itself.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Deployments {
    Table,
    UserId,
    Name,
    DeletedAt,
}

const INDEX: &str = "deployments_live_name_per_user";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Deployments::Table)
                    .col(Deployments::UserId)
                    .col(Deployments::Name)
                    .unique()
                    .and_where(Expr::col(Deployments::DeletedAt).is_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(Deployments::Table).to_owned()).await
    }
}
