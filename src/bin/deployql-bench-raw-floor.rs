//! The benchmark's raw floor: the status lookup as a hand-written server
//! would answer it, with nothing of deployql's. One axum route checks the
//! HS256 bearer token with `jsonwebtoken`, and runs one hand-written
//! statement through sqlx (no ORM, no planner, no GraphQL) in which
//! Postgres builds the whole answer with `json_build_object` and
//! `json_agg`, returned as is. `bench/run` (`FLOOR=1`) measures deployql
//! against it beside `deployql-bench-floor`, which runs deployql's own
//! statement.
//!
//! `deployql-bench-raw-floor --database-url postgres://... --jwt-secret ... --listen-addr 127.0.0.1:8105`

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use clap::Parser;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sea_orm::sqlx::{self, PgPool, postgres::PgPoolOptions};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, env)]
    database_url: String,
    #[arg(long, env)]
    jwt_secret: String,
    #[arg(long, env, default_value = "127.0.0.1:8105")]
    listen_addr: SocketAddr,
    #[arg(long, env, default_value_t = 10)]
    db_max_connections: u32,
}

#[derive(Clone)]
struct Raw {
    pool: PgPool,
    key: Arc<DecodingKey>,
    validation: Arc<Validation>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Uuid,
}

#[derive(Debug, Deserialize)]
struct Body {
    variables: Variables,
}

#[derive(Debug, Deserialize)]
struct Variables {
    id: Uuid,
}

/// The full status lookup of `bench/workload.lua`, answered by Postgres:
/// the deployment's columns, its health and replica counts from one pass
/// over its replicas, the replicas, the resources and the last ten status
/// changes, as one JSON text.
const STATUS: &str = r#"
SELECT json_build_object('data', json_build_object('deployment', json_build_object(
    'id', d.id,
    'name', d.name,
    'status', upper(d.status),
    'health', CASE
        WHEN c.total = 0 OR c.running = 0 THEN 'UNHEALTHY'
        WHEN c.failed > 0 OR c.running < d.target_replicas THEN 'DEGRADED'
        ELSE 'HEALTHY' END,
    'targetReplicas', d.target_replicas,
    'replicaCounts', json_build_object('total', c.total, 'running', c.running, 'failed', c.failed),
    'replicas', c.replicas,
    'resources', (
        SELECT json_build_object('cpuCores', x.cpu_cores, 'memoryMb', x.memory_mb,
                                 'gpuUnits', x.gpu_units, 'storageGb', x.storage_gb)
        FROM deployment_resources x WHERE x.deployment_id = d.id LIMIT 1),
    'statusHistory', COALESCE((
        SELECT json_agg(json_build_object('oldStatus', upper(h.old_status),
                                          'newStatus', upper(h.new_status),
                                          'changedAt', h.changed_at, 'reason', h.reason))
        FROM (SELECT * FROM deployment_status_history
              WHERE deployment_id = d.id ORDER BY changed_at DESC, id DESC LIMIT 10) h),
        '[]'::json)
)))::text
FROM deployments d
CROSS JOIN LATERAL (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE r.status = 'running') AS running,
           count(*) FILTER (WHERE r.status = 'failed') AS failed,
           COALESCE(json_agg(json_build_object('id', r.id, 'status', upper(r.status),
                                               'nodeId', r.node_id, 'containerId', r.container_id,
                                               'startedAt', r.started_at)
                             ORDER BY r.started_at, r.id), '[]'::json) AS replicas
    FROM deployment_replicas r WHERE r.deployment_id = d.id) c
WHERE d.id = $1 AND d.user_id = $2 AND d.deleted_at IS NULL
"#;

async fn status(State(raw): State<Raw>, headers: HeaderMap, body: String) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let Some(Ok(claims)) =
        token.map(|token| jsonwebtoken::decode::<Claims>(token, &raw.key, &raw.validation))
    else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Ok(body) = serde_json::from_str::<Body>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    // In a task of its own: a client that goes away mid-statement (wrk at
    // the end of a run) would otherwise cancel it, and sqlx closes a
    // connection left mid-statement, whose backend's CPU then escapes
    // `bench/run`'s count (deployql's connections were never lost so).
    let pool = raw.pool.clone();
    let found = tokio::spawn(async move {
        sqlx::query_scalar::<_, String>(STATUS)
            .bind(body.variables.id)
            .bind(claims.claims.sub)
            .fetch_optional(&pool)
            .await
    })
    .await
    .unwrap_or_else(|err| Err(sqlx::Error::Protocol(err.to_string())));
    match found {
        Ok(Some(json)) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Ok(None) => {
            ([(header::CONTENT_TYPE, "application/json")], r#"{"data":{"deployment":null}}"#)
                .into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let pool = PgPoolOptions::new()
        .max_connections(args.db_max_connections)
        .min_connections(args.db_max_connections)
        .connect(&args.database_url)
        .await?;
    let raw = Raw {
        pool,
        key: Arc::new(DecodingKey::from_secret(args.jwt_secret.as_bytes())),
        validation: Arc::new(Validation::new(Algorithm::HS256)),
    };
    let app = Router::new().route("/graphql", post(status)).with_state(raw);
    let listener = tokio::net::TcpListener::bind(args.listen_addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
