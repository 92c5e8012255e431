//! What every HTTP request leaves behind: an id (echoed in `x-request-id`),
//! a span carrying it (so each log line of the request, and its trace, have
//! it; a W3C `traceparent` makes the span a child of the caller's), and its
//! count and latency by route and status.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::HeaderName,
    middleware::Next,
    response::Response,
};
use metrics::SharedString;
use opentelemetry_http::HeaderExtractor;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::AppState;
use crate::telemetry::{self, RequestFields, RequestId, request_id};

pub(super) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = RequestId::from_client(request.headers().get(request_id::HEADER));
    let route = route(request.extensions().get::<MatchedPath>());
    let method = request.method().clone();
    let logged = RequestFields::new(id.clone(), method.clone(), route.clone());
    let span = logged.span();
    // What only a trace shows is left out of the log lines when traces are off.
    if let Some(span) = &span
        && telemetry::exporting_spans()
    {
        span.record("otel.name", format_args!("{method} {route}"));
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(request.headers()))
        });
        // A sampler may still have dropped the span: nothing to attach it to.
        let _ = span.set_parent(parent);
    }
    let mut response = id.clone().scope(logged.run(span.as_ref(), next.run(request))).await;
    let status = response.status();
    if let Some(span) = &span {
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
    if let Some(value) = id.header_value() {
        response.headers_mut().insert(HeaderName::from_static(request_id::HEADER), value);
    }
    state.metrics.http_request(route, status.as_u16(), started.elapsed());
    response
}

/// The route's path pattern: a fixed set, so the label cannot grow.
fn route(matched: Option<&MatchedPath>) -> SharedString {
    let path = matched.map_or("unmatched", MatchedPath::as_str);
    match path {
        "/graphql" => SharedString::const_str("/graphql"),
        "/graphql/ws" => SharedString::const_str("/graphql/ws"),
        "/healthz" => SharedString::const_str("/healthz"),
        "/readyz" => SharedString::const_str("/readyz"),
        "/metrics" => SharedString::const_str("/metrics"),
        _ => SharedString::const_str("unmatched"),
    }
}
