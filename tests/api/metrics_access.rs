//! `/metrics` is not public: outside dev mode the API's port answers it only
//! with METRICS_TOKEN as a bearer token, METRICS_ADDR serves it on a
//! listener of its own, and with neither it is not there (404).

use std::time::Duration;

use axum::{
    body::Body,
    http::{Request, StatusCode},
};

use crate::helpers::{METRICS_TOKEN, SECRET, ServerProcess, TestApp, free_addr, parse_metrics};

/// The status of `GET /metrics` through `app`'s router, with `authorization`.
async fn status(router: &axum::Router, authorization: Option<&str>) -> StatusCode {
    let mut request = Request::get("/metrics");
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let request = request.body(Body::empty()).expect("request");
    tower::ServiceExt::oneshot(router.clone(), request).await.expect("router").status()
}

fn router(app: &TestApp, access: deployql::http::MetricsAccess) -> axum::Router {
    let metrics = deployql::telemetry::Metrics::default();
    let state = deployql::http::AppState::new(app.db.clone(), app.keys.clone(), None, metrics)
        .with_metrics_access(access);
    deployql::http::router(state)
}

#[tokio::test]
async fn the_api_s_metrics_answer_only_whom_the_access_lets_in() {
    let app = TestApp::sqlite().await;
    let token = deployql::config::MetricsToken::parse(METRICS_TOKEN).expect("token");
    let guarded = router(&app, deployql::http::MetricsAccess::Token(token));
    let bearer = format!("Bearer {METRICS_TOKEN}");
    assert_eq!(status(&guarded, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&guarded, Some("Bearer not-the-metrics-token")).await, 401);
    assert_eq!(status(&guarded, Some(&format!("Bearer {METRICS_TOKEN}x"))).await, 401);
    assert_eq!(status(&guarded, Some(METRICS_TOKEN)).await, 401, "no scheme");
    // A user's token is not the metrics token.
    let user = format!("Bearer {}", app.token(uuid::Uuid::new_v4()));
    assert_eq!(status(&guarded, Some(&user)).await, 401);
    assert_eq!(status(&guarded, Some(&bearer)).await, StatusCode::OK);
    assert_eq!(status(&guarded, Some(&format!("bearer  {METRICS_TOKEN} "))).await, 200);

    let hidden = router(&app, deployql::http::MetricsAccess::Hidden);
    assert_eq!(status(&hidden, None).await, StatusCode::NOT_FOUND);
    assert_eq!(status(&hidden, Some(&bearer)).await, StatusCode::NOT_FOUND);
    let open = router(&app, deployql::http::MetricsAccess::Open);
    assert_eq!(status(&open, None).await, StatusCode::OK);
}

/// `GET http://{addr}/metrics` with `token`: its status and body.
async fn get(addr: std::net::SocketAddr, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(format!("http://{addr}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("metrics");
    (response.status().as_u16(), response.text().await.expect("body"))
}

#[tokio::test]
async fn a_server_process_serves_metrics_only_as_configured() {
    let app = TestApp::sqlite().await;
    // A token: anonymous 401, the token 200.
    let server = ServerProcess::start(&app.database_url()).await;
    assert_eq!(get(server.addr, None).await.0, 401);
    assert_eq!(get(server.addr, Some("wrong-token-wrong-token")).await.0, 401);
    let (status, text) = get(server.addr, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200);
    assert!(!parse_metrics(&text).is_empty());
    drop(server);

    // A listener of its own, and no token: the API's port has no /metrics,
    // the metrics port serves it to anyone who reaches it.
    let metrics_addr = free_addr();
    let env = [("METRICS_TOKEN", ""), ("METRICS_ADDR", &metrics_addr.to_string()[..])];
    let server = ServerProcess::start_with(&app.database_url(), &env).await;
    assert_eq!(get(server.addr, None).await.0, 404);
    assert_eq!(get(server.addr, Some(METRICS_TOKEN)).await.0, 404);
    let (status, text) = get(metrics_addr, None).await;
    assert_eq!(status, 200);
    let samples = parse_metrics(&text);
    assert!(samples.iter().any(|s| s.metric == "deployql_build_info"), "{text}");
    // The metrics listener serves nothing else.
    let graphql = reqwest::get(format!("http://{metrics_addr}/graphql")).await.expect("get");
    assert_eq!(graphql.status(), 404);
}

#[tokio::test]
async fn with_neither_set_metrics_are_off_and_the_start_log_says_how_to_turn_them_on() {
    let app = TestApp::sqlite().await;
    let dir = std::env::temp_dir().join(format!("deployql-metrics-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("server.log");
    let env = [("JWT_SECRET", SECRET), ("METRICS_TOKEN", ""), ("RUST_LOG", "info")];
    let server = ServerProcess::spawn_with_log(&app.database_url(), &env, &log);
    server.wait_ready().await;
    assert_eq!(get(server.addr, None).await.0, 404);
    assert_eq!(get(server.addr, Some(METRICS_TOKEN)).await.0, 404);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("/metrics is off") && text.contains("METRICS_ADDR") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no hint in the start log:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn dev_mode_keeps_metrics_open_on_the_api_port() {
    let app = TestApp::sqlite().await;
    let (server, _) = ServerProcess::start_dev(&app.database_url()).await;
    server.wait_ready().await;
    assert_eq!(get(server.addr, None).await.0, 200);
}
