//! deployql: a GraphQL API for a container deployment platform's deployment
//! status, scoped to the user in the bearer token.

pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod digest;
pub mod engine;
pub mod error;
pub mod graphql;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod json;
pub mod live;
pub mod persisted;
pub mod service;
pub mod telemetry;
pub mod webhooks;
