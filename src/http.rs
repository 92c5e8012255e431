//! HTTP routes: GraphQL over POST, GraphiQL over GET, liveness and readiness.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_graphql::{BatchRequest, http::GraphiQLSource};
use async_graphql_axum::GraphQLResponse;
use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use sea_orm::{DatabaseConnection, DbBackend};
use serde_json::json;
use tokio::net::TcpListener;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::{auth::JwtKeys, db::StatementCounter, error::ApiError, graphql, live::ChangeFeed, ws};

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most operations in one JSON-array batch.
pub const MAX_BATCH: usize = 10;

/// GraphQL requests executed at once unless configured otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub schema: graphql::AppSchema,
    pub db: DatabaseConnection,
    pub keys: Arc<JwtKeys>,
    graphiql: Arc<str>,
    statements: StatementCounter,
    operations: Arc<AtomicU64>,
    max_in_flight: usize,
    pub feed: ChangeFeed,
}

impl AppState {
    /// `graphiql_token`, when given, is pre-filled in GraphiQL's headers (dev mode).
    /// `statements` is the counter installed on `db`, reported by `/metrics`.
    pub fn new(
        db: DatabaseConnection,
        keys: JwtKeys,
        graphiql_token: Option<&str>,
        statements: StatementCounter,
    ) -> Self {
        let authorization = graphiql_token.map(|token| format!("Bearer {token}"));
        let mut graphiql = GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("deployql");
        if let Some(value) = &authorization {
            graphiql =
                graphiql.header("Authorization", value).ws_connection_param("authorization", value);
        }
        Self {
            schema: graphql::build_schema(),
            // Postgres triggers report changes (see `live::listener`); SQLite
            // has only this process as a writer, so its mutations publish.
            feed: ChangeFeed::new(db.get_database_backend() != DbBackend::Postgres),
            db,
            keys: Arc::new(keys),
            graphiql: graphiql.finish().into(),
            statements,
            operations: Arc::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// Sets how many GraphQL requests execute at once (at least 1).
    #[must_use]
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight.max(1);
        self
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/graphql",
            // Beyond the limit, requests wait before their body is read: they
            // would only queue for a database connection while holding memory.
            get(graphiql)
                .post(graphql)
                .layer(GlobalConcurrencyLimitLayer::new(state.max_in_flight)),
        )
        .route("/graphql/ws", get(ws::subscriptions))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // Applies to the body however it arrives, with or without Content-Length.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

async fn graphql(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let user = match state.keys.authenticate(&headers) {
        Ok(user) => user,
        Err(err) => return unauthorized(&err),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("request body is larger than {MAX_BODY_BYTES} bytes");
            return error_response(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", &message);
        }
        Err(rejection) => {
            return error_response(rejection.status(), "BAD_REQUEST", &rejection.body_text());
        }
    };
    let batch: BatchRequest = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(err) => {
            let message = format!("request body is not a GraphQL request: {err}");
            return error_response(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message);
        }
    };
    let batch = match batch {
        BatchRequest::Single(request) => {
            BatchRequest::Single(graphql::for_user(request, &state.db, &state.feed, user))
        }
        BatchRequest::Batch(requests) if requests.len() > MAX_BATCH => {
            let message =
                format!("a batch may hold at most {MAX_BATCH} operations, got {}", requests.len());
            return error_response(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message);
        }
        BatchRequest::Batch(requests) => BatchRequest::Batch(
            requests
                .into_iter()
                .map(|request| graphql::for_user(request, &state.db, &state.feed, user))
                .collect(),
        ),
    };
    let operations = match &batch {
        BatchRequest::Single(_) => 1,
        BatchRequest::Batch(requests) => requests.len() as u64,
    };
    state.operations.fetch_add(operations, Ordering::Relaxed);
    GraphQLResponse::from(state.schema.execute_batch(batch).await).into_response()
}

async fn graphiql(State(state): State<AppState>) -> Html<String> {
    Html(state.graphiql.to_string())
}

/// Alive: answers without touching the database.
async fn healthz() -> &'static str {
    "ok"
}

/// Ready: 200 only while the database answers.
async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database timed out").into_response(),
    }
}

/// Counters in the Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    let body = format!(
        "# HELP deployql_sql_statements_total SQL statements run on the database.\n\
         # TYPE deployql_sql_statements_total counter\n\
         deployql_sql_statements_total {}\n\
         # HELP deployql_graphql_operations_total Authenticated GraphQL operations executed.\n\
         # TYPE deployql_graphql_operations_total counter\n\
         deployql_graphql_operations_total {}\n",
        state.statements.get(),
        state.operations.load(Ordering::Relaxed)
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

fn unauthorized(err: &ApiError) -> Response {
    let mut response = error_response(StatusCode::UNAUTHORIZED, err.code(), &err.to_string());
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, Json(body)).into_response()
}
