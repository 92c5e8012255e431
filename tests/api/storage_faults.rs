//! A write answered ok is a promise, whatever the disk does: on a SQLite
//! file in a 20 MB tmpfs filled up under eight writing clients, every
//! answer is ok or 503 `STORAGE_FULL`, every acknowledged create, scale and
//! delete is in the file afterwards (read by another program, not through
//! the server), and once space is freed writes succeed again without a
//! restart. Mounting the tmpfs needs root, which CI has.

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::ConnectionTrait as _;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{SECRET, ServerProcess};

/// Clients writing at once.
const CLIENTS: usize = 8;

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped;
/// `None` where mounting is not allowed (not root), which fails in CI.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("deployql-tmpfs-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            assert!(std::env::var_os("CI").is_none(), "CI must be able to mount a tmpfs (root)");
            eprintln!("skipped: cannot mount a tmpfs here (not root)");
            return None;
        }
        Some(Self(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
}

/// What the clients were told happened, by deployment: its target, or
/// `None` once its delete was acknowledged.
type Acknowledged = Arc<Mutex<HashMap<Uuid, Option<i64>>>>;

/// POSTs `query`; the HTTP status and the body.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> (u16, Value) {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

/// Checks an answer is ok or a storage refusal; `true` when ok.
fn ok_or_storage_full(status: u16, body: &Value, refused: &AtomicU64) -> bool {
    if status == 200 && body["errors"].is_null() {
        return true;
    }
    let error = &body["errors"][0]["extensions"];
    assert_eq!(status, 503, "neither ok nor 503: {body}");
    assert_eq!(error["code"], "SERVICE_UNAVAILABLE", "{body}");
    assert_eq!(error["reason"], "STORAGE_FULL", "{body}");
    refused.fetch_add(1, Ordering::Relaxed);
    false
}

/// One client: creates, scales and deletes its own deployments until `stop`.
async fn write_until(
    url: String,
    token: String,
    acknowledged: Acknowledged,
    refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::new();
    let create =
        "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id } }";
    let scale =
        "mutation($id: ID!, $n: Int!) { scaleDeployment(id: $id, targetReplicas: $n) { id } }";
    let delete = "mutation($id: ID!) { deleteDeployment(id: $id) { id } }";
    let mut round = 0i64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let input = json!({
            "name": format!("full-{}", Uuid::new_v4().simple()),
            "targetReplicas": 1,
            "resources": { "cpuCores": 0.5, "memoryMb": 64, "storageGb": 1 },
        });
        let (status, body) = post(&client, &url, &token, create, json!({ "input": input })).await;
        if !ok_or_storage_full(status, &body, &refused) {
            continue;
        }
        let id: Uuid = body["data"]["createDeployment"]["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("a UUID id");
        acknowledged.lock().expect("acknowledged").insert(id, Some(1));
        let target = 2 + round % 50;
        let (status, body) =
            post(&client, &url, &token, scale, json!({ "id": id, "n": target })).await;
        if ok_or_storage_full(status, &body, &refused) {
            acknowledged.lock().expect("acknowledged").insert(id, Some(target));
        }
        if round % 3 == 0 {
            let (status, body) = post(&client, &url, &token, delete, json!({ "id": id })).await;
            if ok_or_storage_full(status, &body, &refused) {
                acknowledged.lock().expect("acknowledged").insert(id, None);
            }
        }
    }
}

/// Every deployment in the file, read by Python's sqlite3 module (not
/// through the server): id (hex) -> (target, deleted).
fn rows_in(file: &Path) -> HashMap<Uuid, (i64, bool)> {
    let script = "import json, sqlite3, sys\n\
        db = sqlite3.connect(sys.argv[1])\n\
        rows = db.execute('SELECT id, target_replicas, deleted_at IS NOT NULL FROM deployments')\n\
        print(json.dumps({bytes(r[0]).hex(): [r[1], bool(r[2])] for r in rows}))";
    let output = Command::new("python3").args(["-c", script]).arg(file).output().expect("python3");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows: HashMap<String, (i64, bool)> = serde_json::from_slice(&output.stdout).expect("rows");
    rows.into_iter().map(|(id, row)| (id.parse().expect("uuid"), row)).collect()
}

/// Whether another process takes the file's write lock within a second.
fn another_process_can_write(file: &Path) -> bool {
    let script = "import sqlite3, sys\n\
        db = sqlite3.connect(sys.argv[1], timeout=1, isolation_level=None)\n\
        db.execute('BEGIN IMMEDIATE')\n\
        db.execute('ROLLBACK')";
    Command::new("python3").args(["-c", script]).arg(file).status().is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_loses_no_acknowledged_write_and_writes_resume_once_space_is_freed() {
    let Some(tmpfs) = Tmpfs::mount("20m") else { return };
    let file = tmpfs.0.join("deployql.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let mut server = ServerProcess::start_with(&url, &[("RUST_LOG", "warn")]).await;
    let graphql = format!("http://{}/graphql", server.addr);
    let keys =
        deployql::auth::JwtKeys::new(&deployql::config::JwtSecret::parse(SECRET).expect("secret"));

    let acknowledged = Acknowledged::default();
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let token = keys.mint(Uuid::new_v4(), Duration::from_secs(600)).expect("token");
            let (acknowledged, refused, stop) =
                (acknowledged.clone(), refused.clone(), stop.clone());
            tokio::spawn(write_until(graphql.clone(), token, acknowledged, refused, stop))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let filler = tmpfs.0.join("filler");
    tokio::task::spawn_blocking({
        let filler = filler.clone();
        move || fill(&filler)
    })
    .await
    .expect("filled");
    // Writing on a full disk for a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused.load(Ordering::Relaxed) < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused.load(Ordering::Relaxed) >= 20, "the full disk refused too few writes");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        server.scrape().await.iter().any(|s| s.metric == "deployql_database_storage_faults_total")
    );
    let readyz = reqwest::get(format!("http://{}/readyz", server.addr)).await.expect("readyz");
    assert_eq!(readyz.status(), 503, "/readyz while the disk is full");

    // Space freed: writes succeed again within 5 s, without a restart.
    std::fs::remove_file(&filler).expect("filler removed");
    let freed = Instant::now();
    let before = acknowledged.lock().expect("acknowledged").len();
    while acknowledged.lock().expect("acknowledged").len() < before + 2 * CLIENTS {
        assert!(freed.elapsed() < Duration::from_secs(5), "writes did not resume within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.ready_within(Duration::from_secs(5)).await, "/readyz after space was freed");
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client");
    }
    assert!(another_process_can_write(&file), "another process cannot take the write lock");

    // Stopped as an orchestrator stops it; then the file, read from outside.
    Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().expect("kill");
    assert!(server.wait(Duration::from_secs(30)).is_some_and(|s| s.success()), "clean exit");
    let rows = rows_in(&file);
    let acknowledged = acknowledged.lock().expect("acknowledged");
    for (id, target) in acknowledged.iter() {
        let row = rows.get(id).unwrap_or_else(|| panic!("acknowledged {id} is not in the file"));
        match target {
            Some(target) => assert_eq!(row, &(*target, false), "{id}"),
            None => assert!(row.1, "{id}: its acknowledged delete is not in the file"),
        }
    }
}

/// Remounts `tmpfs` read-only or read-write.
pub fn remount(tmpfs: &Tmpfs, mode: &str) {
    let status = Command::new("mount")
        .args(["-o", &format!("remount,{mode}")])
        .arg(&tmpfs.0)
        .status()
        .expect("mount");
    assert!(status.success(), "remount {mode}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_refused_at_start_saying_so() {
    let Some(tmpfs) = Tmpfs::mount("20m") else { return };
    let file = tmpfs.0.join("deployql.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    // A database with rows in it, then its file system made read-only
    // (which binds root too, unlike a file's mode).
    let server = ServerProcess::start_with(&url, &[]).await;
    drop(server);
    remount(&tmpfs, "ro");
    for command in ["migrate", "serve"] {
        let output = Command::new(env!("CARGO_BIN_EXE_deployql"))
            .arg(command)
            .env("DATABASE_URL", &url)
            .env("JWT_SECRET", SECRET)
            .env("LISTEN_ADDR", crate::helpers::free_addr().to_string())
            .output()
            .expect("deployql");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command} started on a read-only file");
        assert!(stderr.contains("read-only"), "{command}: {stderr}");
    }
    remount(&tmpfs, "rw");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_killed_inside_mutations_never_leave_a_transaction_open_in_the_pool() {
    let Some(app) = crate::helpers::TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    let server = ServerProcess::start(&url).await;
    let graphql = format!("http://{}/graphql", server.addr);
    let database =
        url.rsplit('/').next().unwrap_or_default().split('?').next().unwrap_or_default().to_owned();
    let rows = |sql: String| {
        let db = app.db.clone();
        async move {
            let statement = sea_orm::Statement::from_string(db.get_database_backend(), sql);
            db.query_all_raw(statement).await.expect("pg_stat_activity").len()
        }
    };
    // The server's connections (not this test's, nor the change reader's).
    let servers = |action: &str| {
        format!(
            "SELECT {action} FROM pg_stat_activity WHERE datname = '{database}' \
             AND pid <> pg_backend_pid() AND application_name <> 'deployql-changes' \
             AND backend_type = 'client backend'"
        )
    };

    let acknowledged = Acknowledged::default();
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let token = app.token(Uuid::new_v4());
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            let (graphql, refused) = (graphql.clone(), refused.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let create = "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id targetReplicas } }";
                while !stop.load(Ordering::Relaxed) {
                    let input = json!({ "name": format!("cut-{}", Uuid::new_v4().simple()), "targetReplicas": 3,
                        "resources": { "cpuCores": 0.5, "memoryMb": 64, "storageGb": 1 } });
                    let (status, body) = post(&client, &graphql, &token, create, json!({ "input": input })).await;
                    if status == 200 && body["errors"].is_null() {
                        let id = body["data"]["createDeployment"]["id"].as_str().and_then(|id| id.parse().ok());
                        acknowledged.lock().expect("acknowledged").insert(id.expect("uuid"), Some(3));
                    } else {
                        // A cut connection: retryable, never an ok that is lost.
                        assert_eq!(body["errors"][0]["extensions"]["code"], "SERVICE_UNAVAILABLE", "{body}");
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Cut the server's connections, whatever they are doing, again and again.
    let mut killed = 0;
    for _ in 0..20 {
        killed += rows(servers("pg_terminate_backend(pid)")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(killed > 0, "no connection was cut");
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer");
    }
    // Later mutations commit, and no pooled connection sits in a transaction.
    let token = app.token(Uuid::new_v4());
    let client = reqwest::Client::new();
    let create =
        "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id } }";
    for n in 0..10 {
        let input = json!({ "name": format!("after-{n}"), "targetReplicas": 3,
            "resources": { "cpuCores": 0.5, "memoryMb": 64, "storageGb": 1 } });
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, body) =
                post(&client, &graphql, &token, create, json!({ "input": input.clone() })).await;
            if status == 200 && body["errors"].is_null() {
                let id =
                    body["data"]["createDeployment"]["id"].as_str().and_then(|id| id.parse().ok());
                acknowledged.lock().expect("acknowledged").insert(id.expect("uuid"), Some(3));
                break;
            }
            assert!(Instant::now() < deadline, "mutations did not recover: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let in_transaction = servers("pid") + " AND state LIKE 'idle in transaction%'";
    assert_eq!(rows(in_transaction).await, 0, "a pooled connection is inside a transaction");
    // Every acknowledged create, read through another connection.
    let ids: Vec<String> =
        acknowledged.lock().expect("acknowledged").keys().map(|id| format!("'{id}'")).collect();
    let found = rows(format!("SELECT id FROM deployments WHERE id IN ({})", ids.join(","))).await;
    assert_eq!(found, ids.len(), "acknowledged creates missing");
}
