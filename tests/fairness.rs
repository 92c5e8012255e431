//! Fairness between users, in a test binary of its own: cargo runs test
//! binaries one after another, so this latency measurement never shares the
//! machine with the parallel API suite. Four heavy clients of one user must
//! leave another user's status lookups within 3× of their idle p50.

// The API suite's helpers, shared; this binary uses a few of them.
#![allow(unreachable_pub, dead_code, unused_imports)]

#[path = "api/helpers/mod.rs"]
mod helpers;

use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{NewDeployment, ServerProcess, TestApp, post_graphql};

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn lookups(server: &ServerProcess, token: &str, id: Uuid, n: usize) -> Duration {
    let query = "query($id: ID!) { deployment(id: $id) { id health replicas { status } } }";
    let mut took = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let body = post_graphql(server.addr, token, query, json!({ "id": id })).await;
        assert!(body["errors"].is_null(), "{body}");
        took.push(started.elapsed());
    }
    median(took)
}

/// With the default share (1 here: a pool of 4), measured 1.3-1.9× idle;
/// with a share of 2, 3.3-3.8×, which this test refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_heavy_clients_leave_others_their_latency() {
    let Some(app) = TestApp::postgres().await else { return };
    let (heavy, other) = (Uuid::new_v4(), Uuid::new_v4());
    for _ in 0..50 {
        app.insert(heavy, NewDeployment { history: 10, ..Default::default() }).await;
    }
    let id = app.insert(other, NewDeployment::default()).await;
    // The pool of a 2-core machine, whatever this one has, so the share is 1.
    let server =
        ServerProcess::start_with(&app.database_url(), &[("DB_MAX_CONNECTIONS", "4")]).await;
    let other_token = app.token(other);
    let idle = lookups(&server, &other_token, id, 30).await;

    // Four clients of one user, each sending the heaviest request allowed
    // (50 statements) over and over.
    let heavy_query: String = (0..25)
        .map(|n| format!("a{n}: deployments(first: 50) {{ totalCount nodes {{ replicas {{ id }} statusHistory {{ reason }} }} }} "))
        .collect();
    let heavy_query = format!("{{ {heavy_query} }}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, token, query, stop) =
                (server.addr, app.token(heavy), heavy_query.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    post_graphql(addr, &token, &query, json!({})).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loaded = lookups(&server, &other_token, id, 30).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.expect("heavy client");
    }
    eprintln!("other user's p50: idle {idle:?}, beside four heavy clients {loaded:?}");
    assert!(loaded <= idle * 3, "idle {idle:?}, loaded {loaded:?}");
}
