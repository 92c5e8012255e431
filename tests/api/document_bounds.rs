//! Documents are measured before they are expanded or run: fragment bombs,
//! alias floods, introspection floods and statement-heavy requests are
//! refused in milliseconds with a code, and the statement estimate is never
//! below what a request really runs.

use std::time::{Duration, Instant};

use axum::body::Body;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, ServerProcess, TestApp, error_code, post_graphql},
    mutations::input,
};

fn statement_count(app: &TestApp) -> usize {
    app.statements.lock().expect("log").len()
}

/// `levels` fragments, each spreading the next twice: 2^levels fields.
fn fragment_bomb(levels: usize) -> String {
    let chain: String = (0..levels)
        .map(|n| format!("fragment F{n} on Query {{ ...F{next} ...F{next} }}\n", next = n + 1))
        .collect();
    format!("{{ ...F0 }}\n{chain}fragment F{levels} on Query {{ __typename }}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_bomb_is_refused_fast_without_growing_the_server() {
    let app = TestApp::sqlite().await;
    let server = ServerProcess::start(&app.database_url()).await;
    let token = app.token(Uuid::new_v4());
    let (rss_before, _) = server.memory_mb();
    for levels in [20, 30] {
        let started = Instant::now();
        let body = post_graphql(server.addr, &token, &fragment_bomb(levels), json!({})).await;
        let took = started.elapsed();
        assert_eq!(error_code(&body), Some("QUERY_TOO_COMPLEX"), "{body}");
        assert!(took < Duration::from_millis(200), "{levels} levels took {took:?}");
    }
    let (rss_after, _) = server.memory_mb();
    assert!(rss_after < rss_before + 20, "RSS {rss_before} -> {rss_after} MiB");
    // The server still answers everyone else.
    let body = post_graphql(server.addr, &token, "{ deployments { totalCount } }", json!({})).await;
    assert_eq!(body["data"]["deployments"]["totalCount"], 0, "{body}");
}

#[tokio::test]
async fn floods_of_aliases_root_fields_and_introspection_are_refused_before_any_sql() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let cases = [
        (
            "TOO_MANY_ALIASES",
            (0..500)
                .map(|n| format!("a{n}: deployments(first: 1) {{ totalCount }}"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        (
            "QUERY_TOO_COMPLEX",
            (0..30)
                .map(|n| format!("a{n}: deployments(first: 1) {{ totalCount }}"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        (
            "QUERY_TOO_COMPLEX",
            (0..51).map(|n| format!("a{n}: __typename")).collect::<Vec<_>>().join(" "),
        ),
        (
            "QUERY_TOO_COMPLEX",
            (0..2)
                .map(|n| format!("s{n}: __schema {{ types {{ name }} }}"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    ];
    // A token flood is refused before the parser sees it.
    let started = Instant::now();
    let body = app.gql(user, &format!("{{ {} }}", "__typename ".repeat(20_000)), json!({})).await;
    assert_eq!(error_code(&body), Some("QUERY_TOO_COMPLEX"), "{}", &body.to_string()[..200]);
    assert!(body["errors"][0]["message"].as_str().unwrap_or_default().contains("tokens"));
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    for (code, fields) in cases {
        let before = statement_count(&app);
        let started = Instant::now();
        let body = app.gql(user, &format!("{{ {fields} }}"), json!({})).await;
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
        assert_eq!(
            error_code(&body),
            Some(code),
            "{}",
            &body.to_string()[..body.to_string().len().min(300)]
        );
        assert!(body.get("data").is_none() || body["data"].is_null(), "{body}");
        assert_eq!(statement_count(&app), before, "no SQL for a refused document");
    }
}

#[tokio::test]
async fn a_batch_is_bounded_in_total() {
    let app = TestApp::sqlite().await;
    let bearer = format!("Bearer {}", app.token(Uuid::new_v4()));
    // Five lookups (5 statements) per operation: ten make 50, eleven would be refused anyway.
    let five: String =
        (0..5).map(|n| format!("a{n}: deployments(first: 1) {{ nodes {{ id }} }} ")).collect();
    let six: String =
        (0..6).map(|n| format!("a{n}: deployments(first: 1) {{ nodes {{ id }} }} ")).collect();
    let batch = |fields: &str| {
        let operation = json!({ "query": format!("{{ {fields} }}") });
        Body::from(Value::Array(vec![operation; 10]).to_string())
    };
    let (status, _, body) = app.post(Some(&bearer), batch(&five)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.as_array().is_some_and(|all| all.iter().all(|r| r["errors"].is_null())), "{body}");
    let before = statement_count(&app);
    let (status, _, body) = app.post(Some(&bearer), batch(&six)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), Some("QUERY_TOO_COMPLEX"), "{body}");
    assert_eq!(statement_count(&app), before);

    let introspect = json!({ "query": "{ __schema { queryType { name } } }" });
    let two = Body::from(json!([introspect, introspect]).to_string());
    let (status, _, body) = app.post(Some(&bearer), two).await;
    assert_eq!((status.as_u16(), error_code(&body)), (400, Some("QUERY_TOO_COMPLEX")), "{body}");
}

async fn the_largest_allowed_request_runs_what_was_estimated(app: &TestApp) {
    let user = Uuid::new_v4();
    app.insert(user, NewDeployment::default()).await;
    // 25 pages with their counts: 50 statements, the default bound.
    let fields: String = (0..25)
        .map(|n| format!("a{n}: deployments(first: 1) {{ totalCount nodes {{ id health }} }} "))
        .collect();
    let (body, statements) = app.gql_logged(user, &format!("{{ {fields} }}"), json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(statements.len(), 50, "{statements:#?}");
}

async fn mutations_run_no_more_statements_than_estimated(app: &TestApp) {
    let user = Uuid::new_v4();
    let payload = "id health replicaCounts { total } replicas { id } resources { cpuCores } \
                   statusHistory { reason }";
    let create = format!(
        "mutation($input: CreateDeploymentInput!) {{ createDeployment(input: $input) {{ {payload} }} }}"
    );
    let (body, statements) =
        app.gql_logged(user, &create, json!({ "input": input("bounded") })).await;
    assert!(body["errors"].is_null(), "{body}");
    let id = body["data"]["createDeployment"]["id"].as_str().expect("id").to_owned();
    // The estimate: the mutation's own bound plus one per relation (5 here).
    let estimate = 6 + 5;
    assert!(statements.len() <= estimate, "create: {statements:#?}");
    let scale = format!(
        "mutation($id: ID!) {{ scaleDeployment(id: $id, targetReplicas: 4) {{ {payload} }} }}"
    );
    let (body, statements) = app.gql_logged(user, &scale, json!({ "id": id })).await;
    assert!(body["errors"].is_null(), "{body}");
    assert!(statements.len() <= estimate, "scale: {statements:#?}");
    let delete = "mutation($id: ID!) { deleteDeployment(id: $id) { id deletedAt } }";
    let (body, statements) = app.gql_logged(user, delete, json!({ "id": id })).await;
    assert!(body["errors"].is_null(), "{body}");
    assert!(statements.len() <= 6, "delete: {statements:#?}");
}

backend_tests!(
    the_largest_allowed_request_runs_what_was_estimated,
    mutations_run_no_more_statements_than_estimated,
);
