//! Rows other programs write into the SQLite file are read as they are
//! written: SQLite's own timestamp forms (`datetime('now')`,
//! `CURRENT_TIMESTAMP`: UTC without an offset) included.

use sea_orm::ConnectionTrait as _;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{NewDeployment, TestApp};

#[tokio::test]
async fn timestamps_written_by_sqlite_itself_are_read_in_lookups_and_pages() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let replicas = vec![entity::ReplicaStatus::Running; 2];
    let id = app.insert(user, NewDeployment { replicas, ..Default::default() }).await;
    // As a script or the platform's agent would write them.
    app.db
        .execute_unprepared(
            "UPDATE deployment_replicas SET started_at = datetime('now') WHERE rowid IN \
             (SELECT rowid FROM deployment_replicas LIMIT 1); \
             UPDATE deployment_replicas SET started_at = CURRENT_TIMESTAMP WHERE started_at \
             NOT LIKE '____-__-__ __:__:__'",
        )
        .await
        .expect("outside write");
    let lookup = "query($id: ID!) { deployment(id: $id) { replicas { startedAt } } }";
    let found = app.gql(user, lookup, json!({ "id": id })).await;
    assert!(found["errors"].is_null(), "{found}");
    let replicas = found["data"]["deployment"]["replicas"].as_array().expect("replicas");
    assert_eq!(replicas.len(), 2);
    for replica in replicas {
        let started = replica["startedAt"].as_str().expect("startedAt");
        assert!(started.ends_with('Z') && started.len() == 27, "{started}");
    }
    let page =
        app.gql(user, "{ deployments { nodes { replicas { startedAt } } } }", json!({})).await;
    assert!(page["errors"].is_null(), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_sqlite_file_is_refused_naming_the_first() {
    let app = TestApp::sqlite().await;
    let first = crate::helpers::ServerProcess::start(&app.database_url()).await;
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_deployql"))
        .arg("serve")
        .env("DATABASE_URL", app.database_url())
        .env("JWT_SECRET", crate::helpers::SECRET)
        .env("LISTEN_ADDR", crate::helpers::free_addr().to_string())
        .output()
        .expect("deployql serve");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second server started");
    let named = format!("pid {}, listening on {}", first.pid(), first.addr);
    assert!(stderr.contains("another deployql") && stderr.contains(&named), "{stderr}");
    // The first serves on.
    assert!(first.ready_within(std::time::Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_simultaneous_migrations_of_a_fresh_file_all_succeed() {
    let path = std::env::temp_dir().join(format!("deployql-fresh-{}.db", Uuid::new_v4()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let runs: Vec<_> = (0..10)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_deployql"))
                .arg("migrate")
                .env("DATABASE_URL", &url)
                .env("RUST_LOG", "warn")
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("deployql migrate")
        })
        .collect();
    for run in runs {
        let output = run.wait_with_output().expect("migrate ran");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "a migration failed: {stderr}");
    }
    for suffix in ["", "-wal", "-shm", ".migrating"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_program_s_write_to_the_sqlite_file_reaches_a_subscriber_within_a_second() {
    use std::time::{Duration, Instant};
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let server = crate::helpers::ServerProcess::start(&app.database_url()).await;
    let mut ws =
        crate::ws_client::WsClient::connect(server.addr, crate::ws_client::TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;
    let watch =
        "subscription($id: ID!) { deploymentUpdated(id: $id) { replicas { containerId } } }";
    ws.subscribe("1", watch, json!({ "id": id })).await;
    ws.next_payload(Duration::from_secs(5)).await;

    // The platform's agent, say: Python's sqlite3 on the same file.
    let file =
        app.database_url().trim_start_matches("sqlite://").split('?').next().map(str::to_owned);
    let script = "import sqlite3, sys\n\
        db = sqlite3.connect(sys.argv[1], timeout=5)\n\
        db.execute(\"UPDATE deployment_replicas SET container_id = 'from-outside', \
        started_at = datetime('now') WHERE deployment_id = ?\", (bytes.fromhex(sys.argv[2]),))\n\
        db.commit()";
    let written = Instant::now();
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(file.expect("a SQLite file"))
        .arg(id.simple().to_string())
        .status()
        .expect("python3");
    assert!(status.success());
    loop {
        let left = Duration::from_secs(1).saturating_sub(written.elapsed());
        let payload = ws.next_payload(left).await;
        let replicas = &payload["data"]["deploymentUpdated"]["replicas"];
        if replicas[0]["containerId"] == "from-outside" {
            break;
        }
    }
}
