//! Reading deployments: one by id, and the filtered, keyset-paginated list.

use std::sync::LazyLock;

use entity::{DeploymentStatus, deployment};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Statement, Value,
};

use super::{
    health::{Health, health_condition},
    pagination::Cursor,
    plan::{Plan, Prefetched},
    statements::StatementCache,
};
use crate::{
    error::ApiResult,
    ids::{DeploymentId, UserId},
};

/// A user's live (not deleted) deployments.
fn live_of(user: UserId) -> Select<deployment::Entity> {
    deployment::Entity::find()
        .filter(deployment::Column::UserId.eq(user))
        .filter(deployment::Column::DeletedAt.is_null())
}

/// Fetches the live deployments of `user` among `ids` with what `plan`
/// asks for, in one statement (none for no ids), in no particular order.
#[tracing::instrument(target = "deployql::traces", name = "deployments.find", skip_all, fields(ids = ids.len()))]
pub async fn find_each(
    db: &impl ConnectionTrait,
    user: UserId,
    ids: &[DeploymentId],
    plan: &Plan,
) -> ApiResult<Vec<(deployment::Model, Prefetched)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let statement = find_each_statement(db.get_database_backend(), user, ids, plan);
    let mut found = Vec::new();
    for row in db.query_all_raw(statement).await? {
        found.push((deployment::Model::from_query_result(&row, "")?, plan.decode(&row)?));
    }
    Ok(found)
}

/// The statement [`find_each`] runs: the deployment rows with the plan's
/// relations as JSON columns.
pub fn find_each_statement(
    backend: DbBackend,
    user: UserId,
    ids: &[DeploymentId],
    plan: &Plan,
) -> Statement {
    static SHAPES: LazyLock<StatementCache<(bool, Plan, usize)>> = LazyLock::new(Default::default);
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let shape = (backend == DbBackend::Postgres, plan.clone(), ids.len());
    let values =
        std::iter::once(Value::from(user)).chain(ids.iter().map(|&id| id.into())).collect();
    SHAPES.statement(shape, backend, values, || {
        plan.add_columns(live_of(user).filter(deployment::Column::Id.is_in(ids)), backend)
            .build(backend)
    })
}

/// Which of a user's deployments the list shows.
#[derive(Debug, Clone, Copy)]
pub struct ListFilter {
    pub user: UserId,
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
    pub rows: Vec<(deployment::Model, Prefetched)>,
    pub has_next_page: bool,
}

#[tracing::instrument(target = "deployql::traces", name = "deployments.page", skip_all, fields(first = first))]
pub async fn list_page(
    db: &impl ConnectionTrait,
    filter: &ListFilter,
    first: u64,
    after: Option<Cursor>,
    plan: &Plan,
) -> ApiResult<Page> {
    use deployment::Column::{CreatedAt, Id};
    let backend = db.get_database_backend();
    let select = filter
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
        .limit(first + 1);
    let mut rows = Vec::new();
    for row in db.query_all_raw(plan.add_columns(select, backend).build(backend)).await? {
        rows.push((deployment::Model::from_query_result(&row, "")?, plan.decode(&row)?));
    }
    let has_next_page = rows.len() as u64 > first;
    rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
    Ok(Page { rows, has_next_page })
}

/// How many deployments match `filter`, across all pages.
#[tracing::instrument(target = "deployql::traces", name = "deployments.count", skip_all)]
pub async fn count(db: &impl ConnectionTrait, filter: &ListFilter) -> ApiResult<u64> {
    Ok(filter.select().count(db).await?)
}
