//! The bearer token as an axum extractor: a handler that takes a
//! [`Session`] runs only for a verified token; any other request is answered
//! 401 with `extensions.reason`, before its body is read.

use axum::{
    extract::FromRequestParts,
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};

use super::AppState;
use crate::{auth::Session, error::ApiError, telemetry::Refusal};

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        state.keys.authenticate(&parts.headers).await.map_err(|err| {
            state.metrics.refused(match err {
                ApiError::KeysUnavailable => Refusal::KeysUnavailable,
                _ => Refusal::Unauthenticated,
            });
            refusal(&err)
        })
    }
}

/// 401 with `WWW-Authenticate: Bearer` and the refusal as a GraphQL error;
/// 503 with `Retry-After` while no token can be verified at all.
fn refusal(err: &ApiError) -> Response {
    use async_graphql::ErrorExtensions;
    let extensions = serde_json::to_value(err.extend().extensions).unwrap_or_default();
    let body = super::error_body(&err.to_string(), extensions);
    let (status, challenge) = match err {
        ApiError::KeysUnavailable => (StatusCode::SERVICE_UNAVAILABLE, (header::RETRY_AFTER, "5")),
        _ => (StatusCode::UNAUTHORIZED, (header::WWW_AUTHENTICATE, "Bearer")),
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(challenge.0, HeaderValue::from_static(challenge.1));
    response
}
