//! Schema migrations for deployql. Shipped migrations are history: never edit
//! one, add a new one.

// `MigrationTrait` takes `&SchemaManager` with an elided lifetime; spelling it
// `<'_>` makes async-trait bind it early and no longer match the trait.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;

/// A unique index, named so that a violation can be told from others.
#[derive(Debug)]
pub struct UniqueIndex {
    pub name: &'static str,
    pub table: &'static str,
    pub columns: &'static [&'static str],
}

impl UniqueIndex {
    /// Whether a unique-violation message is this index's: Postgres names
    /// the index, SQLite lists its columns as `table.column, ...`.
    pub fn is_named_in(&self, message: &str) -> bool {
        let columns = (self.columns.iter())
            .map(|column| format!("{}.{column}", self.table))
            .collect::<Vec<_>>()
            .join(", ");
        message.contains(&format!("\"{}\"", self.name)) || message.ends_with(&columns)
    }
}

/// A user's live deployments have distinct names (migration 2).
pub const LIVE_NAME_PER_USER: UniqueIndex = UniqueIndex {
    name: "deployments_live_name_per_user",
    table: "deployments",
    columns: &["user_id", "name"],
};

/// The channel the change triggers of migration 3 notified with a
/// deployment's id (replaced by [`CHANGE_LOG`] in migration 4).
pub const CHANGE_CHANNEL: &str = "deployql_deployment_changed";

/// The table the change triggers append `(xid, deployment_id)` to (migration 4).
pub const CHANGE_LOG: &str = "deployql_changes";

/// The tables whose every write the triggers capture (migrations 4, 5 and 7).
const CAPTURED_TABLES: [&str; 4] =
    ["deployments", "deployment_replicas", "deployment_resources", "deployment_status_history"];

/// The one-row table written to probe whether the database takes writes
/// (migration 6): `UPDATE <table> SET <counter> = <counter> + 1 WHERE id = 1`.
#[derive(Debug)]
pub struct WriteProbe {
    pub table: &'static str,
    pub counter: &'static str,
}

pub const WRITE_PROBE: WriteProbe = WriteProbe { table: "deployql_write_probe", counter: "writes" };

/// The table automatic persisted queries are registered in (migration 8),
/// and its index by registration time.
#[derive(Debug)]
pub struct PersistedQueries {
    pub table: &'static str,
    pub by_age: &'static str,
}

pub const PERSISTED_QUERIES: PersistedQueries =
    PersistedQueries { table: "persisted_queries", by_age: "persisted_queries_by_age" };

/// The table mutations' answers are recorded in by idempotency key
/// (migration 9), and its indexes by age.
#[derive(Debug)]
pub struct IdempotencyKeys {
    pub table: &'static str,
    pub by_age: &'static str,
    pub by_user_and_age: &'static str,
}

pub const IDEMPOTENCY_KEYS: IdempotencyKeys = IdempotencyKeys {
    table: "idempotency_keys",
    by_age: "idempotency_keys_by_age",
    by_user_and_age: "idempotency_keys_by_user_and_age",
};

/// The webhook tables (migration 10) and their indexes.
#[derive(Debug)]
pub struct Webhooks {
    pub endpoints: &'static str,
    pub endpoints_by_user: &'static str,
    pub states: &'static str,
    pub deliveries: &'static str,
    pub deliveries_due: &'static str,
    pub deliveries_by_endpoint: &'static str,
}

pub const WEBHOOKS: Webhooks = Webhooks {
    endpoints: "webhook_endpoints",
    endpoints_by_user: "webhook_endpoints_by_user",
    states: "webhook_deployment_states",
    deliveries: "webhook_deliveries",
    deliveries_due: "webhook_deliveries_due",
    deliveries_by_endpoint: "webhook_deliveries_by_endpoint",
};

mod m20261126_000001_create_deployment_tables;
mod m20261126_000002_unique_live_deployment_name;
mod m20261126_000003_notify_deployment_changes;
mod m20261127_000004_capture_changes_in_a_log;
mod m20261127_000005_capture_without_comparing_rows;
mod m20261202_000006_write_probe;
mod m20261202_000007_capture_sqlite_changes;
mod m20261203_000008_persisted_queries;
mod m20261203_000009_idempotency_keys;
mod m20261204_000010_webhooks;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_deployment_tables::Migration),
            Box::new(m20261126_000002_unique_live_deployment_name::Migration),
            Box::new(m20261126_000003_notify_deployment_changes::Migration),
            Box::new(m20261127_000004_capture_changes_in_a_log::Migration),
            Box::new(m20261127_000005_capture_without_comparing_rows::Migration),
            Box::new(m20261202_000006_write_probe::Migration),
            Box::new(m20261202_000007_capture_sqlite_changes::Migration),
            Box::new(m20261203_000008_persisted_queries::Migration),
            Box::new(m20261203_000009_idempotency_keys::Migration),
            Box::new(m20261204_000010_webhooks::Migration),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_violation_is_matched_to_its_own_index_only() {
        let postgres =
            r#"duplicate key value violates unique constraint "deployments_live_name_per_user""#;
        let sqlite = "UNIQUE constraint failed: deployments.user_id, deployments.name";
        assert!(LIVE_NAME_PER_USER.is_named_in(postgres));
        assert!(LIVE_NAME_PER_USER.is_named_in(sqlite));
        let other_pg = r#"duplicate key value violates unique constraint "deployments_pkey""#;
        let other_sqlite = "UNIQUE constraint failed: deployments.id";
        assert!(!LIVE_NAME_PER_USER.is_named_in(other_pg));
        assert!(!LIVE_NAME_PER_USER.is_named_in(other_sqlite));
    }
}
