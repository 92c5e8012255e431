//! sea-orm entities for deployql's tables.
//!
//! This crate knows nothing of GraphQL: the API wraps these models in its own
//! output types, so the tables and the schema can evolve separately. Models
//! of related rows deserialize from JSON with the column names as keys, the
//! shape Postgres' `row_to_json` gives, so one statement can carry them.

pub mod deployment;
pub mod deployment_replica;
pub mod deployment_resources;
pub mod deployment_status_history;
pub mod idempotency_key;
pub mod persisted_query;
pub mod status;
pub mod timestamp;
pub mod webhook_delivery;
pub mod webhook_deployment_state;
pub mod webhook_endpoint;

pub use status::{DeploymentStatus, ReplicaStatus};
