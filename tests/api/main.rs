//! deployql's API tests: one binary, each backend-dependent test run on
//! SQLite and, when `TEST_DATABASE_URL` is set (always in CI), on Postgres.

// Helpers are `pub` for the sibling modules; the test crate exports nothing.
#![allow(unreachable_pub)]

/// Generates `sqlite::<name>` and `postgres::<name>` tests from
/// `async fn <name>(app: &TestApp)` functions of the calling module.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&crate::helpers::TestApp::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = crate::helpers::TestApp::postgres().await {
                        super::$name(&app).await;
                    }
                }
            )*
        }
    };
}

mod auth;
mod cli;
mod codegen;
mod concurrency;
mod cors;
mod database_faults;
mod deployment;
mod direct;
mod document_bounds;
mod graphql_http;
mod helpers;
mod http;
mod idempotency;
mod js_clients;
mod limits;
mod list;
mod live;
mod live_load;
mod live_postgres;
mod live_scale;
mod logging;
mod metrics_access;
mod migrations;
mod mutations;
mod observability;
mod outside_writers;
mod persisted;
mod pooler;
mod provider_tokens;
mod read_only;
mod read_path;
mod relay;
mod replicas;
mod resilience;
mod response_shape;
mod schema;
mod seed;
mod statements;
mod storage_faults;
mod telemetry_faults;
mod webhooks;
mod ws_client;
mod ws_close;
mod ws_operations;
