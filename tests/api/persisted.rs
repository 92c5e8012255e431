//! Documents named by id: automatic persisted queries (registered on a
//! miss, stored for every instance, bounded), GraphQL over HTTP's
//! `documentId` and Relay's `doc_id`, trusted manifests and trusted-only
//! mode, over POST, GET and the WebSocket, against the real binary where
//! start-up is what is tested.

use std::{path::PathBuf, process::Command, time::Duration};

use axum::{
    Router,
    http::{Request, StatusCode, header},
};
use deployql::{
    http::{self, AppState},
    persisted::{PersistedDocuments, manifest::Manifests, store::Store},
    telemetry::Metrics,
};
use http_body_util::BodyExt;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, ServerProcess, TestApp, error_code, metric_sum, post_graphql},
    ws_client::{Event, WsClient, operation_errors},
};

const LIST: &str = "query Count { deployments { totalCount } }";

fn sha256(text: &str) -> String {
    deployql::digest::sha256_hex(text)
}

fn apq(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// Another instance on `app`'s database (nothing in memory), its state
/// adjusted by `configure`.
fn instance(app: &TestApp, configure: impl FnOnce(AppState) -> AppState) -> Router {
    http::router(configure(AppState::new(
        app.db.clone(),
        app.keys.clone(),
        None,
        Metrics::default(),
    )))
}

async fn send(router: &Router, request: Request<axum::body::Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.expect("router");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

impl TestApp {
    /// POSTs `body` as `user`, with `accept` as the Accept header.
    async fn post_as(&self, user: Uuid, body: &Value, accept: &str) -> (StatusCode, Value) {
        self.post_to(&self.router, user, body, accept).await
    }

    async fn post_to(
        &self,
        router: &Router,
        user: Uuid,
        body: &Value,
        accept: &str,
    ) -> (StatusCode, Value) {
        let request = Request::post("/graphql")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, accept)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token(user)))
            .body(body.to_string().into())
            .expect("request");
        send(router, request).await
    }

    async fn get_as(&self, user: Uuid, parameters: &str) -> (StatusCode, Value) {
        let request = Request::get(format!("/graphql?{parameters}"))
            .header(header::ACCEPT, "application/graphql-response+json")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token(user)))
            .body(axum::body::Body::empty())
            .expect("request");
        send(&self.router, request).await
    }

    async fn registered(&self) -> i64 {
        let statement = sea_orm::Statement::from_string(
            self.db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM persisted_queries",
        );
        let row = self.db.query_one_raw(statement).await.expect("count").expect("a row");
        row.try_get::<i64>("", "n").expect("n")
    }
}

const JSON: &str = "application/json";
const GRAPHQL_JSON: &str = "application/graphql-response+json";

async fn an_automatic_persisted_query_registers_on_a_miss_then_runs_by_its_hash(app: &TestApp) {
    let user = Uuid::new_v4();
    app.insert(user, NewDeployment::default()).await;
    let hash = sha256(LIST);
    let by_hash = json!({ "extensions": apq(&hash) });

    // Apollo Client's first try: the hash alone.
    let (status, missed) = app.post_as(user, &by_hash, JSON).await;
    assert_eq!((status, error_code(&missed)), (StatusCode::OK, Some("PERSISTED_QUERY_NOT_FOUND")));
    assert_eq!(missed["errors"][0]["message"], "PersistedQueryNotFound", "{missed}");
    assert!(missed.get("data").is_none(), "a request error has no data: {missed}");
    let (status, _) = app.post_as(user, &by_hash, GRAPHQL_JSON).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a miss is a request error");

    // Its retry with the text registers it.
    let both = json!({ "query": LIST, "extensions": apq(&hash) });
    let (status, answer) = app.post_as(user, &both, JSON).await;
    assert_eq!(
        (status, &answer),
        (StatusCode::OK, &json!({ "data": { "deployments": { "totalCount": 1 } } }))
    );
    assert_eq!(app.registered().await, 1, "stored in the database");

    // From then on the hash alone runs it, over POST and GET (Apollo's
    // useGETForHashedQueries), here and on another instance.
    let (status, answer) = app.post_as(user, &by_hash, JSON).await;
    assert_eq!(
        (status, answer["data"]["deployments"]["totalCount"].clone()),
        (StatusCode::OK, json!(1))
    );
    let extensions = urlencode(&apq(&hash).to_string());
    let (status, answer) =
        app.get_as(user, &format!("operationName=Count&extensions={extensions}")).await;
    assert_eq!(
        (status, answer["data"]["deployments"]["totalCount"].clone()),
        (StatusCode::OK, json!(1))
    );
    let other = instance(app, |state| state);
    let (status, answer) = app.post_to(&other, user, &by_hash, JSON).await;
    assert_eq!(
        (status, answer["data"]["deployments"]["totalCount"].clone()),
        (StatusCode::OK, json!(1)),
        "{answer}"
    );

    // GraphQL over HTTP's documentId names it too, by its SHA-256.
    let by_id = json!({ "documentId": format!("sha256:{hash}") });
    let (status, answer) = app.post_as(user, &by_id, GRAPHQL_JSON).await;
    assert_eq!(
        (status, answer["data"]["deployments"]["totalCount"].clone()),
        (StatusCode::OK, json!(1))
    );
    let (status, answer) = app.get_as(user, &format!("documentId=sha256:{hash}")).await;
    assert_eq!(
        (status, answer["data"]["deployments"]["totalCount"].clone()),
        (StatusCode::OK, json!(1))
    );
}

async fn a_persisted_request_that_cannot_run_says_why(app: &TestApp) {
    let user = Uuid::new_v4();
    let hash = sha256(LIST);
    let refused = |body: Value, status: StatusCode, code: &'static str| {
        let app = &app;
        async move {
            let (got, answer) = app.post_as(user, &body, JSON).await;
            assert_eq!((got, error_code(&answer)), (status, Some(code)), "{body}: {answer}");
            answer["errors"][0]["message"].as_str().unwrap_or_default().to_owned()
        }
    };
    let bad = StatusCode::BAD_REQUEST;
    let message =
        refused(json!({ "query": "{ __typename }", "extensions": apq(&hash) }), bad, "BAD_REQUEST")
            .await;
    assert!(message.contains("SHA-256"), "{message}");
    assert_eq!(app.registered().await, 0, "nothing registered under another text's hash");
    let message = refused(
        json!({ "documentId": "sha256:0000" }),
        StatusCode::OK,
        "PERSISTED_QUERY_NOT_FOUND",
    )
    .await;
    assert!(message.contains("sha256:0000"), "{message}");
    refused(json!({ "doc_id": "6f3c2b" }), StatusCode::OK, "PERSISTED_QUERY_NOT_FOUND").await;
    refused(json!({ "documentId": 12 }), bad, "BAD_REQUEST").await;
    refused(json!({ "documentId": "x", "query": LIST }), bad, "BAD_REQUEST").await;
    refused(json!({ "documentId": "x", "doc_id": "x" }), bad, "BAD_REQUEST").await;
    let version =
        json!({ "extensions": { "persistedQuery": { "version": 2, "sha256Hash": hash } } });
    assert!(refused(version, bad, "BAD_REQUEST").await.contains("version"));
    refused(json!({ "extensions": { "persistedQuery": "x" } }), bad, "BAD_REQUEST").await;
    refused(json!({}), bad, "BAD_REQUEST").await;

    // A mutation named by id is still no GET request.
    let mutation = "mutation { deleteDeployment(id: \"x\") { id } }";
    app.post_as(user, &json!({ "query": mutation, "extensions": apq(&sha256(mutation)) }), JSON)
        .await;
    let (status, answer) =
        app.get_as(user, &format!("documentId=sha256:{}", sha256(mutation))).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::METHOD_NOT_ALLOWED, Some("METHOD_NOT_ALLOWED"))
    );

    // In a batch, each operation is answered for itself.
    let batch = json!([{ "documentId": "nope" }, { "query": LIST }]);
    let (status, answer) = app.post_as(user, &batch, JSON).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(error_code(&answer[0]), Some("PERSISTED_QUERY_NOT_FOUND"), "{answer}");
    assert_eq!(answer[1]["data"]["deployments"]["totalCount"], 0, "{answer}");
}

async fn registrations_past_the_bound_drop_the_oldest(app: &TestApp) {
    let bounded = || {
        let store = Store::new(app.db.clone().into(), true, 3);
        let persisted = PersistedDocuments::new(
            Manifests::default(),
            Some(store),
            true,
            Default::default(),
            Default::default(),
        );
        instance(app, |state| state.with_persisted(persisted, Vec::new(), true))
    };
    let router = bounded();
    let user = Uuid::new_v4();
    let documents: Vec<String> = (0..5).map(|n| format!("query Q{n} {{ __typename }}")).collect();
    for document in &documents {
        let body = json!({ "query": document, "extensions": apq(&sha256(document)) });
        assert_eq!(app.post_to(&router, user, &body, JSON).await.0, StatusCode::OK);
        // Registrations a clock tick apart are ordered by it.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(app.registered().await, 3);
    // A fresh instance (nothing in memory) finds only the newest three.
    let fresh = bounded();
    for (n, document) in documents.iter().enumerate() {
        let body = json!({ "extensions": apq(&sha256(document)) });
        let (_, answer) = app.post_to(&fresh, user, &body, JSON).await;
        let kept = n >= 2;
        assert_eq!(error_code(&answer).is_none(), kept, "document {n}: {answer}");
    }
}

backend_tests!(
    an_automatic_persisted_query_registers_on_a_miss_then_runs_by_its_hash,
    a_persisted_request_that_cannot_run_says_why,
    registrations_past_the_bound_drop_the_oldest,
);

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The status of GET /graphql as a browser asks for it (GraphiQL).
async fn graphiql_status(server: &ServerProcess) -> u16 {
    let page = reqwest::Client::new()
        .get(format!("http://{}/graphql", server.addr))
        .header("accept", "text/html")
        .send()
        .await
        .expect("GraphiQL");
    page.status().as_u16()
}

/// A directory of manifests, one per tool, removed on drop.
struct ManifestDir(PathBuf);

impl Drop for ManifestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const STATUS: &str = "query Status($id: ID!) { deployment(id: $id) { id name status } }";
const RELAY: &str = "query RelayCount { deployments { totalCount } }";
const APOLLO: &str = "mutation Scale($id: ID!) { scaleDeployment(id: $id, targetReplicas: 2) { id targetReplicas } }";
const WATCH: &str = "subscription Watch($id: ID!) { deploymentUpdated(id: $id) { id status } }";

fn manifests() -> ManifestDir {
    let dir = std::env::temp_dir().join(format!("deployql-manifests-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let codegen = json!({ "a1b2c3sha1ofstatus": STATUS, "watchid": WATCH });
    std::fs::write(dir.join("persisted-documents.json"), codegen.to_string()).expect("write");
    let relay = json!({ "5f1e9c4d2b7a8e6f0c3d1a2b4e6f8a0c": RELAY });
    std::fs::write(dir.join("relay.json"), relay.to_string()).expect("write");
    let apollo = json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [{ "id": sha256(APOLLO), "name": "Scale", "type": "mutation", "body": APOLLO }],
    });
    std::fs::write(dir.join("persisted-query-manifest.json"), apollo.to_string()).expect("write");
    ManifestDir(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_only_mode_runs_the_manifests_documents_and_refuses_the_rest() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let dir = manifests();
    let env =
        [("TRUSTED_DOCUMENTS", dir.0.to_str().expect("utf-8")), ("TRUSTED_DOCUMENTS_ONLY", "true")];
    let server = ServerProcess::start_with(&app.database_url(), &env).await;
    let token = app.token(user);
    let client = reqwest::Client::new();
    let post = |body: Value| {
        let request = client
            .post(format!("http://{}/graphql", server.addr))
            .bearer_auth(&token)
            .header("accept", GRAPHQL_JSON)
            .json(&body);
        async move {
            let response = request.send().await.expect("send");
            (response.status().as_u16(), response.json::<Value>().await.expect("json"))
        }
    };

    // Each tool's manifest, by its own ids.
    let (status, answer) =
        post(json!({ "documentId": "a1b2c3sha1ofstatus", "variables": { "id": id } })).await;
    assert_eq!((status, answer["data"]["deployment"]["id"].clone()), (200, json!(id)), "{answer}");
    let (status, answer) = post(json!({ "doc_id": "5f1e9c4d2b7a8e6f0c3d1a2b4e6f8a0c" })).await;
    assert_eq!(
        (status, answer["data"]["deployments"]["totalCount"].clone()),
        (200, json!(1)),
        "{answer}"
    );
    let apollo = json!({ "variables": { "id": id }, "extensions": apq(&sha256(APOLLO)) });
    let (status, answer) = post(apollo).await;
    assert_eq!(
        (status, answer["data"]["scaleDeployment"]["targetReplicas"].clone()),
        (200, json!(2)),
        "{answer}"
    );
    // codegen's SHA-1 ids sent as `sha256Hash`: an opaque key.
    let (status, answer) =
        post(json!({ "variables": { "id": id }, "extensions": apq("a1b2c3sha1ofstatus") })).await;
    assert_eq!((status, answer["data"]["deployment"]["name"].is_string()), (200, true), "{answer}");
    // A manifest's exact text runs as text too.
    let (status, _) = post(json!({ "query": RELAY })).await;
    assert_eq!(status, 200);

    // Anything else is refused, as is a registration and introspection.
    let required = |answer: &Value| error_code(answer) == Some("PERSISTED_QUERY_REQUIRED");
    let (status, answer) = post(json!({ "query": "{ deployments { totalCount } }" })).await;
    assert!(status == 400 && required(&answer), "{status} {answer}");
    let text = "{ __typename }";
    let (status, answer) = post(json!({ "query": text, "extensions": apq(&sha256(text)) })).await;
    assert!(status == 400 && required(&answer), "{status} {answer}");
    let (status, answer) = post(json!({ "query": "{ __schema { queryType { name } } }" })).await;
    assert!(status == 400 && required(&answer), "{status} {answer}");
    let (status, answer) = post(json!({ "documentId": "unknown" })).await;
    assert_eq!((status, error_code(&answer)), (400, Some("PERSISTED_QUERY_NOT_FOUND")));
    assert_eq!(graphiql_status(&server).await, 404, "no GraphiQL without introspection");

    // Over the WebSocket: a text document refused, a manifest's by id runs.
    let mut socket = WsClient::connect(server.addr, "graphql-transport-ws").await;
    socket.init_with_token(&token).await;
    let text = "subscription($id: ID!) { deploymentUpdated(id: $id) { id } }";
    socket.subscribe("1", text, json!({ "id": id })).await;
    match socket.recv(Duration::from_secs(5)).await {
        Event::Message(message) => {
            let errors = operation_errors(&message);
            assert_eq!(errors[0]["extensions"]["code"], "PERSISTED_QUERY_REQUIRED", "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    let complete = socket.recv(Duration::from_secs(5)).await;
    assert_eq!(complete, Event::Message(json!({ "id": "1", "type": "complete" })));
    let payload = json!({ "documentId": "watchid", "variables": { "id": id } });
    socket.send(json!({ "id": "2", "type": "subscribe", "payload": payload })).await;
    let first = socket.next_payload(Duration::from_secs(5)).await;
    assert_eq!(first["data"]["deploymentUpdated"]["id"], json!(id), "{first}");

    let samples = server.scrape().await;
    let hits = metric_sum(
        &samples,
        "deployql_persisted_documents_total",
        &[("outcome", "hit"), ("source", "manifest")],
    );
    assert!(hits >= 5.0, "{hits}");
    let required =
        metric_sum(&samples, "deployql_refusals_total", &[("reason", "persisted_query_required")]);
    assert!(required >= 3.0, "{required}");
    let by_id = metric_sum(
        &samples,
        "deployql_graphql_operations_total",
        &[("document_id", "a1b2c3sha1ofstatus")],
    );
    assert!(by_id >= 1.0, "the operation counted under its document id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_and_graphiql_stay_with_allow_introspection_in_trusted_only_mode() {
    let app = TestApp::sqlite().await;
    let dir = manifests();
    let env = [
        ("TRUSTED_DOCUMENTS", dir.0.to_str().expect("utf-8")),
        ("TRUSTED_DOCUMENTS_ONLY", "true"),
        ("ALLOW_INTROSPECTION", "true"),
    ];
    let server = ServerProcess::start_with(&app.database_url(), &env).await;
    let token = app.token(Uuid::new_v4());
    let answer =
        post_graphql(server.addr, &token, "{ __schema { queryType { name } } }", json!({})).await;
    assert_eq!(answer["data"]["__schema"]["queryType"]["name"], "Query", "{answer}");
    let answer =
        post_graphql(server.addr, &token, "{ deployments { totalCount } }", json!({})).await;
    assert_eq!(error_code(&answer), Some("PERSISTED_QUERY_REQUIRED"), "{answer}");
    assert_eq!(graphiql_status(&server).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_is_refused_with_allow_introspection_false() {
    let app = TestApp::sqlite().await;
    let server =
        ServerProcess::start_with(&app.database_url(), &[("ALLOW_INTROSPECTION", "false")]).await;
    let token = app.token(Uuid::new_v4());
    let answer =
        post_graphql(server.addr, &token, "{ __type(name: \"Query\") { name } }", json!({})).await;
    assert_eq!(error_code(&answer), Some("GRAPHQL_VALIDATION_FAILED"), "{answer}");
    let answer =
        post_graphql(server.addr, &token, "{ deployments { totalCount } }", json!({})).await;
    assert_eq!(answer["data"]["deployments"]["totalCount"], 0, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_document_is_validated_once_at_start_and_answered_directly_at_once() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let dir = manifests();
    let server = ServerProcess::start_with(
        &app.database_url(),
        &[("TRUSTED_DOCUMENTS", dir.0.to_str().expect("utf-8"))],
    )
    .await;
    let token = app.token(user);
    let client = reqwest::Client::new();
    let answer: Value = client
        .post(format!("http://{}/graphql", server.addr))
        .bearer_auth(&token)
        .json(&json!({ "documentId": "a1b2c3sha1ofstatus", "variables": { "id": id } }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["data"]["deployment"]["id"], json!(id), "{answer}");
    // Its very first request skipped async-graphql: validated at start.
    assert_eq!(server.metric("deployql_graphql_direct_reads_total").await, 1);
}

fn deployql() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deployql"));
    command.env_remove("TRUSTED_DOCUMENTS").env_remove("TRUSTED_DOCUMENTS_ONLY");
    command
}

#[test]
fn a_bad_manifest_stops_the_start_and_documents_check_names_it() {
    let dir = manifests();
    let good = dir.0.join("persisted-documents.json");
    let output =
        deployql().args(["documents", "check"]).arg(&good).arg(&dir.0).output().expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let bad = dir.0.join("bad.json");
    std::fs::write(
        &bad,
        json!({ "good": RELAY, "colourful": "{ deployments { colour } }" }).to_string(),
    )
    .expect("write");
    let expect_named = |output: std::process::Output| {
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(bad.to_str().expect("utf-8"))
                && stderr.contains("`colourful`")
                && stderr.contains("colour"),
            "{stderr}"
        );
    };
    expect_named(
        deployql().args(["documents", "check"]).arg(&good).arg(&bad).output().expect("run"),
    );
    let database = std::env::temp_dir().join(format!("deployql-manifest-{}.db", Uuid::new_v4()));
    let serve = deployql()
        .arg("serve")
        .env("DATABASE_URL", format!("sqlite://{}?mode=rwc", database.display()))
        .env("JWT_SECRET", crate::helpers::SECRET)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("TRUSTED_DOCUMENTS", &dir.0)
        .output()
        .expect("run");
    expect_named(serve);
    assert!(!database.exists(), "refused before the database was opened");

    std::fs::write(&bad, "{ not json").expect("write");
    let output = deployql().args(["documents", "check"]).arg(&bad).output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("bad.json")
            && stderr.contains("not a manifest"),
        "{stderr}"
    );
}
