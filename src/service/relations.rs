//! What hangs off a deployment, each relation described once: its entity,
//! the column that points at the deployment, and the order of its rows.
//!
//! Everything else is generated from that description with sea-query: the
//! correlated JSON subquery that carries a relation's rows (or its replica
//! counts) along with each `deployments` row, for either backend, and the
//! decoding of that JSON back into the entity's models. The columns come
//! from the entity's `Column` iteration, so a column added to an entity is
//! read on both backends with no change here. The one-statement planner and
//! the batched loaders both use these subqueries ([`super::plan`]).

use std::collections::HashMap;

use entity::{
    ReplicaStatus, deployment, deployment_replica as replica, deployment_resources as resources,
    deployment_status_history as history,
};
use sea_orm::{
    ColumnTrait, ColumnType, DbBackend, DbErr, EntityTrait, Iterable,
    sea_query::{Alias, Asterisk, Expr, ExprTrait, Func, Query, SelectStatement, SimpleExpr},
};
use serde::de::DeserializeOwned;

use super::health::ReplicaCounts;

/// Direction of one sort key. NULLs sort last either way, on both backends
/// (whose defaults differ).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    Asc,
    Desc,
}

/// A relation whose rows are one entity's rows pointing at the deployment.
#[derive(Debug)]
pub(crate) struct Rows<E: EntityTrait> {
    /// The column holding the owning deployment's id.
    owner: E::Column,
    /// The order of the rows, first key first; it must end in a unique
    /// column so that the order is total.
    order: &'static [(E::Column, Direction)],
}

/// Every replica, oldest start first (never started last), then by id.
pub(crate) const REPLICAS: Rows<replica::Entity> = Rows {
    owner: replica::Column::DeploymentId,
    order: &[(replica::Column::StartedAt, Direction::Asc), (replica::Column::Id, Direction::Asc)],
};

/// The resource allocation: at most one row (a unique index says so).
pub(crate) const RESOURCES: Rows<resources::Entity> = Rows {
    owner: resources::Column::DeploymentId,
    order: &[(resources::Column::Id, Direction::Asc)],
};

/// Status changes, newest first.
pub(crate) const HISTORY: Rows<history::Entity> = Rows {
    owner: history::Column::DeploymentId,
    order: &[(history::Column::ChangedAt, Direction::Desc), (history::Column::Id, Direction::Desc)],
};

/// `<table>.<column> = "deployments"."id"`: the correlation with the outer row.
fn owned_by_outer_row(column: impl ColumnTrait) -> SimpleExpr {
    Expr::col((column.entity_name(), column)).equals((deployment::Entity, deployment::Column::Id))
}

impl<E: EntityTrait> Rows<E>
where
    E::Model: DeserializeOwned,
{
    /// A subquery giving the JSON array (as text) of the rows owned by the
    /// outer `deployments` row, in order, at most `limit` of them.
    pub(crate) fn json_array(&self, backend: DbBackend, limit: Option<u64>) -> SimpleExpr {
        let table = E::default();
        let mut rows = Query::select();
        match limit {
            // The limit picks the first rows in order, so they are chosen in
            // a subquery (served by the owner's index) that keeps the table's name.
            Some(limit) => {
                let mut first = Query::select();
                first.column(Asterisk).from(table).and_where(owned_by_outer_row(self.owner));
                self.order_by(&mut first);
                first.limit(limit);
                rows.from_subquery(first, table)
            }
            None => rows.from(table).and_where(owned_by_outer_row(self.owner)),
        };
        // The aggregate orders its input itself: an ordered subquery alone
        // does not promise the aggregate's order. `$1` is the row, `$2..` the keys.
        let order = (self.order.iter().enumerate())
            .map(|(i, (_, direction))| {
                let direction = match direction {
                    Direction::Asc => "ASC",
                    Direction::Desc => "DESC",
                };
                format!("${} {direction} NULLS LAST", i + 2)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut args = vec![row_array::<E>(backend)];
        args.extend(self.order.iter().map(|(column, _)| Expr::col((table, *column))));
        let array = match backend {
            DbBackend::Postgres => {
                format!("COALESCE(json_agg($1 ORDER BY {order}), '[]')::text")
            }
            _ => format!("json_group_array($1 ORDER BY {order})"),
        };
        rows.expr(custom(backend, &array, args));
        rows.into()
    }

    /// Decodes what [`Rows::json_array`] gave.
    pub(crate) fn decode(&self, json: &str) -> Result<Vec<E::Model>, DbErr> {
        parse(json)
    }

    /// Orders the rows; nulls last only where a column may hold one, so that
    /// an index on a column that cannot (the history's `changed_at`, in its
    /// index's order) still serves the order and the limit.
    fn order_by(&self, select: &mut SelectStatement) {
        for (column, direction) in self.order {
            let order = match direction {
                Direction::Asc => sea_orm::Order::Asc,
                Direction::Desc => sea_orm::Order::Desc,
            };
            if column.def().is_null() {
                select.order_by_with_nulls(*column, order, sea_orm::sea_query::NullOrdering::Last);
            } else {
                select.order_by(*column, order);
            }
        }
    }
}

/// One row as a JSON array of every column of the entity, in the order of
/// the entity's `Column` iteration: the order of the model's fields, which
/// serde's derived `Deserialize` reads a sequence in. An array rather than
/// an object keyed by column name: it is half the text, and decoding it
/// matches no keys.
fn row_array<E: EntityTrait>(backend: DbBackend) -> SimpleExpr {
    let table = E::default();
    let mut args = Vec::new();
    for column in E::Column::iter() {
        let value = Expr::col((table, column));
        args.push(match (backend, column.def().get_column_type()) {
            // SQLite stores UUIDs as 16-byte blobs; JSON wants text (and
            // `hex(NULL)` is '', which must stay null).
            (DbBackend::Sqlite, ColumnType::Uuid) => Func::cust(Alias::new("nullif"))
                .arg(Func::lower(Func::cust(Alias::new("hex")).arg(value)))
                .arg(Expr::cust("''"))
                .into(),
            // Microseconds since the epoch (exact: EXTRACT gives a numeric
            // since Postgres 14) cost less to write here and to read back
            // than the timestamp's text (`entity::timestamp` reads both).
            (DbBackend::Postgres, ColumnType::TimestampWithTimeZone) => {
                custom(backend, "(EXTRACT(EPOCH FROM $1) * 1000000)::int8", [value])
            }
            _ => value,
        });
    }
    let array = match backend {
        DbBackend::Postgres => "json_build_array",
        _ => "json_array",
    };
    Func::cust(Alias::new(array)).args(args).into()
}

/// A subquery giving the outer deployment's replica counts per status as a
/// JSON object (as text), counted in SQL: no replica row is loaded.
pub(crate) fn counts_json(backend: DbBackend) -> SimpleExpr {
    let status = replica::Column::Status;
    let count = Alias::new("n");
    let mut per_status = Query::select();
    per_status
        .column(status)
        .expr_as(Expr::col(Asterisk).count(), count.clone())
        .from(replica::Entity)
        .and_where(owned_by_outer_row(REPLICAS.owner))
        .group_by_col(status);
    let object = match backend {
        DbBackend::Postgres => "COALESCE(json_object_agg($1, $2), '{}')::text",
        _ => "json_group_object($1, $2)",
    };
    let counts = Alias::new("counts");
    Query::select()
        .expr(custom(
            backend,
            object,
            [Expr::col((counts.clone(), status)), Expr::col((counts.clone(), count))],
        ))
        .from_subquery(per_status, counts)
        .to_owned()
        .into()
}

/// Decodes what [`counts_json`] gave.
pub(crate) fn decode_counts(json: &str) -> Result<ReplicaCounts, DbErr> {
    let by_status: HashMap<ReplicaStatus, i64> = parse(json)?;
    let mut counts = ReplicaCounts::default();
    for (status, n) in by_status {
        counts.add(status, n);
    }
    Ok(counts)
}

/// A custom expression whose `$1`, `$2`, ... (each used once, in order)
/// are `args`, rendered in the backend's placeholder style (SQLite's is `?`).
fn custom(backend: DbBackend, template: &str, args: impl IntoIterator<Item = Expr>) -> Expr {
    let template = match backend {
        DbBackend::Postgres => template.to_owned(),
        _ => {
            let mut text = String::with_capacity(template.len());
            let mut chars = template.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '$' {
                    text.push('?');
                    while chars.next_if(char::is_ascii_digit).is_some() {}
                } else {
                    text.push(c);
                }
            }
            text
        }
    };
    Expr::cust_with_exprs(template, args)
}

fn parse<T: DeserializeOwned>(text: &str) -> Result<T, DbErr> {
    serde_json::from_str(text).map_err(|err| DbErr::Json(err.to_string()))
}
