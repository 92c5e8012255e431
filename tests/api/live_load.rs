//! Many subscriptions on one instance, changes written by raw SQL at a steady
//! rate, each delivered within a second. Reduced size by default; the full
//! figure: `LIVE_LOAD_SUBSCRIPTIONS=1000 LIVE_LOAD_RATE=100 LIVE_LOAD_SECONDS=10
//! cargo test --release live_load -- --nocapture` (with TEST_DATABASE_URL).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use entity::{DeploymentStatus, ReplicaStatus, deployment, deployment_replica};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use serde_json::json;
use uuid::Uuid;

use crate::{
    helpers::{ServerProcess, TestApp, micros},
    ws_client::{Event, TRANSPORT_WS, WsClient},
};

const SUBSCRIPTIONS_PER_SOCKET: usize = 50;
const QUERY: &str =
    "subscription($id: ID!) { deploymentUpdated(id: $id) { replicas { containerId } } }";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_load_delivers_every_change_within_a_second() {
    let Some(app) = TestApp::postgres().await else { return };
    let (subscriptions, rate, seconds) = (
        knob("LIVE_LOAD_SUBSCRIPTIONS", 200),
        knob("LIVE_LOAD_RATE", 50),
        knob("LIVE_LOAD_SECONDS", 3),
    );
    let server = ServerProcess::start(&app.postgres_url().expect("postgres")).await;
    let user = Uuid::new_v4();
    let ids = insert_deployments(&app, user, subscriptions).await;
    let token = app.token(user);

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for chunk in ids.chunks(SUBSCRIPTIONS_PER_SOCKET) {
        let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
        ws.init_with_token(&token).await;
        for (n, id) in chunk.iter().enumerate() {
            ws.subscribe(&n.to_string(), QUERY, json!({ "id": id })).await;
        }
        for _ in chunk {
            ws.next_payload(Duration::from_secs(10)).await;
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

    let (subscribed_rss, _) = server.memory_mb();
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
    // Give the last changes a second to arrive, then stop the readers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("reader");
    }

    let mut latencies = latencies.lock().expect("latencies").clone();
    latencies.sort();
    let percentile = |p: usize| {
        latencies.get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1))).copied()
    };
    let (p50, p99) = (percentile(50).unwrap_or_default(), percentile(99).unwrap_or_default());
    let (end_rss, peak_rss) = server.memory_mb();
    println!(
        "live load: {subscriptions} subscriptions, {changes} changes at {rate}/s: {} delivered, \
         p50 {p50:?}, p99 {p99:?}, max {:?}; server RSS {subscribed_rss} MiB subscribed, \
         {end_rss} MiB after, peak {peak_rss} MiB",
        latencies.len(),
        latencies.last().copied().unwrap_or_default()
    );
    assert_eq!(latencies.len(), changes, "every change reaches its subscriber");
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
}
