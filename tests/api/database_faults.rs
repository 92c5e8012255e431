//! A failing database fails requests fast, with a retryable code, and the
//! server heals by itself: the real binary on Postgres behind a small TCP
//! proxy that can pass traffic, hold it (a blackholed network), or delay it.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, ServerProcess, TestApp, error_code},
    pooler::PgBouncer,
};

/// Held traffic is this; anything else is a delay in milliseconds.
const BLACKHOLE: u64 = u64::MAX;

/// Forwards TCP to `upstream`, per chunk as `mode` says.
struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU64>,
}

impl FaultProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(AtomicU64::new(0));
        let shared = mode.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mode = shared.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    // Latency on the way in only: one delay per round trip.
                    tokio::spawn(pipe(client_read, server_write, mode.clone(), true));
                    pipe(server_read, client_write, mode, false).await;
                });
            }
        });
        Self { addr, mode }
    }

    fn set(&self, mode: u64) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<AtomicU64>,
    delayed: bool,
) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer).await else { return };
        if read == 0 {
            return;
        }
        loop {
            match mode.load(Ordering::SeqCst) {
                BLACKHOLE => tokio::time::sleep(Duration::from_millis(20)).await,
                0 => break,
                millis if delayed => {
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    break;
                }
                _ => break,
            }
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// `url` with its host and port replaced by `addr`, without TLS (the proxy
/// speaks plain TCP, and a TLS offer would cost a round trip per connection).
fn through(url: &str, addr: SocketAddr) -> String {
    let at = url.find('@').map_or_else(|| url.find("://").map_or(0, |i| i + 3), |i| i + 1);
    let end = url[at..].find('/').map_or(url.len(), |i| at + i);
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{}{addr}{}{separator}sslmode=disable", &url[..at], &url[end..])
}

fn upstream(url: &str) -> SocketAddr {
    let at = url.find('@').map_or(0, |i| i + 1);
    let end = url[at..].find('/').map_or(url.len(), |i| at + i);
    let authority = &url[at..end];
    let authority =
        if authority.contains(':') { authority.to_owned() } else { format!("{authority}:5432") };
    std::net::ToSocketAddrs::to_socket_addrs(&authority.replace("localhost", "127.0.0.1"))
        .expect("resolve")
        .next()
        .expect("an address")
}

async fn lookup(server: &ServerProcess, token: &str, id: Uuid) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("http://{}/graphql", server.addr))
        .bearer_auth(token)
        .json(&json!({ "query": "query($id: ID!) { deployment(id: $id) { id health } }", "variables": { "id": id } }))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_or_slow_database_fails_fast_and_heals() {
    let Some(app) = TestApp::postgres().await else { return };
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let url = app.database_url();
    let proxy = FaultProxy::start(upstream(&url)).await;
    let env = [("REQUEST_TIMEOUT", "2500ms"), ("DB_STATEMENT_TIMEOUT", "1s")];
    let server = ServerProcess::start_with(&through(&url, proxy.addr), &env).await;
    let token = app.token(user);
    assert_eq!(lookup(&server, &token, id).await.0, 200);

    proxy.set(BLACKHOLE);
    // Five users at once (one user's share of slots is smaller than five).
    let tokens: Vec<String> = (0..5).map(|_| app.token(Uuid::new_v4())).collect();
    let lookups =
        futures_util::future::join_all(tokens.iter().map(|t| lookup(&server, t, id))).await;
    for (status, body, took) in lookups {
        assert_eq!(status, 503, "{body}");
        assert_eq!(error_code(&body), Some("SERVICE_UNAVAILABLE"), "{body}");
        assert!(took < Duration::from_secs(3), "failed after {took:?}");
    }

    proxy.set(0);
    let healed = Instant::now();
    loop {
        let (status, body, _) = lookup(&server, &token, id).await;
        if status == 200 && body["data"]["deployment"]["id"] == id.to_string() {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(2),
            "not back after {:?}: {body}",
            healed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    proxy.set(500);
    for _ in 0..3 {
        let (mut status, mut body, mut took) = lookup(&server, &token, id).await;
        if status == 503 {
            // A connection opened now spends round trips on its handshake and
            // may miss the acquire timeout once: the client retries, as told.
            (status, body, took) = lookup(&server, &token, id).await;
        }
        assert_eq!(status, 200, "slow but served: {body}");
        assert!(took >= Duration::from_millis(500), "{took:?}");
    }
    let ready = reqwest::get(format!("http://{}/readyz", server.addr)).await.expect("readyz");
    assert_eq!(ready.status(), 200, "latency alone does not make the instance unready");
    assert!(server.metric("deployql_database_unavailable_total").await > 0);
    // The document was validated by the first lookup: every lookup since,
    // failed or slow, was a status read answered directly.
    assert!(server.metric("deployql_graphql_direct_reads_total").await >= 5);
}

/// `clients` lookups at once, each by a user of its own.
async fn at_once(
    app: &TestApp,
    server: &ServerProcess,
    id: Uuid,
    clients: usize,
) -> Vec<(u16, Value, Duration)> {
    let tokens: Vec<String> = (0..clients).map(|_| app.token(Uuid::new_v4())).collect();
    futures_util::future::join_all(tokens.iter().map(|token| lookup(server, token, id))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_deadline_bounds_every_answer_and_latency_alone_fails_nothing() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.database_url();
    let proxy = FaultProxy::start(upstream(&url)).await;
    one_deadline_and_latency(&app, &proxy, &through(&url, proxy.addr), &[]).await;
}

/// The same through PgBouncer in transaction mode: deployql, the faulty
/// network, the pooler, Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_pgbouncer_one_deadline_bounds_every_answer_and_latency_fails_nothing() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.database_url();
    let Some(pooler) = PgBouncer::start(&url).await else { return };
    let proxy = FaultProxy::start(pooler.addr).await;
    let pooled = through(&pooler.url_for(&url), proxy.addr);
    one_deadline_and_latency(&app, &proxy, &pooled, &[("DB_PREPARED_STATEMENTS", "false")]).await;
}

/// With the database behind `proxy` blackholed, 16 clients at once all get
/// 503 within REQUEST_TIMEOUT; with 500 ms added to every round trip, 8
/// at once, three rounds, all are served.
async fn one_deadline_and_latency(
    app: &TestApp,
    proxy: &FaultProxy,
    url: &str,
    env: &[(&str, &str)],
) {
    let id = app.insert(Uuid::new_v4(), NewDeployment::default()).await;
    // Default timeouts: REQUEST_TIMEOUT 3 s, the others within it.
    let server = ServerProcess::start_with(url, env).await;
    assert!(at_once(app, &server, id, 4).await.iter().all(|(status, ..)| *status == 200));

    proxy.set(BLACKHOLE);
    for (status, body, took) in at_once(app, &server, id, 16).await {
        assert_eq!(status, 503, "{body}");
        assert_eq!(error_code(&body), Some("SERVICE_UNAVAILABLE"), "{body}");
        // The deadline, and the few milliseconds of writing the answer.
        assert!(took < Duration::from_millis(3300), "answered after {took:?}");
    }

    // Half a second added to every round trip, eight clients at once:
    // slower, and every one served, without a retry.
    proxy.set(500);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for round in 0..3 {
        for (status, body, took) in at_once(app, &server, id, 8).await {
            assert_eq!(status, 200, "round {round}, after {took:?}: {body}");
            assert!(took >= Duration::from_millis(500), "{took:?}");
        }
    }
}
