//! Live updates under load, against one `deployql serve` process on
//! Postgres: several users' subscriptions spread over WebSockets, several
//! per deployment, changes written by raw SQL at a steady rate (each stamped
//! with its send time and timed on arrival at every subscriber), and another
//! user's status lookups timed throughout, first with no subscription open,
//! then with all of them. Reduced size in CI; the benchmark (release build):
//!
//!     LIVE_LOAD_SUBSCRIPTIONS=10000 LIVE_LOAD_CONNECTIONS=100 LIVE_LOAD_DEPLOYMENTS=1000 \
//!     LIVE_LOAD_USERS=10 LIVE_LOAD_RATE=200 LIVE_LOAD_SECONDS=30 \
//!     TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo test --release --test api live_load -- --nocapture

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use entity::{DeploymentStatus, ReplicaStatus, deployment, deployment_replica};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use serde_json::json;
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, ServerProcess, TestApp, micros, post_graphql},
    ws_client::{Event, TRANSPORT_WS, WsClient},
};

const QUERY: &str =
    "subscription($id: ID!) { deploymentUpdated(id: $id) { health replicas { containerId } } }";
const LOOKUP: &str = "query($id: ID!) { deployment(id: $id) { id name status health \
    targetReplicas replicas { status } resources { cpuCores memoryMb } \
    statusHistory(limit: 10) { newStatus changedAt } } }";

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_micros() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()
}

async fn insert_deployments(app: &TestApp, user: Uuid, n: usize) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let at = micros(chrono::Utc::now());
    for chunk in ids.chunks(500) {
        let rows = chunk.iter().enumerate().map(|(n, id)| deployment::ActiveModel {
            id: Set(*id),
            user_id: Set(user),
            name: Set(format!("load-{id}-{n}")),
            status: Set(DeploymentStatus::Running),
            target_replicas: Set(1),
            created_at: Set(at),
            updated_at: Set(at),
            deleted_at: Set(None),
        });
        deployment::Entity::insert_many(rows)
            .exec_without_returning(&app.db)
            .await
            .expect("deployments");
        let replicas = chunk.iter().map(|id| deployment_replica::ActiveModel {
            id: Set(Uuid::new_v4()),
            deployment_id: Set(*id),
            node_id: Set(None),
            status: Set(ReplicaStatus::Running),
            container_id: Set(Some("initial".to_owned())),
            started_at: Set(Some(at)),
            stopped_at: Set(None),
        });
        deployment_replica::Entity::insert_many(replicas)
            .exec_without_returning(&app.db)
            .await
            .expect("replicas");
    }
    ids
}

/// p50, p99 and max of `samples`.
fn percentiles(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |p: usize| {
        samples.get((samples.len() * p / 100).min(samples.len().saturating_sub(1))).copied()
    };
    (
        at(50).unwrap_or_default(),
        at(99).unwrap_or_default(),
        samples.last().copied().unwrap_or_default(),
    )
}

/// Writes `rate` changes a second to `ids` (round robin) for `seconds`.
async fn write_changes(app: &TestApp, ids: &[Uuid], rate: usize, seconds: usize) -> usize {
    let changes = rate * seconds;
    let interval = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(1);
    let started = Instant::now();
    for n in 0..changes {
        tokio::time::sleep_until((started + interval * u32::try_from(n).unwrap_or(0)).into()).await;
        let id = ids[n % ids.len()];
        let update = format!(
            "UPDATE deployment_replicas SET container_id = '{}' WHERE deployment_id = '{id}'",
            now_micros()
        );
        app.db.execute_unprepared(&update).await.expect("update");
    }
    changes
}

/// Times sequential status lookups until `done`.
fn time_lookups(
    failures: Arc<AtomicUsize>,
    addr: std::net::SocketAddr,
    token: String,
    id: Uuid,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let mut latencies = Vec::new();
        let failures = failures.as_ref();
        while !done.load(Ordering::Relaxed) {
            let started = Instant::now();
            let body = post_graphql(addr, &token, LOOKUP, json!({ "id": id })).await;
            latencies.push(started.elapsed());
            if !body["errors"].is_null() {
                // Counted, not fatal: a previous release's figures include its failures.
                failures.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies
    })
}

/// The server's CPU time so far (user + system), from /proc.
fn cpu_time(server: &ServerProcess) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |n: usize| fields.get(n).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here; 100 Hz.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_load_delivers_every_change_to_every_watcher_and_spares_other_users() {
    let Some(app) = TestApp::postgres().await else { return };
    let subscriptions = knob("LIVE_LOAD_SUBSCRIPTIONS", 200);
    let connections = knob("LIVE_LOAD_CONNECTIONS", 4);
    let deployments = knob("LIVE_LOAD_DEPLOYMENTS", 50);
    let users = knob("LIVE_LOAD_USERS", 2);
    let (rate, seconds) = (knob("LIVE_LOAD_RATE", 50), knob("LIVE_LOAD_SECONDS", 3));
    assert!(
        subscriptions.is_multiple_of(connections)
            && connections.is_multiple_of(users)
            && deployments.is_multiple_of(users)
    );
    let per_socket = subscriptions / connections;
    assert!(per_socket <= 100, "at most 100 operations per WebSocket");
    // LIVE_LOAD_SERVER: another build of deployql (a previous release) to
    // measure the same way.
    let binary = std::env::var("LIVE_LOAD_SERVER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_deployql").to_owned());
    let url = app.postgres_url().expect("postgres");
    let caps = [("MAX_SUBSCRIPTIONS_PER_USER", "100000")];
    let server = ServerProcess::start_binary(&binary, &url, &caps).await;

    // Users, each with their share of the deployments and a token.
    let mut owners = Vec::new();
    for _ in 0..users {
        let user = Uuid::new_v4();
        owners.push((app.token(user), insert_deployments(&app, user, deployments / users).await));
    }
    let all: Vec<Uuid> = owners.iter().flat_map(|(_, ids)| ids.clone()).collect();
    let looker = Uuid::new_v4();
    let looked_up =
        app.insert(looker, NewDeployment { target: 3, history: 20, ..Default::default() }).await;

    // The lookup alone, with changes written but no subscription open.
    let baseline_seconds = seconds.min(10);
    let done = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let lookups =
        time_lookups(failures.clone(), server.addr, app.token(looker), looked_up, done.clone());
    write_changes(&app, &all, rate, baseline_seconds).await;
    done.store(true, Ordering::Relaxed);
    let mut alone = lookups.await.expect("lookups");

    // Subscriptions: each user's sockets cycle through that user's deployments.
    let started_subscribing = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut watchers_of: HashMap<Uuid, usize> = HashMap::new();
    for (socket, (token, ids)) in (0..connections).map(|n| (n, &owners[n % users])) {
        let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
        ws.init_with_token(token).await;
        for n in 0..per_socket {
            let id = ids[(socket / users * per_socket + n) % ids.len()];
            *watchers_of.entry(id).or_default() += 1;
            ws.subscribe(&n.to_string(), QUERY, json!({ "id": id })).await;
        }
        for _ in 0..per_socket {
            ws.next_payload(Duration::from_secs(30)).await;
        }
        let (latencies, done) = (latencies.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            loop {
                let message = match ws.recv(Duration::from_millis(200)).await {
                    Event::Message(message) => message,
                    Event::Silence if !done.load(Ordering::Relaxed) => continue,
                    _ => break,
                };
                let sent =
                    message["payload"]["data"]["deploymentUpdated"]["replicas"][0]["containerId"]
                        .as_str()
                        .and_then(|s| s.parse::<u128>().ok());
                if let Some(sent) = sent {
                    let latency = Duration::from_micros((now_micros().saturating_sub(sent)) as u64);
                    latencies.lock().expect("latencies").push(latency);
                }
            }
        }));
    }
    let subscribing = started_subscribing.elapsed();
    let (subscribed_rss, _) = server.memory_mb();
    let watched: Vec<Uuid> =
        all.iter().copied().filter(|id| watchers_of.contains_key(id)).collect();
    let groups = server.try_metric("deployql_live_groups").await.unwrap_or_default();
    let (statements, refetches, cpu) = (
        server.try_metric("deployql_sql_statements_total").await.unwrap_or_default(),
        server.try_metric("deployql_live_refetches_total").await.unwrap_or_default(),
        cpu_time(&server),
    );

    let lookups =
        time_lookups(failures.clone(), server.addr, app.token(looker), looked_up, done.clone());
    let changes = write_changes(&app, &watched, rate, seconds).await;
    // Give the last changes a second to arrive, then stop the readers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    done.store(true, Ordering::Relaxed);
    let mut beside = lookups.await.expect("lookups");
    for reader in readers {
        reader.await.expect("reader");
    }
    let cpu = cpu_time(&server) - cpu;
    let lookups_run = beside.len() as u64;
    let statements = server.try_metric("deployql_sql_statements_total").await.unwrap_or_default()
        - statements
        - lookups_run;
    let refetches =
        server.try_metric("deployql_live_refetches_total").await.unwrap_or_default() - refetches;

    let mut latencies = latencies.lock().expect("latencies").clone();
    let delivered = latencies.len();
    let (p50, p99, max) = percentiles(&mut latencies);
    let (alone_p50, alone_p99, _) = percentiles(&mut alone);
    let (beside_p50, beside_p99, _) = percentiles(&mut beside);
    let (end_rss, peak_rss) = server.memory_mb();
    let expected: usize = (0..changes).map(|n| watchers_of[&watched[n % watched.len()]]).sum();
    let watched = watched.len();
    println!(
        "live load: {subscriptions} subscriptions over {connections} connections, {users} users, \
         {watched} deployments watched in {groups} groups (subscribed in {subscribing:?}); \
         {changes} changes at {rate}/s: {delivered} of {expected} deliveries, p50 {p50:?}, \
         p99 {p99:?}, max {max:?}; {:.2} statements and {:.2} refetches per change; server CPU \
         {cpu:?} ({:.2} ms per change); RSS {subscribed_rss} MiB subscribed, {end_rss} MiB after, \
         peak {peak_rss} MiB; another user's status lookup p50 {beside_p50:?} p99 {beside_p99:?} \
         (no subscriptions: p50 {alone_p50:?} p99 {alone_p99:?}); {} lookups failed",
        statements as f64 / changes as f64,
        refetches as f64 / changes as f64,
        cpu.as_secs_f64() * 1e3 / changes as f64,
        failures.load(Ordering::Relaxed),
    );
    assert_eq!(delivered, expected, "every change reaches every subscriber");
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "every status lookup answered");
    if binary == env!("CARGO_BIN_EXE_deployql") {
        assert_eq!(groups as usize, watched, "one group per deployment and selection");
        assert!(statements <= changes as u64, "at most one statement per change: {statements}");
    }
}
