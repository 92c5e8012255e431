//! The fetch plan: which relations a query selected for its deployments, and
//! how to fetch them with the deployment rows themselves.
//!
//! Each selected relation rides along as a correlated JSON subquery, so a
//! status lookup or a list page is one statement on either backend; the
//! subqueries are served by the indexes on `deployment_id`. Only the SQL
//! differs per backend (Postgres' `json_agg`, SQLite's `json_group_array`,
//! where UUIDs are blobs and are hex-encoded); decoding is shared.

use std::collections::HashMap;

use entity::{
    ReplicaStatus, deployment, deployment_replica as replica, deployment_resources as resources,
    deployment_status_history as history,
};
use sea_orm::{DbBackend, DbErr, QueryResult, QuerySelect, Select, sea_query::Expr};
use serde::de::DeserializeOwned;

use super::health::ReplicaCounts;

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

/// Rows of `table` that belong to the outer `deployments` row.
fn of_row(table: &str) -> String {
    format!("{table}.deployment_id = \"deployments\".\"id\"")
}

/// The JSON subqueries of one backend.
trait Dialect {
    fn counts(&self) -> String;
    fn replicas(&self) -> String;
    fn resources(&self) -> String;
    fn history(&self, limit: u64) -> String;
}

struct Postgres;

impl Dialect for Postgres {
    fn counts(&self) -> String {
        format!(
            "(SELECT COALESCE(json_object_agg(c.status, c.n), '{{}}')::text FROM (SELECT status, \
             COUNT(*) AS n FROM deployment_replicas r WHERE {} GROUP BY status) c)",
            of_row("r")
        )
    }
    fn replicas(&self) -> String {
        format!(
            "(SELECT COALESCE(json_agg(r), '[]')::text FROM deployment_replicas r WHERE {})",
            of_row("r")
        )
    }
    fn resources(&self) -> String {
        format!("(SELECT row_to_json(x)::text FROM deployment_resources x WHERE {})", of_row("x"))
    }
    fn history(&self, limit: u64) -> String {
        format!(
            "(SELECT COALESCE(json_agg(h), '[]')::text FROM (SELECT * FROM \
             deployment_status_history h WHERE {} ORDER BY changed_at DESC, id DESC LIMIT {limit}) h)",
            of_row("h")
        )
    }
}

struct Sqlite;

/// A UUID blob as hex text (NULL stays NULL: `hex(NULL)` is '').
fn uuid_hex(column: &str) -> String {
    format!("nullif(lower(hex({column})), '')")
}

impl Dialect for Sqlite {
    fn counts(&self) -> String {
        format!(
            "(SELECT json_group_object(c.status, c.n) FROM (SELECT status, COUNT(*) AS n \
             FROM deployment_replicas r WHERE {} GROUP BY status) c)",
            of_row("r")
        )
    }
    fn replicas(&self) -> String {
        format!(
            "(SELECT json_group_array(json_object('id', {}, 'deployment_id', {}, 'node_id', {}, \
             'status', r.status, 'container_id', r.container_id, 'started_at', r.started_at, \
             'stopped_at', r.stopped_at)) FROM deployment_replicas r WHERE {})",
            uuid_hex("r.id"),
            uuid_hex("r.deployment_id"),
            uuid_hex("r.node_id"),
            of_row("r")
        )
    }
    fn resources(&self) -> String {
        format!(
            "(SELECT json_object('id', {}, 'deployment_id', {}, 'cpu_cores', x.cpu_cores, \
             'memory_mb', x.memory_mb, 'gpu_units', x.gpu_units, 'storage_gb', x.storage_gb) \
             FROM deployment_resources x WHERE {})",
            uuid_hex("x.id"),
            uuid_hex("x.deployment_id"),
            of_row("x")
        )
    }
    fn history(&self, limit: u64) -> String {
        format!(
            "(SELECT json_group_array(json_object('id', {}, 'deployment_id', {}, 'old_status', \
             h.old_status, 'new_status', h.new_status, 'changed_at', h.changed_at, 'reason', \
             h.reason)) FROM (SELECT * FROM deployment_status_history h WHERE {} \
             ORDER BY changed_at DESC, id DESC LIMIT {limit}) h)",
            uuid_hex("h.id"),
            uuid_hex("h.deployment_id"),
            of_row("h")
        )
    }
}

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
        let dialect: &dyn Dialect = match backend {
            DbBackend::Postgres => &Postgres,
            _ => &Sqlite,
        };
        if self.counts {
            select = select.column_as(Expr::cust(dialect.counts()), COUNTS);
        }
        if self.replicas {
            select = select.column_as(Expr::cust(dialect.replicas()), REPLICAS);
        }
        if self.resources {
            select = select.column_as(Expr::cust(dialect.resources()), RESOURCES);
        }
        if let Some(limit) = self.max_history() {
            select = select.column_as(Expr::cust(dialect.history(limit)), HISTORY);
        }
        select
    }

    /// Reads the plan's columns back from one row.
    pub(crate) fn decode(&self, row: &QueryResult) -> Result<Prefetched, DbErr> {
        let mut prefetched = Prefetched::default();
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
            let mut history: Vec<history::Model> = json(row, HISTORY)?;
            // JSON aggregates do not promise to keep the subquery's order.
            history.sort_by_key(|h| std::cmp::Reverse((h.changed_at, h.id)));
            prefetched.history = Some(history);
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
