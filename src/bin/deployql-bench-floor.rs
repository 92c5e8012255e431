//! The benchmark's floor: the least a server can do to answer the status
//! lookup. One axum route verifies the bearer token, takes the `id`
//! variable from the JSON body, runs the very statement deployql's planner
//! builds for the full status query, wrapped so that Postgres renders the
//! whole row as JSON, and returns that JSON as is. No GraphQL, no limits,
//! no response shaping: `bench/run` (`FLOOR=1`) measures deployql against it.
//!
//! `deployql-bench-floor --database-url postgres://... --jwt-secret ... --listen-addr 127.0.0.1:8101`

use std::net::SocketAddr;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use clap::Parser;
use deployql::{
    auth::JwtKeys,
    config::JwtSecret,
    db,
    ids::DeploymentId,
    service::{deployments, plan::Plan},
};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, env)]
    database_url: String,
    #[arg(long, env, value_parser = JwtSecret::parse)]
    jwt_secret: JwtSecret,
    #[arg(long, env, default_value = "127.0.0.1:8101")]
    listen_addr: SocketAddr,
    #[arg(long, env, default_value_t = 10)]
    db_max_connections: u32,
}

#[derive(Debug, Clone)]
struct Floor {
    db: DatabaseConnection,
    keys: std::sync::Arc<JwtKeys>,
}

#[derive(Debug, Deserialize)]
struct Body {
    variables: Variables,
}

#[derive(Debug, Deserialize)]
struct Variables {
    id: Uuid,
}

/// The status query's plan: counts, replicas, resources, ten history rows.
fn status_plan() -> Plan {
    Plan { counts: true, replicas: true, resources: true, history_limits: vec![10] }
}

async fn status(State(floor): State<Floor>, headers: HeaderMap, body: String) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    let Some(Ok(session)) = (match authorization {
        Some(value) => Some(floor.keys.verify_authorization(value).await),
        None => None,
    }) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Ok(body) = serde_json::from_str::<Body>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let backend = floor.db.get_database_backend();
    let planned = deployments::find_each_statement(
        backend,
        session.user,
        &[DeploymentId(body.variables.id)],
        &status_plan(),
    );
    let statement = Statement::from_sql_and_values(
        backend,
        format!("SELECT row_to_json(q)::text FROM ({}) q", planned.sql),
        planned.values.map(|values| values.0).unwrap_or_default(),
    );
    // In a task of its own (see the raw floor): a cancelled statement
    // would close its connection.
    let db = floor.db.clone();
    let found = tokio::spawn(async move { db.query_one_raw(statement).await })
        .await
        .unwrap_or_else(|err| Err(sea_orm::DbErr::Custom(err.to_string())));
    match found {
        Ok(row) => {
            let json = row.and_then(|row| row.try_get_by_index::<String>(0).ok());
            let body =
                format!(r#"{{"data":{{"deployment":{}}}}}"#, json.as_deref().unwrap_or("null"));
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let db = db::connect(&args.database_url, args.db_max_connections).await?;
    let floor = Floor { db, keys: JwtKeys::new(&args.jwt_secret).into() };
    let app = Router::new().route("/graphql", post(status)).with_state(floor);
    let listener = tokio::net::TcpListener::bind(args.listen_addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
