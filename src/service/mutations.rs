//! The write side: create, scale and soft-delete, each in one transaction
//! with its status-history row, so no half-written state is ever visible.

use chrono::{DateTime, Utc};
use entity::{
    DeploymentStatus, ReplicaStatus, deployment, deployment_replica as replica,
    deployment_resources as resources, deployment_status_history as history,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
};
use uuid::Uuid;

use super::validation::{self, NewDeployment};
use crate::{
    db::{Db, Txn},
    error::{ApiError, ApiResult, OnConstraint},
    ids::{DeploymentId, UserId},
};

pub const CREATED_REASON: &str = "Deployment created";
pub const DELETED_REASON: &str = "Deployment deleted";

/// Now, at the microsecond precision both backends store, so what a mutation
/// returns equals what a later read gives.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// The live deployment `id` of `user`, row-locked until the transaction ends
/// (Postgres; SQLite's transaction already holds the write lock).
async fn lock_live(txn: &Txn, user: UserId, id: DeploymentId) -> ApiResult<deployment::Model> {
    deployment::Entity::find_by_id(id.0)
        .filter(deployment::Column::UserId.eq(user))
        .filter(deployment::Column::DeletedAt.is_null())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| ApiError::DeploymentNotFound(id.to_string()))
}

fn history_row(
    deployment_id: Uuid,
    old: Option<DeploymentStatus>,
    new: DeploymentStatus,
    at: DateTime<Utc>,
    reason: &str,
) -> history::ActiveModel {
    history::ActiveModel {
        id: Set(Uuid::new_v4()),
        deployment_id: Set(deployment_id),
        old_status: Set(old),
        new_status: Set(new),
        changed_at: Set(at),
        reason: Set(Some(reason.to_owned())),
    }
}

/// Creates a `PENDING` deployment of `user` with its resources and first history row.
#[tracing::instrument(target = "deployql::traces", name = "deployments.create", skip_all)]
pub async fn create(db: &Db, user: UserId, new: &NewDeployment) -> ApiResult<deployment::Model> {
    new.validate()?;
    let at = now();
    let model = deployment::Model {
        id: Uuid::new_v4(),
        user_id: user.0,
        name: new.name.clone(),
        status: DeploymentStatus::Pending,
        target_replicas: new.target_replicas,
        created_at: at,
        updated_at: at,
        deleted_at: None,
    };
    let txn = db.begin_write().await?;
    deployment::Entity::insert(deployment::ActiveModel::from(model.clone()))
        .exec_without_returning(&txn)
        .await
        .on_unique_violation(&migration::LIVE_NAME_PER_USER, || {
            ApiError::Conflict(format!(
                "`name`: you already have a deployment named {:?}",
                new.name
            ))
        })?;
    resources::Entity::insert(resources::ActiveModel {
        id: Set(Uuid::new_v4()),
        deployment_id: Set(model.id),
        cpu_cores: Set(new.resources.cpu_cores),
        memory_mb: Set(new.resources.memory_mb),
        gpu_units: Set(new.resources.gpu_units),
        storage_gb: Set(new.resources.storage_gb),
    })
    .exec_without_returning(&txn)
    .await?;
    history::Entity::insert(history_row(model.id, None, model.status, at, CREATED_REASON))
        .exec_without_returning(&txn)
        .await?;
    txn.commit().await?;
    tracing::info!(
        %user, deployment = %model.name, id = %model.id,
        target_replicas = model.target_replicas, "deployment created"
    );
    Ok(model)
}

/// Sets the target replica count; scaling to the current count changes nothing.
#[tracing::instrument(target = "deployql::traces", name = "deployments.scale", skip_all, fields(target_replicas = target_replicas))]
pub async fn scale(
    db: &Db,
    user: UserId,
    id: DeploymentId,
    target_replicas: i32,
) -> ApiResult<deployment::Model> {
    validation::validate_target_replicas(target_replicas)?;
    let txn = db.begin_write().await?;
    let before = lock_live(&txn, user, id).await?;
    if before.target_replicas == target_replicas {
        txn.commit().await?;
        return Ok(before);
    }
    let after = deployment::Model {
        target_replicas,
        updated_at: now().max(before.updated_at),
        ..before.clone()
    };
    deployment::Entity::update_many()
        .col_expr(deployment::Column::TargetReplicas, Expr::value(target_replicas))
        .col_expr(deployment::Column::UpdatedAt, Expr::value(after.updated_at))
        .filter(deployment::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    tracing::info!(
        %user, deployment = %after.name, %id,
        before = before.target_replicas, after = target_replicas, "deployment scaled"
    );
    Ok(after)
}

/// Soft-deletes: marks the row deleted and `STOPPED` with a history row,
/// removes its resources and sets every replica still alive to `stopping`.
#[tracing::instrument(target = "deployql::traces", name = "deployments.delete", skip_all)]
pub async fn delete(db: &Db, user: UserId, id: DeploymentId) -> ApiResult<DateTime<Utc>> {
    let txn = db.begin_write().await?;
    let before = lock_live(&txn, user, id).await?;
    let at = now().max(before.updated_at);
    deployment::Entity::update_many()
        .col_expr(deployment::Column::DeletedAt, Expr::value(at))
        .col_expr(deployment::Column::UpdatedAt, Expr::value(at))
        .col_expr(deployment::Column::Status, Expr::value(DeploymentStatus::Stopped))
        .filter(deployment::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    let stopped = DeploymentStatus::Stopped;
    history::Entity::insert(history_row(id.0, Some(before.status), stopped, at, DELETED_REASON))
        .exec_without_returning(&txn)
        .await?;
    resources::Entity::delete_many()
        .filter(resources::Column::DeploymentId.eq(id))
        .exec(&txn)
        .await?;
    let stopping = stop_replicas(&txn, id).await?;
    txn.commit().await?;
    tracing::info!(
        %user, deployment = %before.name, %id, status_before = ?before.status, status_after = ?stopped,
        replicas_stopping = stopping, "deployment deleted"
    );
    Ok(at)
}

/// Sets every replica that is neither stopped nor failed to `stopping`.
async fn stop_replicas(txn: &impl ConnectionTrait, id: DeploymentId) -> Result<u64, DbErr> {
    let result = replica::Entity::update_many()
        .col_expr(replica::Column::Status, Expr::value(ReplicaStatus::Stopping))
        .filter(replica::Column::DeploymentId.eq(id))
        .filter(replica::Column::Status.is_not_in([ReplicaStatus::Stopped, ReplicaStatus::Failed]))
        .exec(txn)
        .await?;
    Ok(result.rows_affected)
}
