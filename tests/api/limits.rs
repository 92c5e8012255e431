//! Abusive documents are refused before any SQL runs.

use std::time::{Duration, Instant};

use axum::{body::Body, http::StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, error_code};

fn bearer(app: &TestApp) -> String {
    format!("Bearer {}", app.token(Uuid::new_v4()))
}

fn statement_count(app: &TestApp) -> usize {
    app.statements.lock().expect("log").len()
}

#[tokio::test]
async fn two_thousand_aliased_lookups_are_refused_within_a_second() {
    let app = TestApp::sqlite().await;
    let fields: String = (0..2000)
        .map(|n| format!("d{n}: deployment(id: \"{}\") {{ id }} ", Uuid::new_v4()))
        .collect();
    let before = statement_count(&app);
    let started = Instant::now();
    let body = app.gql(Uuid::new_v4(), &format!("{{ {fields} }}"), json!({})).await;
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    assert!(body["data"].is_null(), "{}", &body.to_string()[..200]);
    assert!(
        body["errors"][0]["message"].as_str().unwrap().contains("too complex"),
        "{}",
        body["errors"][0]
    );
    assert_eq!(statement_count(&app), before, "no SQL for a refused document");
}

#[tokio::test]
async fn list_cost_scales_with_page_size_and_history_limit() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let heavy = "{ deployments(first: 100) { nodes { statusHistory(limit: 100) { reason } } } }";
    let body = app.gql(user, heavy, json!({})).await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("too complex"), "{body}");
    let fine = "{ deployments(first: 50) { nodes { statusHistory(limit: 10) { reason } } } }";
    let body = app.gql(user, fine, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn overly_deep_documents_are_refused() {
    let app = TestApp::sqlite().await;
    // Ordinary fields: 13 levels, refused before validation looks at them.
    let deep = format!("{{ {} x {} }}", "a { ".repeat(12), "}".repeat(12));
    let body = app.gql(Uuid::new_v4(), &deep, json!({})).await;
    assert_eq!(error_code(&body), Some("QUERY_TOO_DEEP"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("nested too deep"), "{body}");

    // Introspection has room for graphql-js' query, not for towers past it.
    let tower = |levels: usize| {
        format!(
            "{{ __schema {{ types {{ fields {{ type {} {{ name }} {} }} }} }} }}",
            "{ ofType ".repeat(levels),
            "}".repeat(levels)
        )
    };
    let body = app.gql(Uuid::new_v4(), &tower(20), json!({})).await;
    assert_eq!(error_code(&body), Some("QUERY_TOO_DEEP"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("25 levels"), "{body}");
    // Past the parser's own bound: the same code.
    let body = app.gql(Uuid::new_v4(), &tower(40), json!({})).await;
    assert_eq!(error_code(&body), Some("QUERY_TOO_DEEP"), "{body}");
    let body = app.gql(Uuid::new_v4(), &tower(12), json!({})).await;
    assert!(body["errors"].is_null(), "17 levels of introspection pass: {body}");
}

#[tokio::test]
async fn repeated_directives_are_refused() {
    let app = TestApp::sqlite().await;
    let before = statement_count(&app);
    let query = format!("{{ deployments {} {{ totalCount }} }}", "@include(if: true) ".repeat(20));
    let body = app.gql(Uuid::new_v4(), &query, json!({})).await;
    assert!(body["data"].is_null() && body["errors"].is_array(), "{body}");
    assert_eq!(statement_count(&app), before);
}

#[tokio::test]
async fn bodies_over_one_mebibyte_get_413_with_or_without_content_length() {
    let app = TestApp::sqlite().await;
    let padding = " ".repeat(1024 * 1024 + 1);
    let big = format!("{{\"query\":\"{{ deployments {{ totalCount }} }}{padding}\"}}");
    let (status, _, _) = app.post(Some(&bearer(&app)), Body::from(big.clone())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Streamed in chunks, so no Content-Length announces the size.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
        .collect();
    let streamed = Body::from_stream(futures_util::stream::iter(chunks));
    let (status, _, body) = app.post(Some(&bearer(&app)), streamed).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
}

#[tokio::test]
async fn batches_of_up_to_ten_run_and_larger_ones_are_refused() {
    let app = TestApp::sqlite().await;
    let operation = json!({ "query": "{ deployments { totalCount } }" });
    let batch = |n: usize| Body::from(Value::Array(vec![operation.clone(); n]).to_string());
    let (status, _, body) = app.post(Some(&bearer(&app)), batch(10)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().map(Vec::len), Some(10), "{body}");
    let (status, _, body) = app.post(Some(&bearer(&app)), batch(11)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), Some("BAD_REQUEST"), "{body}");
}

#[tokio::test]
async fn malformed_json_is_a_bad_request() {
    let app = TestApp::sqlite().await;
    let (status, _, body) = app.post(Some(&bearer(&app)), Body::from("{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), Some("BAD_REQUEST"), "{body}");
}
