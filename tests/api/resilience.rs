//! No client, with or without a token, can take the server away from
//! others: stalled bodies, silent sockets, huge heads, connection floods and
//! protocol abuse are bounded; shutdown is clean. Each case against the
//! real binary where the transport matters.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::json;
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, ServerProcess, TestApp, error_code, metric_sum, post_graphql},
    live::WATCH,
    ws_client::{Event, TRANSPORT_WS, WsClient},
};

const FAST: [(&str, &str); 3] =
    [("BODY_READ_TIMEOUT", "1s"), ("HEADER_READ_TIMEOUT", "1s"), ("QUEUE_TIMEOUT", "1s")];

/// Sends `head` (and nothing more) and returns the socket.
fn raw(server: &ServerProcess, head: &str) -> TcpStream {
    let mut socket = TcpStream::connect(server.addr).expect("connect");
    socket.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    socket.write_all(head.as_bytes()).expect("write");
    socket
}

/// What the server sends until it closes (or the read timeout).
fn read_all(socket: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_hold_no_slot_and_end_in_408() {
    let app = TestApp::sqlite().await;
    let server = ServerProcess::start_with(&app.database_url(), &FAST).await;
    let token = app.token(Uuid::new_v4());
    // More stalled requests than slots (32), half of them without a token.
    let stalled: Vec<TcpStream> = (0..40)
        .map(|n| {
            let auth = if n % 2 == 0 { format!("authorization: Bearer {token}\r\n") } else { String::new() };
            raw(&server, &format!(
                "POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{auth}content-length: 100\r\n\r\n{{\"qu"
            ))
        })
        .collect();
    let started = Instant::now();
    let body = post_graphql(server.addr, &token, "{ deployments { totalCount } }", json!({})).await;
    assert_eq!(body["data"]["deployments"]["totalCount"], 0, "{body}");
    assert!(started.elapsed() < Duration::from_secs(1), "served in {:?}", started.elapsed());
    let answers = tokio::task::spawn_blocking(move || {
        stalled.into_iter().map(|mut socket| read_all(&mut socket)).collect::<Vec<_>>()
    })
    .await
    .expect("read");
    for (n, answer) in answers.iter().enumerate() {
        // Anonymous ones are refused without waiting for their body.
        let expected = if n % 2 == 0 { "HTTP/1.1 408" } else { "HTTP/1.1 401" };
        assert!(answer.starts_with(expected), "{n}: {answer}");
    }
    let refused = server.scrape().await;
    let reason = |reason| metric_sum(&refused, "deployql_refusals_total", &[("reason", reason)]);
    assert_eq!(reason("body_read_timeout"), 20.0);
    assert_eq!(reason("unauthenticated"), 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_huge_heads_refused() {
    let app = TestApp::sqlite().await;
    let server = ServerProcess::start_with(&app.database_url(), &FAST).await;
    let started = Instant::now();
    let mut silent = raw(&server, "");
    let answer = tokio::task::spawn_blocking(move || read_all(&mut silent)).await.expect("read");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");

    let huge =
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-padding: {}\r\n\r\n", "a".repeat(20_000));
    let mut socket = raw(&server, &huge);
    let answer = tokio::task::spawn_blocking(move || read_all(&mut socket)).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Counted when the connection's task ends, which may be just after the
    // client has read the answer and the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (too_large, timed_out) = loop {
        let refused = server.scrape().await;
        let reason =
            |reason| metric_sum(&refused, "deployql_refusals_total", &[("reason", reason)]);
        let counts = (reason("head_too_large"), reason("header_read_timeout"));
        if counts.0 >= 1.0 && counts.1 >= 1.0 || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(too_large, 1.0);
    assert!(timed_out >= 1.0, "the silent connection");

    let long_token = "x".repeat(9_000);
    let body = reqwest::Client::new()
        .post(format!("http://{}/graphql", server.addr))
        .bearer_auth(&long_token)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("request");
    assert_eq!(body.status(), 401);
    let body: serde_json::Value = body.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["reason"], "MALFORMED", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_at_once() {
    let app = TestApp::sqlite().await;
    let server = ServerProcess::start_with(&app.database_url(), &[("MAX_CONNECTIONS", "4")]).await;
    // Let the readiness probe's connection close, so the four below are all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held: Vec<TcpStream> = (0..4).map(|_| raw(&server, "")).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = raw(&server, "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || read_all(&mut extra)).await.expect("read");
    assert!(answer.is_empty(), "closed without an answer: {answer}");
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let healthy = reqwest::get(format!("http://{}/healthz", server.addr)).await.expect("healthz");
    assert_eq!(healthy.status(), 200);
    let refused = server.scrape().await;
    let closed = [("reason", "too_many_connections")];
    assert!(metric_sum(&refused, "deployql_refusals_total", &closed) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_websockets_with_1001_and_exits_0() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let mut server = ServerProcess::start(&app.database_url()).await;
    let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;
    ws.subscribe("1", WATCH, json!({ "id": id })).await;
    ws.next_payload(Duration::from_secs(2)).await;

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert_eq!(ws.recv(Duration::from_secs(5)).await, Event::Closed(Some(1001)));
    let status = server.wait(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
}

async fn websocket_protocol_abuse_closes_with_the_protocols_codes(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let addr = app.serve().await;

    // Bounds, not expectations: each answer comes in milliseconds, but the
    // suite runs next to tests that load both cores.
    const PATIENCE: Duration = Duration::from_secs(10);

    let mut ws = WsClient::connect(addr, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;
    ws.send(json!({ "type": "bogus" })).await;
    assert_eq!(ws.recv(PATIENCE).await, Event::Closed(Some(4400)));

    let mut ws = WsClient::connect(addr, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;
    // The server stops reading at the frame's header: a client that only
    // wrote would sit in its send until the server gave up on it.
    let payload = json!({ "query": "x".repeat(2 * 1024 * 1024), "variables": {} });
    let big = json!({ "id": "big", "type": "subscribe", "payload": payload });
    assert_eq!(ws.send_until_closed(big, PATIENCE).await, Event::Closed(Some(1009)));

    let mut ws = WsClient::connect(addr, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;
    ws.subscribe("dup", WATCH, json!({ "id": id })).await;
    ws.next_payload(PATIENCE).await;
    ws.subscribe("dup", WATCH, json!({ "id": id })).await;
    assert_eq!(ws.recv(PATIENCE).await, Event::Closed(Some(4409)));
}

async fn error_messages_quote_at_most_64_characters_of_input(app: &TestApp) {
    let user = Uuid::new_v4();
    let name = "x".repeat(900_000);
    let create =
        "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id } }";
    let input = json!({ "name": name, "targetReplicas": 1,
                        "resources": { "cpuCores": 1, "memoryMb": 64, "storageGb": 1 } });
    let body = app.gql(user, create, json!({ "input": input })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"));
    let message = body["errors"][0]["message"].as_str().expect("message");
    assert!(message.len() < 300, "{} characters", message.len());

    let field = "y".repeat(100_000);
    let body = app.gql(user, &format!("{{ {field} }}"), json!({})).await;
    let message = body["errors"][0]["message"].as_str().expect("message");
    assert!(message.len() < 300, "{} characters", message.len());
    let lookup = app
        .gql(user, "query($id: ID!) { deployment(id: $id) { id } }", json!({ "id": field }))
        .await;
    let message = lookup["errors"][0]["message"].as_str().expect("message");
    assert!(message.len() < 300, "{} characters", message.len());
}

backend_tests!(
    websocket_protocol_abuse_closes_with_the_protocols_codes,
    error_messages_quote_at_most_64_characters_of_input,
);
