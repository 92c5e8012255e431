//! The fetch plan: which relations a query selected for its deployments, and
//! how to fetch them with the deployment rows themselves.
//!
//! Each selected relation rides along as a correlated JSON subquery
//! ([`super::relations`]), so a status lookup or a list page is one statement
//! on either backend; the subqueries are served by the indexes on
//! `deployment_id`. The loaders' batched fetch is the same subqueries on the
//! rows of the deployments asked for.

use entity::{
    deployment, deployment_replica as replica, deployment_resources as resources,
    deployment_status_history as history,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IdenStatic, QueryFilter,
    QueryResult, QuerySelect, QueryTrait, Select,
};
use uuid::Uuid;

use super::{
    health::ReplicaCounts,
    relations::{self, HISTORY as HISTORY_OF, REPLICAS as REPLICAS_OF, RESOURCES as RESOURCES_OF},
};
use crate::{error::ApiResult, ids::DeploymentId};

/// What to fetch with each deployment row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Plan {
    /// Replica counts per status (for `health` and `replicaCounts`).
    pub counts: bool,
    pub replicas: bool,
    pub resources: bool,
    /// Every `statusHistory(limit:)` asked for; the largest is fetched.
    pub history_limits: Vec<u64>,
}

/// What came back with one deployment row; `None` where the plan did not ask.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prefetched {
    pub counts: Option<ReplicaCounts>,
    pub replicas: Option<Vec<replica::Model>>,
    pub resources: Option<Option<resources::Model>>,
    /// Newest first, at most the plan's largest history limit.
    pub history: Option<Vec<history::Model>>,
}

const COUNTS: &str = "plan_counts";
const REPLICAS: &str = "plan_replicas";
const RESOURCES: &str = "plan_resources";
const HISTORY: &str = "plan_history";

impl Plan {
    fn max_history(&self) -> Option<u64> {
        self.history_limits.iter().copied().max()
    }

    /// Whether the plan fetches nothing beyond the deployment rows.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the counts need a subquery of their own: not when every
    /// replica row comes anyway (they are counted from those rows).
    fn counts_apart(&self) -> bool {
        self.counts && !self.replicas
    }

    /// Adds the plan's columns to a select of `deployments` rows.
    pub(crate) fn add_columns(
        &self,
        mut select: Select<deployment::Entity>,
        backend: DbBackend,
    ) -> Select<deployment::Entity> {
        if self.counts_apart() {
            select = select.column_as(relations::counts_json(backend), COUNTS);
        }
        if self.replicas {
            select = select.column_as(REPLICAS_OF.json_array(backend, None), REPLICAS);
        }
        if self.resources {
            select = select.column_as(RESOURCES_OF.json_array(backend, None), RESOURCES);
        }
        if let Some(limit) = self.max_history() {
            select = select.column_as(HISTORY_OF.json_array(backend, Some(limit)), HISTORY);
        }
        select
    }

    /// Reads the plan's columns back from one row.
    pub(crate) fn decode(&self, row: &QueryResult) -> Result<Prefetched, DbErr> {
        let json = |column| row.try_get::<String>("", column);
        let replicas = self.replicas.then(|| REPLICAS_OF.decode(&json(REPLICAS)?)).transpose()?;
        let counts = match &replicas {
            Some(replicas) if self.counts => Some(ReplicaCounts::of(replicas)),
            _ if self.counts => Some(relations::decode_counts(&json(COUNTS)?)?),
            _ => None,
        };
        Ok(Prefetched {
            counts,
            replicas,
            // At most one row, by a unique index.
            resources: (self.resources)
                .then(|| Ok::<_, DbErr>(RESOURCES_OF.decode(&json(RESOURCES)?)?.pop()))
                .transpose()?,
            history: (self.max_history().is_some())
                .then(|| HISTORY_OF.decode(&json(HISTORY)?))
                .transpose()?,
        })
    }
}

/// What `plan` asks for of each of the deployments `ids`, in one statement
/// (none for no ids), in no particular order. The ids must already be known
/// to be the user's: this is the loaders' batched fetch for the deployments
/// a request has resolved.
#[tracing::instrument(target = "deployql::traces", name = "deployments.relations", skip_all, fields(ids = ids.len()))]
pub async fn relations_of(
    db: &impl ConnectionTrait,
    plan: &Plan,
    ids: &[DeploymentId],
) -> ApiResult<Vec<(Uuid, Prefetched)>> {
    if ids.is_empty() || plan.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let select = deployment::Entity::find()
        .select_only()
        .column(deployment::Column::Id)
        .filter(deployment::Column::Id.is_in(ids.iter().copied()));
    let mut found = Vec::new();
    for row in db.query_all_raw(plan.add_columns(select, backend).build(backend)).await? {
        found.push((row.try_get("", deployment::Column::Id.as_str())?, plan.decode(&row)?));
    }
    Ok(found)
}
