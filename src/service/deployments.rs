//! Reading deployments: one by id, and the filtered, keyset-paginated list.

use entity::{DeploymentStatus, ReplicaStatus, deployment};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select,
};
use uuid::Uuid;

use super::{
    health::{Health, ReplicaCounts, health_condition, replica_count_expr},
    pagination::Cursor,
};
use crate::error::ApiResult;

/// Statuses in the order of the count columns selected with a deployment.
const COUNTED: [(ReplicaStatus, &str); 6] = [
    (ReplicaStatus::Pending, "replicas_pending"),
    (ReplicaStatus::Starting, "replicas_starting"),
    (ReplicaStatus::Running, "replicas_running"),
    (ReplicaStatus::Stopping, "replicas_stopping"),
    (ReplicaStatus::Stopped, "replicas_stopped"),
    (ReplicaStatus::Failed, "replicas_failed"),
];

/// A user's live (not deleted) deployments.
fn live_of(user: Uuid) -> Select<deployment::Entity> {
    deployment::Entity::find()
        .filter(deployment::Column::UserId.eq(user))
        .filter(deployment::Column::DeletedAt.is_null())
}

/// Fetches one live deployment of `user` together with its replica counts,
/// in one statement.
pub async fn find_with_counts(
    db: &impl ConnectionTrait,
    user: Uuid,
    id: Uuid,
) -> ApiResult<Option<(deployment::Model, ReplicaCounts)>> {
    let mut select = live_of(user).filter(deployment::Column::Id.eq(id));
    for (status, alias) in COUNTED {
        select = select.column_as(replica_count_expr(status), alias);
    }
    let Some(row) = db.query_one_raw(select.build(db.get_database_backend())).await? else {
        return Ok(None);
    };
    let model = deployment::Model::from_query_result(&row, "")?;
    let mut counts = ReplicaCounts::default();
    for (status, alias) in COUNTED {
        counts.add(status, row.try_get::<i64>("", alias)?);
    }
    Ok(Some((model, counts)))
}

/// Which of a user's deployments the list shows.
#[derive(Debug, Clone, Copy)]
pub struct ListFilter {
    pub user: Uuid,
    pub status: Option<DeploymentStatus>,
    pub health: Option<Health>,
}

impl ListFilter {
    fn select(&self) -> Select<deployment::Entity> {
        live_of(self.user)
            .apply_if(self.status, |q, status| q.filter(deployment::Column::Status.eq(status)))
            .apply_if(self.health, |q, health| q.filter(health_condition(health)))
    }
}

/// One page of the list, newest first, and whether more rows follow it.
#[derive(Debug)]
pub struct Page {
    pub rows: Vec<deployment::Model>,
    pub has_next_page: bool,
}

pub async fn list_page(
    db: &impl ConnectionTrait,
    filter: &ListFilter,
    first: u64,
    after: Option<Cursor>,
) -> ApiResult<Page> {
    use deployment::Column::{CreatedAt, Id};
    let mut rows = filter
        .select()
        .apply_if(after, |q, after| {
            q.filter(
                Condition::any()
                    .add(CreatedAt.lt(after.created_at))
                    .add(Condition::all().add(CreatedAt.eq(after.created_at)).add(Id.lt(after.id))),
            )
        })
        .order_by_desc(CreatedAt)
        .order_by_desc(Id)
        // One extra row tells whether a next page exists.
        .limit(first + 1)
        .all(db)
        .await?;
    let has_next_page = rows.len() as u64 > first;
    rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
    Ok(Page { rows, has_next_page })
}

/// How many deployments match `filter`, across all pages.
pub async fn count(db: &impl ConnectionTrait, filter: &ListFilter) -> ApiResult<u64> {
    Ok(filter.select().count(db).await?)
}
