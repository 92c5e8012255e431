//! Files that may not be written: a SQLite file made read-only while the
//! server runs stops writes (503 `READ_ONLY`) until it is writable again,
//! losing none it acknowledged; and `READ_ONLY=true` serves a file nobody
//! may write, beside the writer or on a read-only file system.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{SECRET, ServerProcess, error_code, is_root, post_graphql},
    storage_faults::{Tmpfs, remount},
    ws_client::{TRANSPORT_WS, WsClient},
};

const CREATE: &str = "mutation($name: String!) { createDeployment(input: { name: $name, \
    targetReplicas: 1, resources: { cpuCores: 1, memoryMb: 64, storageGb: 1 } }) { id } }";

fn token(user: Uuid) -> String {
    let secret = deployql::config::JwtSecret::parse(SECRET).expect("secret");
    deployql::auth::JwtKeys::new(&secret).mint(user, Duration::from_secs(600)).expect("token")
}

async fn create(addr: std::net::SocketAddr, token: &str, name: &str) -> Value {
    post_graphql(addr, token, CREATE, json!({ "name": name })).await
}

/// A fresh directory the unprivileged server user owns.
fn directory_for_the_server() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("deployql-read-only-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("directory");
    if is_root() {
        let status = Command::new("chown").args(["nobody:nogroup"]).arg(&dir).status();
        assert!(status.is_ok_and(|s| s.success()), "chown");
    }
    dir
}

fn set_mode(file: &Path, mode: u32) {
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The names of the deployments in `file`, read by another program.
fn names_in(file: &Path) -> Vec<String> {
    let script = "import json, sqlite3, sys\n\
        db = sqlite3.connect(sys.argv[1])\n\
        print(json.dumps(sorted(r[0] for r in db.execute('SELECT name FROM deployments'))))";
    let output = Command::new("python3").args(["-c", script]).arg(file).output().expect("python3");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("names")
}

async fn readyz(server: &ServerProcess) -> u16 {
    let url = format!("http://{}/readyz", server.addr);
    reqwest::get(url).await.expect("readyz").status().as_u16()
}

/// Polls `/readyz` until it answers `status`, for at most `within`.
async fn readyz_becomes(server: &ServerProcess, status: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if readyz(server).await == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_made_read_only_while_serving_stops_writes_until_it_is_writable_again() {
    let dir = directory_for_the_server();
    let file = dir.join("deployql.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let mut server = ServerProcess::start_unprivileged(&url, &[]).await;
    let token = token(Uuid::new_v4());
    let before = create(server.addr, &token, "before").await;
    assert!(before["errors"].is_null(), "{before}");

    set_mode(&file, 0o444);
    assert!(readyz_becomes(&server, 503, Duration::from_secs(3)).await, "/readyz stayed 200");
    let during = create(server.addr, &token, "during").await;
    assert_eq!(error_code(&during), Some("SERVICE_UNAVAILABLE"), "{during}");
    assert_eq!(during["errors"][0]["extensions"]["reason"], "READ_ONLY", "{during}");
    let read = post_graphql(server.addr, &token, "{ deployments { nodes { name } } }", json!({}));
    assert_eq!(read.await["data"]["deployments"]["nodes"][0]["name"], "before");

    // Writable again: writes resume within seconds, without a restart.
    set_mode(&file, 0o644);
    assert!(readyz_becomes(&server, 200, Duration::from_secs(5)).await, "/readyz stayed 503");
    let after = create(server.addr, &token, "after").await;
    assert!(after["errors"].is_null(), "{after}");

    Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().expect("kill");
    assert!(server.wait(Duration::from_secs(30)).is_some_and(|s| s.success()), "clean exit");
    assert_eq!(names_in(&file), ["after", "before"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_serves_a_read_only_file_system_and_refuses_mutations() {
    let Some(tmpfs) = Tmpfs::mount("20m") else { return };
    let file = tmpfs.0.join("deployql.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let token = token(Uuid::new_v4());
    let mut writer = ServerProcess::start(&url).await;
    let created = create(writer.addr, &token, "kept").await;
    assert!(created["errors"].is_null(), "{created}");
    Command::new("kill").args(["-TERM", &writer.pid().to_string()]).status().expect("kill");
    assert!(writer.wait(Duration::from_secs(30)).is_some_and(|s| s.success()), "clean exit");
    remount(&tmpfs, "ro");

    let reader = ServerProcess::start_with(&url, &[("READ_ONLY", "true")]).await;
    let page = post_graphql(reader.addr, &token, "{ deployments { nodes { name } } }", json!({}));
    assert_eq!(page.await["data"]["deployments"]["nodes"][0]["name"], "kept");
    let refused = create(reader.addr, &token, "refused").await;
    assert_eq!(error_code(&refused), Some("READ_ONLY_MODE"), "{refused}");
    assert_eq!(readyz(&reader).await, 200, "a read-only server is ready to read");
    drop(reader);
    remount(&tmpfs, "rw");
    assert_eq!(names_in(&file), ["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_beside_the_writer_sees_its_changes_live() {
    let dir = directory_for_the_server();
    let url = format!("sqlite://{}?mode=rwc", dir.join("deployql.db").display());
    let user = Uuid::new_v4();
    let token = token(user);
    let writer = ServerProcess::start(&url).await;
    let reader = ServerProcess::start_with(&url, &[("READ_ONLY", "true")]).await;
    let created = create(writer.addr, &token, "watched").await;
    let id = created["data"]["createDeployment"]["id"].as_str().expect("id").to_owned();

    let mut ws = WsClient::connect(reader.addr, TRANSPORT_WS).await;
    ws.init_with_token(&token).await;
    let watch = "subscription($id: ID!) { deploymentUpdated(id: $id) { targetReplicas } }";
    ws.subscribe("1", watch, json!({ "id": id })).await;
    ws.next_payload(Duration::from_secs(5)).await;
    let scale = "mutation($id: ID!) { scaleDeployment(id: $id, targetReplicas: 7) { id } }";
    let scaled = Instant::now();
    let answer = post_graphql(writer.addr, &token, scale, json!({ "id": id })).await;
    assert!(answer["errors"].is_null(), "{answer}");
    loop {
        let left = Duration::from_secs(1).saturating_sub(scaled.elapsed());
        let payload = ws.next_payload(left).await;
        if payload["data"]["deploymentUpdated"]["targetReplicas"] == 7 {
            break;
        }
    }
    drop((writer, reader));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_read_only_server_refuses_a_database_its_schema_is_not_applied_to() {
    let dir = directory_for_the_server();
    let url = format!("sqlite://{}?mode=rwc", dir.join("empty.db").display());
    // An empty database file, as `sqlite3 empty.db 'VACUUM'` leaves it.
    std::fs::File::create(dir.join("empty.db")).expect("file");
    let output = Command::new(env!("CARGO_BIN_EXE_deployql"))
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("JWT_SECRET", SECRET)
        .env("READ_ONLY", "true")
        .env("LISTEN_ADDR", crate::helpers::free_addr().to_string())
        .output()
        .expect("deployql");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a read-only server started on an empty database");
    assert!(stderr.contains("deployql migrate"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
