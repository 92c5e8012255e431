//! Queries and mutations over `/graphql/ws` run exactly as over HTTP (the
//! same loaders, errors and null propagation), and a socket does not
//! outlive its token.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, SECRET, TestApp},
    live::WATCH,
    mutations::input,
    ws_client::{Event, TRANSPORT_WS, WsClient},
};

const SECOND: Duration = Duration::from_secs(1);

/// Runs one operation over `ws` and returns its single result.
async fn run(ws: &mut WsClient, id: &str, query: &str, variables: Value) -> Value {
    ws.subscribe(id, query, variables).await;
    let payload = ws.next_payload(Duration::from_secs(5)).await;
    assert_eq!(ws.recv(SECOND).await, Event::Message(json!({ "id": id, "type": "complete" })));
    payload
}

async fn queries_and_mutations_over_the_socket_answer_as_over_http(app: &TestApp) {
    let user = Uuid::new_v4();
    app.insert(user, NewDeployment { history: 2, ..Default::default() }).await;
    let mut ws = WsClient::connect(app.serve().await, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;

    let list = "{ deployments { totalCount nodes { id health replicas { status } \
                statusHistory(limit: 1) { reason } } } }";
    let before = app.statements.lock().expect("log").len();
    let over_ws = run(&mut ws, "q", list, json!({})).await;
    let ws_statements = app.statements.lock().expect("log").len() - before;
    let (over_http, http_statements) = app.gql_logged(user, list, json!({})).await;
    assert!(over_ws["errors"].is_null(), "{over_ws}");
    assert_eq!(over_ws, over_http);
    assert_eq!(ws_statements, http_statements.len(), "the same plan and loaders");

    let create = "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { \
                  id status health statusHistory { oldStatus newStatus reason } } }";
    let created = run(&mut ws, "m", create, json!({ "input": input("over-ws") })).await;
    assert!(created["errors"].is_null(), "{created}");
    let deployment = &created["data"]["createDeployment"];
    assert_eq!(deployment["status"], "PENDING");
    assert_eq!(deployment["statusHistory"][0]["newStatus"], "PENDING", "{created}");

    for query in [
        r#"{ deployment(id: "not-a-uuid") { id } }"#,
        "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { \
         id statusHistory(limit: 1000) { newStatus } } }",
        "{ deployments { nope } }",
    ] {
        // The failing field comes after the create: each side needs a fresh name.
        let name = |side: &str| json!({ "input": input(&format!("{side}-{}", Uuid::new_v4().simple())[..20]) });
        let over_ws = run(&mut ws, "e", query, name("ws")).await;
        let over_http = app.gql(user, query, name("http")).await;
        assert_eq!(over_ws["data"], over_http["data"], "{query}");
        // The same extensions, but for each request's own id.
        let (mut ws_extensions, mut http_extensions) = (
            over_ws["errors"][0]["extensions"].clone(),
            over_http["errors"][0]["extensions"].clone(),
        );
        for extensions in [&mut ws_extensions, &mut http_extensions] {
            let id = extensions.as_object_mut().and_then(|e| e.remove("requestId"));
            assert!(id.is_some_and(|id| id.is_string()), "a request id in {extensions}");
        }
        assert_eq!(ws_extensions, http_extensions);
        assert!(over_ws["errors"][0]["extensions"]["code"].is_string(), "{over_ws}");
        assert_eq!(over_ws["errors"][0]["message"], over_http["errors"][0]["message"]);
    }
}

async fn a_socket_is_closed_when_its_token_expires_and_runs_nothing_after(app: &TestApp) {
    // The app under test, but with no leeway, so the token expires on time.
    let keys = app.keys.clone().with_leeway(Duration::ZERO);
    let state = deployql::http::AppState::new(
        app.db.clone(),
        keys,
        None,
        deployql::telemetry::Metrics::default(),
    );
    let router = deployql::http::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(deployql::http::serve(listener, router, std::future::pending()));

    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { target: 1, ..Default::default() }).await;
    let exp = chrono::Utc::now().timestamp() + 2;
    let claims = json!({ "sub": user.to_string(), "exp": exp });
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("jwt");

    let mut watcher = WsClient::connect(addr, TRANSPORT_WS).await;
    watcher.init_with_token(&token).await;
    watcher.subscribe("w", WATCH, json!({ "id": id })).await;
    watcher.next_payload(SECOND).await;
    let mut late = WsClient::connect(addr, TRANSPORT_WS).await;
    late.init_with_token(&token).await;

    assert_eq!(watcher.recv(Duration::from_secs(5)).await, Event::Closed(Some(4403)));
    let scale = format!("mutation {{ scaleDeployment(id: \"{id}\", targetReplicas: 9) {{ id }} }}");
    late.subscribe("late", &scale, json!({})).await;
    match late.recv(Duration::from_secs(3)).await {
        Event::Closed(code) => assert_eq!(code, Some(4403)),
        other => panic!("the expired socket must be closed, got {other:?}"),
    }
    assert_eq!(app.target_replicas(user, id).await, 1, "nothing ran after expiry");
}

backend_tests!(
    queries_and_mutations_over_the_socket_answer_as_over_http,
    a_socket_is_closed_when_its_token_expires_and_runs_nothing_after,
);
