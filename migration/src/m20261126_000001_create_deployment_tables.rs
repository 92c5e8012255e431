//! The four deployment tables and the indexes the read API needs.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Deployments {
    Table,
    Id,
    UserId,
    Name,
    Status,
    TargetReplicas,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum DeploymentReplicas {
    Table,
    Id,
    DeploymentId,
    NodeId,
    Status,
    ContainerId,
    StartedAt,
    StoppedAt,
}

#[derive(DeriveIden)]
enum DeploymentResources {
    Table,
    Id,
    DeploymentId,
    CpuCores,
    MemoryMb,
    GpuUnits,
    StorageGb,
}

#[derive(DeriveIden)]
enum DeploymentStatusHistory {
    Table,
    Id,
    DeploymentId,
    OldStatus,
    NewStatus,
    ChangedAt,
    Reason,
}

fn deployment_fk(
    from_table: impl IntoIden,
    from_column: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from_table, from_column)
        .to(Deployments::Table, Deployments::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Deployments::Table)
                    .col(uuid(Deployments::Id).primary_key())
                    .col(uuid(Deployments::UserId))
                    .col(text(Deployments::Name))
                    .col(text(Deployments::Status))
                    .col(integer(Deployments::TargetReplicas))
                    .col(timestamp_with_time_zone(Deployments::CreatedAt))
                    .col(timestamp_with_time_zone(Deployments::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Deployments::DeletedAt))
                    .to_owned(),
            )
            .await?;
        // The list page: a user's live deployments, newest first.
        manager
            .create_index(
                Index::create()
                    .name("deployments_live_by_user_created")
                    .table(Deployments::Table)
                    .col(Deployments::UserId)
                    .col((Deployments::CreatedAt, IndexOrder::Desc))
                    .col((Deployments::Id, IndexOrder::Desc))
                    .and_where(Expr::col(Deployments::DeletedAt).is_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DeploymentReplicas::Table)
                    .col(uuid(DeploymentReplicas::Id).primary_key())
                    .col(uuid(DeploymentReplicas::DeploymentId))
                    .col(uuid_null(DeploymentReplicas::NodeId))
                    .col(text(DeploymentReplicas::Status))
                    .col(text_null(DeploymentReplicas::ContainerId))
                    .col(timestamp_with_time_zone_null(DeploymentReplicas::StartedAt))
                    .col(timestamp_with_time_zone_null(DeploymentReplicas::StoppedAt))
                    .foreign_key(&mut deployment_fk(
                        DeploymentReplicas::Table,
                        DeploymentReplicas::DeploymentId,
                    ))
                    .to_owned(),
            )
            .await?;
        // Covers both the replica rows and the per-status counts behind `health`.
        manager
            .create_index(
                Index::create()
                    .name("deployment_replicas_by_deployment_status")
                    .table(DeploymentReplicas::Table)
                    .col(DeploymentReplicas::DeploymentId)
                    .col(DeploymentReplicas::Status)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DeploymentResources::Table)
                    .col(uuid(DeploymentResources::Id).primary_key())
                    .col(uuid_uniq(DeploymentResources::DeploymentId))
                    .col(double(DeploymentResources::CpuCores))
                    .col(integer(DeploymentResources::MemoryMb))
                    .col(integer(DeploymentResources::GpuUnits))
                    .col(integer(DeploymentResources::StorageGb))
                    .foreign_key(&mut deployment_fk(
                        DeploymentResources::Table,
                        DeploymentResources::DeploymentId,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DeploymentStatusHistory::Table)
                    .col(uuid(DeploymentStatusHistory::Id).primary_key())
                    .col(uuid(DeploymentStatusHistory::DeploymentId))
                    .col(text_null(DeploymentStatusHistory::OldStatus))
                    .col(text(DeploymentStatusHistory::NewStatus))
                    .col(timestamp_with_time_zone(DeploymentStatusHistory::ChangedAt))
                    .col(text_null(DeploymentStatusHistory::Reason))
                    .foreign_key(&mut deployment_fk(
                        DeploymentStatusHistory::Table,
                        DeploymentStatusHistory::DeploymentId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deployment_status_history_by_deployment_changed")
                    .table(DeploymentStatusHistory::Table)
                    .col(DeploymentStatusHistory::DeploymentId)
                    .col((DeploymentStatusHistory::ChangedAt, IndexOrder::Desc))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DeploymentStatusHistory::Table.into_iden(),
            DeploymentResources::Table.into_iden(),
            DeploymentReplicas::Table.into_iden(),
            Deployments::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
