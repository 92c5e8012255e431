//! What an operator sees: `/metrics` as Prometheus parses it, request ids
//! from the response to the JSON log line, and traces received by an OTLP
//! receiver in this test process.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, extract::State};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value, trace::v1::Span,
};
use prometheus_parse::{Sample, Value as Metric};
use prost::Message;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, SECRET, ServerProcess, TestApp, metric_sum, parse_metrics},
    ws_client::{TRANSPORT_WS, WsClient},
};

const STATUS_PAGE: &str = "query StatusPage($id: ID!) { deployment(id: $id) { id name health } }";

/// POSTs `body` with `headers`; the status, the response headers and JSON.
async fn post(
    addr: SocketAddr,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new().post(format!("http://{addr}/graphql")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.json().await.expect("json"))
}

/// The histogram `name` whose labels include `labels`: its buckets' counts.
fn histogram(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v)))
        .find_map(|sample| match &sample.value {
            Metric::Histogram(buckets) => {
                Some(buckets.iter().map(|b| (b.less_than, b.count)).collect())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no histogram {name} {labels:?}"))
}

#[tokio::test]
async fn operations_are_counted_and_timed_by_name_type_and_outcome() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let server = ServerProcess::start(&app.database_url()).await;
    let token = app.token(user);
    for _ in 0..3 {
        let body = json!({ "query": STATUS_PAGE, "variables": { "id": id } });
        let (status, _, body) = post(server.addr, Some(&token), &[], body).await;
        assert_eq!((status, &body["errors"]), (200, &Value::Null), "{body}");
    }
    let missing = json!({ "query": STATUS_PAGE, "variables": { "id": Uuid::new_v4() } });
    post(server.addr, Some(&token), &[], missing).await;
    post(server.addr, Some(&token), &[], json!({ "query": "{ deployments { totalCount } }" }))
        .await;

    let samples = server.scrape().await;
    let operations =
        |labels: &[(&str, &str)]| metric_sum(&samples, "deployql_graphql_operations_total", labels);
    let status_page = [("operation_name", "StatusPage"), ("operation_type", "query")];
    assert_eq!(operations(&[&status_page[..], &[("outcome", "ok")]].concat()), 3.0);
    assert_eq!(operations(&[&status_page[..], &[("outcome", "NOT_FOUND")]].concat()), 1.0);
    assert_eq!(operations(&[("operation_name", "anonymous"), ("outcome", "ok")]), 1.0);
    assert_eq!(operations(&[]), 5.0, "the sum over labels is every operation");
    let buckets = histogram(
        &samples,
        "deployql_graphql_operation_duration_seconds",
        &[&status_page[..], &[("outcome", "ok")]].concat(),
    );
    let (largest, count) = *buckets.last().expect("buckets");
    assert!(largest.is_infinite() && count == 3.0, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {buckets:?}");
    let lookups = metric_sum(
        &samples,
        "deployql_sql_statements_total",
        &[("entry_point", "query.deployment")],
    );
    assert_eq!(lookups, 4.0, "one statement per lookup, under its root field");
    let requests = [("route", "/graphql"), ("status", "200")];
    assert_eq!(metric_sum(&samples, "deployql_http_requests_total", &requests), 5.0);
    assert!(metric_sum(&samples, "deployql_db_pool_max_connections", &[]) >= 1.0);
    assert!(metric_sum(&samples, "deployql_process_resident_memory_bytes", &[]) > 0.0);
    let build = samples.iter().find(|s| s.metric == "deployql_build_info").expect("build info");
    assert_eq!(build.labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
    assert!(build.labels.get("git_commit").is_some_and(|commit| !commit.is_empty()));
}

#[tokio::test]
async fn refusals_are_counted_under_their_reason() {
    let app = TestApp::sqlite().await;
    let server = ServerProcess::start(&app.database_url()).await;
    let token = app.token(Uuid::new_v4());
    let nested = "deployments { edges { node { ".repeat(5);
    let too_deep = format!("{{ {nested}__typename{} }}", " } } }".repeat(5));
    let (_, _, body) = post(server.addr, Some(&token), &[], json!({ "query": too_deep })).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "QUERY_TOO_DEEP", "{body}");
    let (status, _, _) = post(server.addr, None, &[], json!({ "query": "{ __typename }" })).await;
    assert_eq!(status, 401);
    post(server.addr, Some("not-a-token"), &[], json!({ "query": "{ __typename }" })).await;

    let samples = server.scrape().await;
    let refusals = |reason| metric_sum(&samples, "deployql_refusals_total", &[("reason", reason)]);
    assert_eq!(refusals("query_too_deep"), 1.0);
    assert_eq!(refusals("unauthenticated"), 2.0);
    let unauthorized = [("route", "/graphql"), ("status", "401")];
    assert_eq!(metric_sum(&samples, "deployql_http_requests_total", &unauthorized), 2.0);
}

#[tokio::test]
async fn subscription_and_socket_gauges_go_up_and_down() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let server = ServerProcess::start(&app.database_url()).await;
    let mut socket = WsClient::connect(server.addr, TRANSPORT_WS).await;
    socket.init_with_token(&app.token(user)).await;
    let watch = "subscription Watch($id: ID!) { deploymentUpdated(id: $id) { id status } }";
    socket.subscribe("1", watch, json!({ "id": id })).await;
    socket.next_payload(Duration::from_secs(5)).await;
    assert_eq!(server.metric("deployql_live_subscriptions").await, 1);
    assert_eq!(server.metric("deployql_websocket_connections").await, 1);
    assert_eq!(server.metric("deployql_live_messages_total").await, 1);
    let samples = server.scrape().await;
    let watched =
        [("operation_name", "Watch"), ("operation_type", "subscription"), ("outcome", "ok")];
    assert_eq!(metric_sum(&samples, "deployql_graphql_operations_total", &watched), 1.0);

    socket.send(json!({ "id": "1", "type": "complete" })).await;
    let closed = async {
        while server.metric("deployql_live_subscriptions").await != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), closed).await.expect("subscription ended");
    drop(socket);
    let gone = async {
        while server.metric("deployql_websocket_connections").await != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), gone).await.expect("socket gone");
    assert_eq!(server.metric("deployql_live_subscriptions").await, 0);
}

/// Every line the requests answered before SIGTERM logged is in the log
/// once the process has exited, however soon after them the signal came
/// (lines are written in batches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_is_lost_on_sigterm() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let dir = tempdir();
    let log = dir.join("server.log");
    let env = [("JWT_SECRET", SECRET), ("LOG_FORMAT", "json"), ("RUST_LOG", "info")];
    let mut server = ServerProcess::spawn_with_log(&app.database_url(), &env, &log);
    server.wait_ready().await;
    let token = app.token(user);
    const REQUESTS: usize = 300;
    let lookup = json!({ "query": STATUS_PAGE, "variables": { "id": id } });
    for _ in 0..REQUESTS {
        let (status, _, body) = post(server.addr, Some(&token), &[], lookup.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = server.wait(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<Value> =
        text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let count = |message: &str| lines.iter().filter(|line| line["message"] == message).count();
    assert_eq!(count("graphql operation"), REQUESTS, "one line per operation");
    assert_eq!(count("status lookup"), REQUESTS, "one line per lookup");
}

#[tokio::test]
async fn a_request_id_leads_from_the_response_to_the_json_log_line() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let dir = tempdir();
    let log = dir.join("server.log");
    let env = [("JWT_SECRET", SECRET), ("LOG_FORMAT", "json"), ("RUST_LOG", "info")];
    let server = ServerProcess::spawn_with_log(&app.database_url(), &env, &log);
    server.wait_ready().await;
    let token = app.token(user);
    let missing = json!({ "query": STATUS_PAGE, "variables": { "id": Uuid::new_v4() } });

    // Given by the client: kept, echoed, and in the error's extensions.
    let given = [("x-request-id", "bug-report-4711")];
    let (_, headers, body) = post(server.addr, Some(&token), &given, missing.clone()).await;
    assert_eq!(headers["x-request-id"], "bug-report-4711");
    assert_eq!(body["errors"][0]["extensions"]["requestId"], "bug-report-4711", "{body}");
    // Generated when absent or malformed.
    let malformed = [("x-request-id", "no spaces allowed")];
    let (_, headers, body) = post(server.addr, Some(&token), &malformed, missing).await;
    let generated = headers["x-request-id"].to_str().expect("ascii").to_owned();
    assert!(Uuid::parse_str(&generated).is_ok(), "{generated}");
    assert_eq!(body["errors"][0]["extensions"]["requestId"], generated.as_str());
    // Refused before any operation ran: still carries it.
    let (_, headers, body) = post(server.addr, None, &[], json!({ "query": "{ a }" })).await;
    assert_eq!(
        body["errors"][0]["extensions"]["requestId"],
        headers["x-request-id"].to_str().expect("ascii")
    );

    // Named by id: the line names the document; an unknown id is refused
    // in a line of its own.
    let hash = deployql::digest::sha256_hex(STATUS_PAGE);
    let by_hash = json!({ "query": STATUS_PAGE, "variables": { "id": Uuid::new_v4() },
        "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } });
    post(server.addr, Some(&token), &[("x-request-id", "persisted-1")], by_hash).await;
    let unknown = json!({ "documentId": "sha256:nope" });
    post(server.addr, Some(&token), &[("x-request-id", "persisted-2")], unknown).await;

    let logged = |id: &str, message: &str| {
        let text = std::fs::read_to_string(&log).expect("log");
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["request_id"] == id && line["message"] == message)
    };
    let line = |id: &str| logged(id, "graphql operation");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // Lines are written in batches: wait for the last request's.
    let refusal = || logged("persisted-2", "persisted document refused");
    while (line(&generated).is_none() || line("persisted-1").is_none() || refusal().is_none())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in ["bug-report-4711", generated.as_str()] {
        let line = line(id).unwrap_or_else(|| panic!("no JSON log line for {id}"));
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["user"], user.to_string());
        assert_eq!(line["operation_name"], "StatusPage");
        assert_eq!(line["operation_type"], "query");
        assert_eq!(line["outcome"], "NOT_FOUND");
        assert_eq!(line["statements"], 1);
        assert_eq!(line["db"], "primary", "the server its statements ran on");
        assert!(line["duration_ms"].as_f64().is_some(), "{line}");
        let spans = line["spans"].as_array().expect("the request's span");
        assert!(spans.iter().any(|span| span["request_id"] == id), "{line}");
    }
    let persisted = line("persisted-1").expect("the persisted operation's line");
    assert_eq!(persisted["document_id"], hash.as_str(), "{persisted}");
    assert!(line(&generated).expect("line")["document_id"].is_null(), "text has no id");
    let refused = refusal().expect("the refusal's line");
    assert_eq!(refused["document_id"], "sha256:nope", "{refused}");
    assert_eq!(refused["outcome"], "PERSISTED_QUERY_NOT_FOUND", "{refused}");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains(&token), "a token was logged");
    assert!(!text.contains("deployment(id:"), "a query's text was logged at info");
}

/// Spans an OTLP/HTTP receiver got, decoded from protobuf.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Span>>>);

async fn receive(State(received): State<Received>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
    let spans = request.resource_spans.into_iter().flat_map(|r| r.scope_spans);
    received.0.lock().expect("spans").extend(spans.flat_map(|s| s.spans));
    ""
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| match &a.value.as_ref()?.value {
        Some(any_value::Value::StringValue(value)) => Some(value.clone()),
        Some(any_value::Value::IntValue(value)) => Some(value.to_string()),
        _ => None,
    })
}

#[tokio::test]
async fn traces_reach_an_otlp_receiver_as_children_of_the_caller_s_span() {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let receiver = listener.local_addr().expect("addr");
    let routes = axum::Router::new()
        .route("/v1/traces", axum::routing::post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, routes).await });

    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let endpoint = format!("http://{receiver}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_SERVICE_NAME", "deployql-under-test"),
    ];
    let server = ServerProcess::start_with(&app.database_url(), &env).await;
    let (trace_id, parent_id) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let traceparent = format!("00-{trace_id}-{parent_id}-01");
    // Registered as an automatic persisted query: the span names its hash.
    let hash = deployql::digest::sha256_hex(STATUS_PAGE);
    let body = json!({ "query": STATUS_PAGE, "variables": { "id": id },
        "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } });
    let headers = [("traceparent", traceparent.as_str()), ("x-request-id", "traced-1")];
    let (status, _, body) = post(server.addr, Some(&app.token(user)), &headers, body).await;
    assert_eq!(status, 200, "{body}");

    let ours = || -> Vec<Span> {
        let spans = received.0.lock().expect("spans");
        spans.iter().filter(|s| hex(&s.trace_id) == trace_id).cloned().collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ours().iter().any(|s| s.name == "POST /graphql") && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spans = ours();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let named = |name: &str| {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no {name} in {names:?}"))
    };
    let request = named("POST /graphql");
    assert_eq!(hex(&request.parent_span_id), parent_id, "a child of the caller's span");
    assert_eq!(attribute(request, "request_id").as_deref(), Some("traced-1"));
    assert_eq!(attribute(request, "http.response.status_code").as_deref(), Some("200"));
    let operation = named("query StatusPage");
    assert_eq!(operation.parent_span_id, request.span_id);
    assert_eq!(attribute(operation, "graphql.operation.name").as_deref(), Some("StatusPage"));
    assert_eq!(attribute(operation, "graphql.document.id"), Some(hash));
    // The operation's statement (the registration's are the request's).
    let statement = spans
        .iter()
        .find(|s| {
            attribute(s, "db.statement").is_some_and(|sql| !sql.contains("persisted_queries"))
        })
        .unwrap_or_else(|| panic!("no SQL statement span in {names:?}"));
    let sql = attribute(statement, "db.statement").unwrap_or_default();
    assert!(!sql.contains(&id.to_string()) && !sql.contains(&id.simple().to_string()), "{sql}");
    let mut ancestor = statement.parent_span_id.clone();
    while ancestor != operation.span_id {
        let parent = spans.iter().find(|s| s.span_id == ancestor);
        ancestor = parent
            .unwrap_or_else(|| panic!("the statement is under the operation"))
            .parent_span_id
            .clone();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("deployql-observability-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
async fn operation_names_beyond_the_first_thousand_count_as_other() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    for n in 0..1_005 {
        app.gql(user, &format!("query Name{n} {{ __typename }}"), json!({})).await;
    }
    let text = app.scrape().await;
    let samples = parse_metrics(&text);
    let names: std::collections::HashSet<&str> = samples
        .iter()
        .filter(|s| s.metric == "deployql_graphql_operations_total")
        .filter_map(|s| s.labels.get("operation_name"))
        .collect();
    assert_eq!(names.len(), 1_001, "1,000 names and `other`");
    let other = [("operation_name", "other")];
    assert_eq!(metric_sum(&samples, "deployql_graphql_operations_total", &other), 5.0);
}

#[tokio::test]
async fn the_dashboard_charts_only_series_the_server_exports() {
    let dashboard = include_str!("../../grafana/deployql.json");
    let mut charted: Vec<&str> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("deployql_"))
        .map(|name| {
            ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n))
        })
        .collect();
    charted.sort_unstable();
    charted.dedup();
    assert!(charted.len() > 15, "{charted:?}");

    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let server = ServerProcess::start(&app.database_url()).await;
    let body = json!({ "query": STATUS_PAGE, "variables": { "id": id } });
    post(server.addr, Some(&app.token(user)), &[], body).await;
    post(server.addr, None, &[], json!({ "query": "{ a }" })).await;
    let mut socket = WsClient::connect(server.addr, TRANSPORT_WS).await;
    socket.init_with_token(&app.token(user)).await;
    let watch =
        "subscription { deploymentUpdated(id: $id) { id } }".replace("$id", &format!("\"{id}\""));
    socket.subscribe("1", &watch, json!({})).await;
    socket.next_payload(Duration::from_secs(5)).await;

    let exported: std::collections::HashSet<String> =
        server.scrape().await.into_iter().map(|sample| sample.metric).collect();
    for name in charted {
        // The JWKS counters exist only with JWKS_URL.
        if name.starts_with("deployql_jwks_") {
            continue;
        }
        let histogram = format!("{name}_count");
        assert!(
            exported.contains(name) || exported.contains(&histogram),
            "the dashboard charts {name}, which /metrics does not export"
        );
    }
}
