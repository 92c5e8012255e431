//! The fetch plan: which relations a query selected for its deployments, and
//! how to fetch them with the deployment rows themselves.
//!
//! On Postgres every selected relation rides along as a correlated JSON
//! subquery, so a status lookup or a list page is one statement. SQLite runs
//! in-process, where a statement costs microseconds rather than a network
//! round trip, so there only the replica counts come inline and the rest is
//! left to the batched loaders.

use std::collections::HashMap;

use entity::{
    ReplicaStatus, deployment, deployment_replica as replica, deployment_resources as resources,
    deployment_status_history as history,
};
use sea_orm::{DbBackend, DbErr, QueryResult, QuerySelect, Select, sea_query::Expr};
use serde::de::DeserializeOwned;

use super::health::{ReplicaCounts, replica_count_expr};

/// What to fetch with each deployment row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Replica counts per status (for `health` and `replicaCounts`).
    pub counts: bool,
    pub replicas: bool,
    pub resources: bool,
    /// Every `statusHistory(limit:)` asked for; the largest is fetched.
    pub history_limits: Vec<u64>,
}

/// What came back with one deployment row; `None` where the plan did not ask
/// for it or this backend leaves it to the loaders.
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

/// SQLite's inline counts: one column per status.
const COUNT_COLUMNS: [(ReplicaStatus, &str); 6] = [
    (ReplicaStatus::Pending, "replicas_pending"),
    (ReplicaStatus::Starting, "replicas_starting"),
    (ReplicaStatus::Running, "replicas_running"),
    (ReplicaStatus::Stopping, "replicas_stopping"),
    (ReplicaStatus::Stopped, "replicas_stopped"),
    (ReplicaStatus::Failed, "replicas_failed"),
];

impl Plan {
    fn max_history(&self) -> Option<u64> {
        self.history_limits.iter().copied().max()
    }

    /// Adds the plan's columns to a select of `deployments` rows.
    pub(crate) fn add_columns(
        &self,
        mut select: Select<deployment::Entity>,
        backend: DbBackend,
    ) -> Select<deployment::Entity> {
        if backend != DbBackend::Postgres {
            if self.counts {
                for (status, alias) in COUNT_COLUMNS {
                    select = select.column_as(replica_count_expr(status), alias);
                }
            }
            return select;
        }
        // `deployments` is the outer row; each part is a correlated subquery
        // served by an index on `deployment_id`, cast to text for decoding.
        let of_row = "deployment_id = \"deployments\".\"id\"";
        if self.counts {
            let sql = format!(
                "(SELECT COALESCE(json_object_agg(c.status, c.n), '{{}}')::text FROM \
                 (SELECT status, COUNT(*) AS n FROM deployment_replicas WHERE {of_row} \
                 GROUP BY status) c)"
            );
            select = select.column_as(Expr::cust(sql), COUNTS);
        }
        if self.replicas {
            let sql = format!(
                "(SELECT COALESCE(json_agg(r), '[]')::text FROM deployment_replicas r WHERE r.{of_row})"
            );
            select = select.column_as(Expr::cust(sql), REPLICAS);
        }
        if self.resources {
            let sql = format!(
                "(SELECT row_to_json(x)::text FROM deployment_resources x WHERE x.{of_row})"
            );
            select = select.column_as(Expr::cust(sql), RESOURCES);
        }
        if let Some(limit) = self.max_history() {
            let sql = format!(
                "(SELECT COALESCE(json_agg(h ORDER BY h.changed_at DESC, h.id DESC), '[]')::text FROM \
                 (SELECT * FROM deployment_status_history WHERE {of_row} \
                 ORDER BY changed_at DESC, id DESC LIMIT {limit}) h)"
            );
            select = select.column_as(Expr::cust(sql), HISTORY);
        }
        select
    }

    /// Reads the plan's columns back from one row.
    pub(crate) fn decode(
        &self,
        row: &QueryResult,
        backend: DbBackend,
    ) -> Result<Prefetched, DbErr> {
        let mut prefetched = Prefetched::default();
        if backend != DbBackend::Postgres {
            if self.counts {
                let mut counts = ReplicaCounts::default();
                for (status, alias) in COUNT_COLUMNS {
                    counts.add(status, row.try_get::<i64>("", alias)?);
                }
                prefetched.counts = Some(counts);
            }
            return Ok(prefetched);
        }
        if self.counts {
            let by_status: HashMap<ReplicaStatus, i64> = json(row, COUNTS)?;
            let mut counts = ReplicaCounts::default();
            for (status, n) in by_status {
                counts.add(status, n);
            }
            prefetched.counts = Some(counts);
        }
        if self.replicas {
            let mut replicas: Vec<replica::Model> = json(row, REPLICAS)?;
            super::related::sort_replicas(&mut replicas);
            prefetched.replicas = Some(replicas);
        }
        if self.resources {
            let text: Option<String> = row.try_get("", RESOURCES)?;
            prefetched.resources = Some(text.as_deref().map(parse).transpose()?);
        }
        if self.max_history().is_some() {
            prefetched.history = Some(json(row, HISTORY)?);
        }
        Ok(prefetched)
    }
}

fn json<T: DeserializeOwned>(row: &QueryResult, column: &str) -> Result<T, DbErr> {
    parse(&row.try_get::<String>("", column)?)
}

fn parse<T: DeserializeOwned>(text: &str) -> Result<T, DbErr> {
    serde_json::from_str(text).map_err(|err| DbErr::Json(err.to_string()))
}
