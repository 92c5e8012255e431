use axum::{
    body::Body,
    http::{Request, StatusCode},
};

use crate::helpers::{TestApp, metric_sum, parse_metrics};

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

#[tokio::test]
async fn healthz_answers_without_the_database_and_readyz_follows_it() {
    let app = TestApp::sqlite().await;
    assert_eq!(app.send(get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(app.send(get("/readyz")).await.0, StatusCode::OK);

    app.db.clone().close().await.expect("close pool");
    assert_eq!(app.send(get("/readyz")).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.send(get("/healthz")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn get_graphql_serves_graphiql() {
    let app = TestApp::sqlite().await;
    let browser = Request::get("/graphql")
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .body(Body::empty())
        .expect("request");
    let response = tower::ServiceExt::oneshot(app.router.clone(), browser).await.expect("router");
    assert_eq!(response.status(), StatusCode::OK);
    let policy = response.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(policy.contains("default-src 'none'") && !policy.contains("http"), "{policy}");
    let body =
        http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
    let html = String::from_utf8_lossy(&body);
    assert!(html.contains("graphiql"), "{html}");
    assert!(!html.contains("://"), "nothing from another host: {html}");
    // Its scripts come from the server, the one that starts GraphiQL too.
    let boot = html
        .split('"')
        .find(|part| part.starts_with("/graphiql/") && part.ends_with("/boot.js"))
        .expect("the boot script")
        .to_owned();
    let response =
        tower::ServiceExt::oneshot(app.router.clone(), get(&boot)).await.expect("router");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["cache-control"].to_str().expect("ascii").contains("immutable"));
    let body =
        http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
    let script = String::from_utf8_lossy(&body);
    assert!(script.contains("\"/graphql\""), "{script}");
    assert!(script.contains("/graphql/ws"), "subscriptions configured: {script}");
    let missing = get("/graphiql/0.0.1/graphiql.min.js");
    let response = tower::ServiceExt::oneshot(app.router.clone(), missing).await.expect("router");
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "another version's path");
}

#[tokio::test]
async fn metrics_count_statements_and_operations() {
    let app = TestApp::sqlite().await;
    let scrape = || async {
        let response =
            tower::ServiceExt::oneshot(app.router.clone(), get("/metrics")).await.expect("router");
        assert_eq!(response.status(), StatusCode::OK);
        let body =
            http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    };
    let before = scrape().await;
    app.gql(uuid::Uuid::new_v4(), "{ deployments { totalCount } }", serde_json::json!({})).await;
    let after = scrape().await;
    let sum = |text: &str, name: &str| metric_sum(&parse_metrics(text), name, &[]);
    let statements = |t: &str| sum(t, "deployql_sql_statements_total");
    let operations = |t: &str| sum(t, "deployql_graphql_operations_total");
    assert_eq!(statements(&after) - statements(&before), 2.0, "page and count");
    assert_eq!(operations(&after) - operations(&before), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limit_wait_and_complete() {
    let mut app = TestApp::sqlite().await;
    app.reconfigure(|state| state.with_slots(1, None, std::time::Duration::from_secs(5)));
    // The only slot is taken by a mutation waiting on the write lock.
    let (lock, held) = hold_a_slot(&app, uuid::Uuid::new_v4()).await;
    let waiting = {
        let router = app.router.clone();
        let token = app.token(uuid::Uuid::new_v4());
        tokio::spawn(async move {
            let request = Request::post("/graphql")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(r#"{"query":"{ deployments { totalCount } }"}"#))
                .expect("request");
            tower::ServiceExt::oneshot(router, request).await.expect("router").status()
        })
    };
    // A read needs no write lock: only the limit keeps it waiting.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a request beyond the limit waits for a slot");
    lock.rollback().await.expect("release the lock");
    assert_eq!(held.await.expect("held request").0, StatusCode::OK);
    assert_eq!(waiting.await.expect("waiting request"), StatusCode::OK, "then it is served");
}

/// A mutation blocked on SQLite's write lock (held by this test) holds its
/// slot for as long as the test keeps the lock.
async fn hold_a_slot(
    app: &TestApp,
    user: uuid::Uuid,
) -> (sea_orm::DatabaseTransaction, tokio::task::JoinHandle<(StatusCode, serde_json::Value)>) {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let lock = app.db.begin().await.expect("begin");
    lock.execute_unprepared("UPDATE deployments SET name = name").await.expect("write lock");
    let router = app.router.clone();
    let token = app.token(user);
    let create = serde_json::json!({ "query": "mutation { createDeployment(input: { name: \"held\", \
        targetReplicas: 1, resources: { cpuCores: 1, memoryMb: 64, storageGb: 1 } }) { id } }" });
    let held = tokio::spawn(async move {
        let request = Request::post("/graphql")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(create.to_string()))
            .expect("request");
        let response = tower::ServiceExt::oneshot(router, request).await.expect("router");
        let status = response.status();
        let body =
            http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    (lock, held)
}

async fn query_as(
    app: &TestApp,
    user: uuid::Uuid,
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let body = r#"{"query":"{ deployments { totalCount } }"}"#;
    app.post(Some(&format!("Bearer {}", app.token(user))), body.into()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_their_share_gets_429_while_others_are_served() {
    let mut app = TestApp::sqlite().await;
    app.reconfigure(|state| state.with_slots(4, Some(1), std::time::Duration::from_millis(200)));
    let (busy, other) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let (lock, held) = hold_a_slot(&app, busy).await;

    let (status, headers, body) = query_as(&app, busy).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(crate::helpers::error_code(&body), Some("RATE_LIMITED"));
    let (status, _, body) = query_as(&app, other).await;
    assert_eq!(status, StatusCode::OK, "another user is served: {body}");
    let refusals = parse_metrics(&app.scrape().await);
    let limited = [("reason", "rate_limited")];
    assert_eq!(metric_sum(&refusals, "deployql_refusals_total", &limited), 1.0);

    lock.rollback().await.expect("release the lock");
    let (status, body) = held.await.expect("held request");
    assert_eq!(status, StatusCode::OK, "the held request completes: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_answers_503_with_retry_after_and_recovers() {
    let mut app = TestApp::sqlite().await;
    app.reconfigure(|state| state.with_slots(1, None, std::time::Duration::from_millis(200)));
    let (lock, held) = hold_a_slot(&app, uuid::Uuid::new_v4()).await;
    let started = std::time::Instant::now();
    let (status, headers, body) = query_as(&app, uuid::Uuid::new_v4()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(crate::helpers::error_code(&body), Some("SERVICE_UNAVAILABLE"));
    let refusals = parse_metrics(&app.scrape().await);
    let busy = [("reason", "server_busy")];
    assert_eq!(metric_sum(&refusals, "deployql_refusals_total", &busy), 1.0);

    lock.rollback().await.expect("release the lock");
    assert_eq!(held.await.expect("held request").0, StatusCode::OK);
    assert_eq!(query_as(&app, uuid::Uuid::new_v4()).await.0, StatusCode::OK, "recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_a_websocket_take_slots_like_http() {
    use crate::ws_client::{TRANSPORT_WS, WsClient};
    let mut app = TestApp::sqlite().await;
    app.reconfigure(|state| state.with_slots(4, Some(1), std::time::Duration::from_millis(200)));
    let user = uuid::Uuid::new_v4();
    let addr = app.serve().await;
    let (lock, held) = hold_a_slot(&app, user).await;

    let mut ws = WsClient::connect(addr, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;
    ws.subscribe("q", "{ deployments { totalCount } }", serde_json::json!({})).await;
    let refused = ws.next_payload(std::time::Duration::from_secs(2)).await;
    assert_eq!(crate::helpers::error_code(&refused), Some("RATE_LIMITED"), "{refused}");
    let complete = serde_json::json!({ "id": "q", "type": "complete" });
    assert_eq!(
        ws.recv(std::time::Duration::from_secs(2)).await,
        crate::ws_client::Event::Message(complete)
    );

    lock.rollback().await.expect("release the lock");
    assert_eq!(held.await.expect("held request").0, StatusCode::OK);
    ws.subscribe("again", "{ deployments { totalCount } }", serde_json::json!({})).await;
    let answered = ws.next_payload(std::time::Duration::from_secs(2)).await;
    assert_eq!(answered["data"]["deployments"]["totalCount"], 1, "{answered}");
}
