//! `/metrics`: every series in the Prometheus text format, on the API's
//! listener for those [`MetricsAccess`] lets in, or alone on a listener of
//! its own (METRICS_ADDR).

use std::sync::atomic::Ordering;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use super::AppState;
use crate::config::MetricsToken;

/// Who may read `/metrics` on the API's listener. It names every operation
/// the frontends use and the traffic of each: not for the public internet.
#[derive(Debug, Clone)]
pub enum MetricsAccess {
    /// Anyone who reaches the port (dev mode; the separate metrics listener).
    Open,
    /// Requests with `Authorization: Bearer <token>`.
    Token(MetricsToken),
    /// Nobody: 404, as if there were no such route.
    Hidden,
}

/// `/metrics` alone, open to whoever reaches it: for METRICS_ADDR, a
/// listener of its own that only the cluster's Prometheus can reach.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

/// `/metrics` on the API's listener, to those [`MetricsAccess`] lets in.
pub(super) async fn guarded(state: State<AppState>, headers: HeaderMap) -> Response {
    match &state.metrics_access {
        MetricsAccess::Open => metrics(state).await,
        MetricsAccess::Hidden => StatusCode::NOT_FOUND.into_response(),
        MetricsAccess::Token(token) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| crate::auth::bearer_token(value).ok());
            if presented.is_some_and(|presented| token.matches(presented.as_bytes())) {
                metrics(state).await
            } else {
                let challenge = [(header::WWW_AUTHENTICATE, r#"Bearer realm="metrics""#)];
                (
                    StatusCode::UNAUTHORIZED,
                    challenge,
                    "/metrics needs METRICS_TOKEN as a bearer token",
                )
                    .into_response()
            }
        }
    }
}

/// Every metric in the Prometheus text format; gauges are read now.
async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(|| {
        use metrics::{counter, gauge};
        counter!("deployql_database_unavailable_total")
            .absolute(state.database.failures.load(Ordering::Relaxed));
        for (fault, count) in crate::error::StorageFault::ALL.iter().zip(&state.database.faults) {
            counter!("deployql_database_storage_faults_total", "reason" => fault.reason())
                .absolute(count.load(Ordering::Relaxed));
        }
        gauge!("deployql_requests_waiting").set(state.slots.waiting() as f64);
        gauge!("deployql_requests_in_flight").set(state.slots.running() as f64);
        let (in_use, idle, max) = state.db.pool_connections();
        gauge!("deployql_db_pool_connections", "state" => "in_use").set(f64::from(in_use));
        gauge!("deployql_db_pool_connections", "state" => "idle").set(f64::from(idle));
        gauge!("deployql_db_pool_max_connections").set(f64::from(max));
        let router = state.feed.router();
        gauge!("deployql_live_subscriptions").set(router.subscriptions() as f64);
        gauge!("deployql_live_groups").set(router.groups() as f64);
        counter!("deployql_live_refetches_total").absolute(router.refetches());
        let feed = state.feed.counts();
        counter!("deployql_live_changes_total").absolute(feed.changes);
        counter!("deployql_live_reader_restarts_total").absolute(feed.restarts);
        counter!("deployql_live_log_reads_total").absolute(feed.reads);
        if let Some(jwks) = state.keys.jwks_source() {
            let (fetches, failures) = jwks.fetch_counts();
            counter!("deployql_jwks_fetches_total").absolute(fetches);
            counter!("deployql_jwks_fetch_failures_total").absolute(failures);
        }
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
