//! When what deployql reports to fails: a log reader that stops reading
//! stalls nothing (lines are dropped and counted instead), and a trace
//! collector that refuses spans is seen in the log and in `/metrics`.

use std::{
    io::{BufRead, BufReader},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{extract::State, http::StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{SECRET, ServerProcess, TestApp};

/// How long the log reader stops reading (the reproduction).
const STALL: Duration = Duration::from_secs(20);
/// Concurrent clients during the stall.
const CLIENTS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_reader_that_stops_reading_stalls_nothing_and_the_lost_lines_are_counted() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let token = app.token(user);
    let env = [("LOG_FORMAT", "json"), ("RUST_LOG", "info")];
    // Nobody reads the server's stderr until the stall is over.
    let (server, stderr) = ServerProcess::spawn_with_piped_log(&app.database_url(), &env);
    server.wait_ready().await;
    let addr = server.addr;

    let answered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (answered, stop, token) = (answered.clone(), stop.clone(), token.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let url = format!("http://{addr}/graphql");
            // A name long enough that the lines soon fill the buffer.
            let query = format!("query {} {{ __typename }}", "Stalled".repeat(40));
            while !stop.load(Ordering::Relaxed) {
                let sent = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "query": query }))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let answer: Value = sent.expect("answered").json().await.expect("json");
                assert_eq!(answer["data"]["__typename"], "Query", "{answer}");
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let health = reqwest::Client::new();
    let (mut slowest, mut checks) = (Duration::ZERO, 0);
    let started = Instant::now();
    while started.elapsed() < STALL {
        let asked = Instant::now();
        let response = health
            .get(format!("http://{addr}/healthz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("/healthz answered");
        assert!(response.status().is_success());
        slowest = slowest.max(asked.elapsed());
        checks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client");
    }
    let served = answered.load(Ordering::Relaxed);
    let dropped = server.metric("deployql_log_lines_dropped_total").await;
    assert!(slowest < Duration::from_millis(100), "/healthz took {slowest:?} (of {checks})");

    // The reader resumes: what was kept arrives, then a line saying how
    // many were lost.
    let lines = Arc::new(Mutex::new(Vec::<Value>::new()));
    let reading = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(line) = serde_json::from_str(&line) {
                reading.lock().expect("lines").push(line);
            }
        }
    });
    let count = |message: &str| {
        let lines = lines.lock().expect("lines");
        lines.iter().filter(|line| line["message"] == message).count() as u64
    };
    let reported = || {
        let lines = lines.lock().expect("lines");
        lines.iter().filter_map(|line| line["dropped_lines"].as_u64()).sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while (count("graphql operation") + dropped < served || reported() < dropped)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logged = count("graphql operation");
    assert!(dropped > 0, "the stall dropped nothing ({served} served): not a test of dropping");
    assert!(logged > 0, "every line was dropped");
    assert_eq!(logged + dropped, served, "{logged} logged + {dropped} dropped");
    assert_eq!(reported(), dropped, "the drop report");
}

/// An OTLP receiver that refuses spans while `refusing`, and counts batches.
#[derive(Clone, Default)]
struct Collector {
    refusing: Arc<AtomicBool>,
    batches: Arc<AtomicU64>,
}

async fn collect(State(collector): State<Collector>) -> StatusCode {
    collector.batches.fetch_add(1, Ordering::Relaxed);
    if collector.refusing.load(Ordering::Relaxed) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_trace_exports_are_logged_and_counted_and_so_is_the_recovery() {
    let collector = Collector { refusing: Arc::new(AtomicBool::new(true)), ..Default::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let receiver = listener.local_addr().expect("addr");
    let routes = axum::Router::new()
        .route("/v1/traces", axum::routing::post(collect))
        .with_state(collector.clone());
    tokio::spawn(async move { axum::serve(listener, routes).await });

    let app = TestApp::sqlite().await;
    let dir = std::env::temp_dir().join(format!("deployql-traces-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("server.log");
    let endpoint = format!("http://{receiver}");
    let env = [
        ("JWT_SECRET", SECRET),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let server = ServerProcess::spawn_with_log(&app.database_url(), &env, &log);
    server.wait_ready().await;
    let token = app.token(Uuid::new_v4());
    let logged = |message: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["message"] == message)
            .count()
    };
    let failing = "trace export failing: spans are being lost (see \
                   deployql_trace_export_failures_total)";
    requests_until(&server, &token, || logged(failing) > 0).await;
    let failures = server.metric("deployql_trace_export_failures_total").await;
    assert!(failures >= 1, "{failures}");
    collector.refusing.store(false, Ordering::Relaxed);
    requests_until(&server, &token, || logged("trace export recovered") > 0).await;
    // Logged once per change, not per batch.
    assert_eq!(logged(failing), 1);
    let after = server.metric("deployql_trace_export_failures_total").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.metric("deployql_trace_export_failures_total").await, after);
    let _ = std::fs::remove_dir_all(dir);
}

/// Sends a query every 100 ms (each a span to export) until `done`.
async fn requests_until(server: &ServerProcess, token: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting");
        crate::helpers::post_graphql(server.addr, token, "{ __typename }", Value::Null).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn text_logs_written_to_a_file_hold_no_colour_codes() {
    let app = TestApp::sqlite().await;
    let dir = std::env::temp_dir().join(format!("deployql-colour-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("server.log");
    let env = [("JWT_SECRET", SECRET), ("LOG_FORMAT", "text"), ("RUST_LOG", "info")];
    let server = ServerProcess::spawn_with_log(&app.database_url(), &env, &log);
    server.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("deployql listening") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains("deployql listening"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a log file:\n{text}");
    let _ = std::fs::remove_dir_all(dir);
}
