use axum::{
    body::Body,
    http::{Request, StatusCode},
};

use crate::helpers::TestApp;

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
    let body =
        http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
    let html = String::from_utf8_lossy(&body);
    assert!(html.contains("graphiql"), "{html}");
    assert!(html.contains("/graphql"), "{html}");
    assert!(html.contains("/graphql/ws"), "subscriptions configured: {html}");
}

#[tokio::test]
async fn metrics_count_statements_and_operations() {
    let app = TestApp::sqlite().await;
    let metric = |text: &str, name: &str| -> u64 {
        let line =
            text.lines().find(|l| l.starts_with(&format!("{name} "))).expect("metric present");
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number")
    };
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
    let statements = |t: &str| metric(t, "deployql_sql_statements_total");
    let operations = |t: &str| metric(t, "deployql_graphql_operations_total");
    assert_eq!(statements(&after) - statements(&before), 2, "page and count");
    assert_eq!(operations(&after) - operations(&before), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limit_wait_and_complete() {
    let mut app = TestApp::sqlite().await;
    let state = deployql::http::AppState::new(
        app.db.clone(),
        app.keys.clone(),
        None,
        deployql::db::StatementCounter::default(),
    )
    .with_max_in_flight(1);
    app.router = deployql::http::router(state);
    let user = uuid::Uuid::new_v4();
    let query = "{ deployments { totalCount } }";
    let responses = futures_util::future::join_all(
        (0..10).map(|_| app.gql(user, query, serde_json::json!({}))),
    )
    .await;
    for body in responses {
        assert_eq!(body["data"]["deployments"]["totalCount"], 0, "{body}");
    }
}
