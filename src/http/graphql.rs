//! GraphQL over HTTP, as graphql.github.io/graphql-over-http specifies it:
//! POST with a JSON body (one operation, or a batch as a JSON array), GET
//! with URL parameters for queries only, and the response in the media type
//! the client accepts. With `application/graphql-response+json`, a request
//! that fails before execution (parse, validation, variables) is a 400.

use async_graphql::{BatchRequest, BatchResponse, Value};
use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{Html, IntoResponse, Response},
};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::json;

use super::{AppState, database_health::Outcome, media::MediaType, request, slots::Refusal};
use crate::{
    auth::Session,
    config::Limits,
    engine::{self, Answer, SessionExecutor},
    error::{StorageFault, codes},
    idempotency::{self, IdempotencyKey},
    persisted,
    telemetry::Refusal as Counted,
};

/// GET /graphql: a query from URL parameters, or GraphiQL for a browser.
pub(super) async fn get(
    State(state): State<AppState>,
    session: Result<Session, Response>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let parameters = uri.query().unwrap_or("");
    if !request::is_request(parameters) {
        if accepts_html(&headers) {
            let Some(graphiql) = &state.graphiql else {
                let message = "GraphiQL is off: this server runs only its trusted documents \
                               (TRUSTED_DOCUMENTS_ONLY) without ALLOW_INTROSPECTION";
                return error(StatusCode::NOT_FOUND, codes::BAD_REQUEST, message);
            };
            let policy = [
                (header::CONTENT_SECURITY_POLICY, super::graphiql::CONTENT_SECURITY_POLICY),
                // It may hold the dev token.
                (header::CACHE_CONTROL, "no-store"),
            ];
            return (policy, Html(graphiql.to_string())).into_response();
        }
        let message = "GET /graphql needs a `query` (or `documentId`) parameter (browsers asking \
                       for HTML get GraphiQL)";
        return error(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message);
    }
    let Some(media) = MediaType::negotiate(&headers) else { return not_acceptable() };
    let session = match session {
        Ok(session) => session,
        Err(unauthorized) => return unauthorized,
    };
    let request = match request::from_parameters(parameters) {
        Ok(request) => request,
        Err(err) => {
            let message = format!("the URL parameters are not a GraphQL request: {err}");
            return error(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, &message);
        }
    };
    execute(&state, session, BatchRequest::Single(request), media, Method::Get).await
}

/// POST /graphql: one operation, or a batch of at most `Limits::batch`.
///
/// The session is extracted before the body: an anonymous client gets its
/// 401 without the server waiting for anything.
pub(super) async fn post(
    State(state): State<AppState>,
    session: Session,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    if !is_json(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::UNSUPPORTED_MEDIA_TYPE,
            "send the request as `Content-Type: application/json`",
        );
    }
    let Some(media) = MediaType::negotiate(&headers) else { return not_acceptable() };
    let max_body = state.limits.body_bytes;
    let body = match axum::body::to_bytes(body, max_body).await {
        Ok(body) => body,
        Err(err) if caused_by::<http_body_util::LengthLimitError>(&err) => {
            state.metrics.refused(Counted::BodyTooLarge);
            let message = format!("request body is larger than {max_body} bytes");
            return error(StatusCode::PAYLOAD_TOO_LARGE, codes::PAYLOAD_TOO_LARGE, &message);
        }
        Err(err) if caused_by::<tower_http::timeout::TimeoutError>(&err) => {
            state.metrics.refused(Counted::BodyReadTimeout);
            let message = "the request body did not arrive in time";
            return error(StatusCode::REQUEST_TIMEOUT, codes::REQUEST_TIMEOUT, message);
        }
        Err(_) => {
            let message = "the request body could not be read";
            return error(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message);
        }
    };
    let batch = match parse_batch(&body) {
        Ok(batch) => batch,
        Err(err) => {
            let message = format!("request body is not a GraphQL request: {err}");
            return error(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, &message);
        }
    };
    let batch = match with_idempotency_key(batch, &headers) {
        Ok(batch) => batch,
        Err(message) => return error(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, &message),
    };
    if let BatchRequest::Batch(requests) = &batch {
        let max_batch = state.limits.batch;
        if requests.len() > max_batch {
            state.metrics.refused(Counted::BatchTooLarge);
            let message =
                format!("a batch may hold at most {max_batch} operations, got {}", requests.len());
            return error(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, &message);
        }
    }
    execute(&state, session, batch, media, Method::Post).await
}

/// `batch` with the `Idempotency-Key` header's key in its operation's
/// `extensions` (where every transport's key goes). A batch takes no header:
/// each operation gives its own key in its `extensions`.
fn with_idempotency_key(batch: BatchRequest, headers: &HeaderMap) -> Result<BatchRequest, String> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(batch) };
    let BatchRequest::Single(mut request) = batch else {
        return Err("a batch takes no Idempotency-Key header: give each operation its own key \
                    in its extensions.idempotencyKey"
            .to_owned());
    };
    let key = IdempotencyKey::from_header(value.as_bytes())?;
    request
        .extensions
        .insert(idempotency::EXTENSION.to_owned(), Value::String(key.as_str().to_owned()));
    Ok(BatchRequest::Single(request))
}

const IDEMPOTENCY_KEY: header::HeaderName = header::HeaderName::from_static("idempotency-key");

/// The method a request came with: GET runs queries only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// A request body: one request (an object) or a batch (an array). Parsed
/// as the one it is rather than as async-graphql's untagged `BatchRequest`,
/// which buffers the whole body into an intermediate tree to try each in
/// turn; and an error then says what is wrong rather than "did not match
/// any variant".
fn parse_batch(body: &[u8]) -> serde_json::Result<BatchRequest> {
    match body.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'[') => match serde_json::from_slice::<Vec<request::Posted>>(body)? {
            requests if requests.is_empty() => {
                Err(serde::de::Error::invalid_length(0, &"a non-empty sequence of requests"))
            }
            requests => Ok(BatchRequest::Batch(requests.into_iter().map(Into::into).collect())),
        },
        _ => serde_json::from_slice::<request::Posted>(body)
            .map(|request| BatchRequest::Single(request.into())),
    }
}

/// A batch's totals: each operation is bounded alone when it runs, but ten
/// operations just under the bounds must not add up to ten times the work.
fn within_limits(requests: &mut [async_graphql::Request], limits: &Limits) -> Result<(), String> {
    let costs: Vec<engine::Cost> = requests.iter_mut().map(engine::cost).collect();
    let statements: u64 = costs.iter().map(|cost| cost.statements).sum();
    if statements > limits.statements_per_request {
        return Err(format!(
            "the batch would run {statements} SQL statements in total, at most {}",
            limits.statements_per_request
        ));
    }
    let introspecting = costs.iter().filter(|cost| cost.introspects).count() as u64;
    if introspecting > limits.introspections {
        return Err(format!(
            "{introspecting} operations of the batch read `__schema` or `__type`, at most {}",
            limits.introspections
        ));
    }
    Ok(())
}

async fn execute(
    state: &AppState,
    session: Session,
    batch: BatchRequest,
    media: MediaType,
    method: Method,
) -> Response {
    // A slot only now: the request is authenticated and read, so waiting
    // clients hold nothing but their socket. REQUEST_TIMEOUT counts from here.
    let admitted = std::time::Instant::now();
    let _slot = match state.slots.acquire(session.user.0).await {
        Ok(slot) => slot,
        Err(refusal) => return refused(refusal),
    };
    let executor = state.executor(session).admitted_at(admitted);
    let answered = match batch {
        BatchRequest::Single(mut request) => {
            if let Err(refusal) = state.persisted.resolve(&mut request).await {
                return persisted_refusal(&refusal, media);
            }
            if method == Method::Get && !state.documents.is_query(&mut request) {
                return only_queries_with_get();
            }
            match executor.answer(request).await {
                Answer::Written(body) => {
                    state.database.record(Outcome::Answered, &state.db);
                    Ok((StatusCode::OK, body, false))
                }
                Answer::Replayed(body) => Ok((StatusCode::OK, body, true)),
                Answer::Response(response) => Err(BatchResponse::Single(response)),
            }
        }
        BatchRequest::Batch(requests) => match answer_batch(state, &executor, requests).await {
            Ok(responses) => Err(BatchResponse::Batch(responses)),
            Err(refused) => return refused,
        },
    };
    let mut replayed = false;
    let (status, body) = match answered {
        Ok((status, body, replay)) => {
            replayed = replay;
            (status, Ok(body))
        }
        Err(BatchResponse::Single(response)) => {
            let body = Body::of(&response);
            state.database.record(body.database, &state.db);
            let produced_nothing = match &response.data {
                Value::Object(fields) => fields.values().all(|value| *value == Value::Null),
                other => *other == Value::Null,
            };
            let status = if body.database != Outcome::Answered && produced_nothing {
                // Nothing came of it, and a retry may well succeed.
                StatusCode::SERVICE_UNAVAILABLE
            } else if let Some(status) =
                body.request_error.then(|| refusal_status(&response)).flatten()
            {
                status
            } else if body.request_error && media == MediaType::GraphQLResponse {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            (status, serde_json::to_vec(&body))
        }
        Err(BatchResponse::Batch(responses)) => {
            let bodies: Vec<Body<'_>> = responses.iter().map(Body::of).collect();
            let database = bodies
                .iter()
                .map(|body| body.database)
                .find(|outcome| *outcome != Outcome::Answered);
            state.database.record(database.unwrap_or(Outcome::Answered), &state.db);
            (StatusCode::OK, serde_json::to_vec(&bodies))
        }
    };
    match body {
        Ok(body) => {
            let headers = [
                (header::CONTENT_TYPE, media.content_type()),
                // Every answer is one user's: no shared cache may keep it.
                (header::CACHE_CONTROL, HeaderValue::from_static("private, no-store")),
            ];
            let mut response = (status, headers, body).into_response();
            if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::CONFLICT {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            if replayed {
                response
                    .headers_mut()
                    .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            }
            response
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot serialize a GraphQL response");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "internal server error",
            )
        }
    }
}

/// A batch's answers, each operation's document resolved first (one that
/// cannot be is answered with why), or the batch's refusal when its
/// operations together pass the limits.
async fn answer_batch(
    state: &AppState,
    executor: &SessionExecutor,
    requests: Vec<async_graphql::Request>,
) -> Result<Vec<async_graphql::Response>, Response> {
    let mut resolved = Vec::with_capacity(requests.len());
    let mut refusals = Vec::with_capacity(requests.len());
    for mut request in requests {
        refusals.push(state.persisted.resolve(&mut request).await.err());
        resolved.push(request);
    }
    if let Err(message) = within_limits(&mut resolved, &state.limits) {
        state.metrics.refused(Counted::QueryTooComplex);
        return Err(error(StatusCode::BAD_REQUEST, codes::QUERY_TOO_COMPLEX, &message));
    }
    let responses = resolved.into_iter().zip(refusals).map(|(request, refusal)| async move {
        match refusal {
            Some(refusal) => async_graphql::Response::from_errors(vec![refusal.to_server_error()]),
            None => async_graphql::Executor::execute(executor, request).await,
        }
    });
    Ok(futures_util::future::join_all(responses).await)
}

/// Says a mutation's answer was recorded before and is replayed.
const IDEMPOTENT_REPLAYED: header::HeaderName =
    header::HeaderName::from_static("idempotent-replayed");

/// The HTTP status of a refusal whose code has one of its own, whatever the
/// media type: idempotency keys in use (409), reused (422), required or
/// malformed (400).
fn refusal_status(response: &async_graphql::Response) -> Option<StatusCode> {
    let error = response.errors.first()?;
    let Some(Value::String(code)) = error.extensions.as_ref()?.get("code") else { return None };
    Some(match code.as_str() {
        codes::IDEMPOTENCY_KEY_IN_USE => StatusCode::CONFLICT,
        codes::IDEMPOTENCY_KEY_REUSED => StatusCode::UNPROCESSABLE_ENTITY,
        codes::IDEMPOTENCY_KEY_REQUIRED | codes::BAD_REQUEST => StatusCode::BAD_REQUEST,
        _ => return None,
    })
}

/// One GraphQL response as the spec shapes it: a request error has no `data`.
struct Body<'a> {
    response: &'a async_graphql::Response,
    request_error: bool,
    /// What the errors say of the database: unavailable, or not taking writes.
    database: Outcome,
}

impl<'a> Body<'a> {
    fn of(response: &'a async_graphql::Response) -> Self {
        let code =
            |err: &'a async_graphql::ServerError| match err.extensions.as_ref()?.get("code")? {
                Value::String(code) => Some(code.as_str()),
                _ => None,
            };
        let request_error = response.data == Value::Null
            && !response.errors.is_empty()
            && response.errors.iter().all(|err| {
                err.path.is_empty() && code(err).is_some_and(|c| codes::REQUEST_ERRORS.contains(&c))
            });
        let reason =
            |err: &'a async_graphql::ServerError| match err.extensions.as_ref()?.get("reason")? {
                Value::String(reason) => StorageFault::from_reason(reason),
                _ => None,
            };
        let database = response
            .errors
            .iter()
            .find(|err| code(err) == Some(codes::SERVICE_UNAVAILABLE))
            .map_or(Outcome::Answered, |err| {
                reason(err).map_or(Outcome::Unavailable, Outcome::Storage)
            });
        Self { response, request_error, database }
    }
}

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let response = self.response;
        let mut map = serializer.serialize_map(None)?;
        if !self.request_error {
            map.serialize_entry("data", &response.data)?;
        }
        if !response.errors.is_empty() {
            map.serialize_entry("errors", &response.errors)?;
        }
        if !response.extensions.is_empty() {
            map.serialize_entry("extensions", &response.extensions)?;
        }
        map.end()
    }
}

/// A browser navigating to the page (its Accept lists text/html).
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.to_ascii_lowercase().contains("text/html"))
}

/// `Content-Type: application/json`, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether `E` is among the causes of `err` (the body's errors come wrapped).
fn caused_by<E: std::error::Error + 'static>(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(error) = source {
        if error.is::<E>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// A request whose persisted document cannot run: a miss is a request
/// error like any (400 with graphql-response+json, 200 with plain JSON, as
/// Apollo Client reads either); the others are 400, whatever the client
/// accepts.
fn persisted_refusal(refusal: &persisted::Refusal, media: MediaType) -> Response {
    let status = if !refusal.is_miss() || media == MediaType::GraphQLResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = error(status, refusal.code(), &refusal.message());
    response.headers_mut().insert(header::CONTENT_TYPE, media.content_type());
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    response
}

fn only_queries_with_get() -> Response {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "only queries may be sent with GET; send mutations and subscriptions with POST",
    );
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// No slot: a retryable refusal, with `Retry-After`.
fn refused(refusal: Refusal) -> Response {
    let mut response = match refusal {
        Refusal::UserBusy => error(
            StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            "too many of your requests are running at once; retry shortly",
        ),
        Refusal::Busy => error(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::SERVICE_UNAVAILABLE,
            "the server is busy; retry shortly",
        ),
    };
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn not_acceptable() -> Response {
    error(
        StatusCode::NOT_ACCEPTABLE,
        codes::NOT_ACCEPTABLE,
        "responses are application/graphql-response+json or application/json",
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = super::error_body(message, json!({ "code": code }));
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_one_request_or_a_non_empty_batch() {
        let single = parse_batch(br#" {"query":"{ a }","variables":{"id":"x"}}"#);
        assert!(matches!(single, Ok(BatchRequest::Single(request)) if request.query == "{ a }"));
        let batch = parse_batch(b"\n [{\"query\":\"{ a }\"},{\"query\":\"{ b }\"}]");
        assert!(matches!(batch, Ok(BatchRequest::Batch(requests)) if requests.len() == 2));
        for refused in [&b"[]"[..], b"  [ ]", b"\"{ a }\"", b"{\"query\":1}", b"", b"nope"] {
            assert!(parse_batch(refused).is_err(), "{}", String::from_utf8_lossy(refused));
        }
    }
}
