//! Batched fetches of what hangs off deployments, one statement per call
//! whatever the number of deployments; the DataLoaders call these.

use std::collections::HashMap;

use entity::{
    ReplicaStatus, deployment_replica as replica, deployment_resources as resources,
    deployment_status_history as history,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    sea_query::{Alias, Asterisk, Expr, ExprTrait, Query},
};
use uuid::Uuid;

use super::health::ReplicaCounts;
use crate::error::ApiResult;

/// Every replica of each deployment, oldest start first (never-started last), then by id.
pub async fn replicas_of(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> ApiResult<HashMap<Uuid, Vec<replica::Model>>> {
    let rows = replica::Entity::find()
        .filter(replica::Column::DeploymentId.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    let mut by_deployment: HashMap<Uuid, Vec<replica::Model>> = HashMap::new();
    for row in rows {
        by_deployment.entry(row.deployment_id).or_default().push(row);
    }
    by_deployment.values_mut().for_each(|replicas| sort_replicas(replicas));
    Ok(by_deployment)
}

/// Oldest start first, never-started last, then by id. Sorting here keeps the
/// order identical on SQLite and Postgres, whose NULL ordering differs.
pub fn sort_replicas(replicas: &mut [replica::Model]) {
    replicas.sort_by_key(|r| (r.started_at.is_none(), r.started_at, r.id));
}

pub async fn resources_of(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> ApiResult<HashMap<Uuid, resources::Model>> {
    let rows = resources::Entity::find()
        .filter(resources::Column::DeploymentId.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.deployment_id, r)).collect())
}

/// Replica counts per status, aggregated in SQL: no replica row is loaded.
pub async fn replica_counts_of(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> ApiResult<HashMap<Uuid, ReplicaCounts>> {
    let rows: Vec<(Uuid, ReplicaStatus, i64)> = replica::Entity::find()
        .select_only()
        .column(replica::Column::DeploymentId)
        .column(replica::Column::Status)
        .column_as(Expr::col(Asterisk).count(), "replicas")
        .filter(replica::Column::DeploymentId.is_in(ids.iter().copied()))
        .group_by(replica::Column::DeploymentId)
        .group_by(replica::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    // Deployments without replicas get zero counts rather than no entry.
    let mut counts: HashMap<Uuid, ReplicaCounts> =
        ids.iter().map(|id| (*id, ReplicaCounts::default())).collect();
    for (deployment_id, status, n) in rows {
        counts.entry(deployment_id).or_default().add(status, n);
    }
    Ok(counts)
}

/// The newest `limit` status changes of each deployment, newest first.
pub async fn history_of(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    limit: u64,
) -> ApiResult<HashMap<Uuid, Vec<history::Model>>> {
    // ROW_NUMBER per deployment keeps it one statement for any number of
    // deployments, reading only their rows through the (deployment_id, changed_at) index.
    let ranked = Query::select()
        .column(Asterisk)
        .expr_as(
            Expr::cust(
                "ROW_NUMBER() OVER (PARTITION BY deployment_id ORDER BY changed_at DESC, id DESC)",
            ),
            Alias::new("rank"),
        )
        .from(history::Entity)
        .and_where(Expr::col(history::Column::DeploymentId).is_in(ids.iter().copied()))
        .to_owned();
    let select = Query::select()
        .column(Asterisk)
        .from_subquery(ranked, Alias::new("ranked"))
        .and_where(Expr::col(Alias::new("rank")).lte(limit))
        .order_by(Alias::new("rank"), sea_orm::Order::Asc)
        .to_owned();
    let rows = db.query_all(&select).await?;
    let mut by_deployment: HashMap<Uuid, Vec<history::Model>> = HashMap::new();
    for row in rows {
        let change = history::Model::from_query_result(&row, "")?;
        by_deployment.entry(change.deployment_id).or_default().push(change);
    }
    Ok(by_deployment)
}
