//! The tools a frontend team actually uses, run by Node against the real
//! `deployql` binary: graphql-http's official server audit, graphql-js 16
//! and 17 introspection, graphql-codegen from the server's URL, the
//! graphql-ws client, urql, and GraphiQL in Chromium. The scripts and their pinned versions live
//! in tests/js; `npm ci --prefix tests/js` installs them (CI does, and the
//! first test here does when node_modules is missing).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use uuid::Uuid;

use crate::helpers::{NewDeployment, ServerProcess, TestApp};

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Installs the pinned packages once per test run if they are missing.
fn ensure_installed() {
    static INSTALL: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if *installed || js_dir().join("node_modules/.package-lock.json").exists() {
        *installed = true;
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(js_dir())
        .status()
        .expect("npm is needed for the client tests (Node 20)");
    assert!(status.success(), "npm ci --prefix tests/js failed");
    *installed = true;
}

/// Runs `tests/js/<script>` against `server` as `token`'s user; panics with
/// the script's report unless it passes.
fn run(script: &str, server: &ServerProcess, token: &str) -> String {
    let url = format!("http://{}", server.addr);
    node(script, &[("DEPLOYQL_URL", &url), ("DEPLOYQL_TOKEN", token)])
}

/// Runs `tests/js/<script>` with `env`; panics with the script's report
/// unless it passes.
fn node(script: &str, env: &[(&str, &str)]) -> String {
    ensure_installed();
    let output = Command::new("node")
        .arg(js_dir().join(script))
        .envs(env.iter().copied())
        .current_dir(js_dir())
        .output()
        .expect("node is needed for the client tests (Node 20)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{script} failed:\n{report}");
    report
}

/// Runs `script` against `server` off the async runtime (Node blocks).
async fn drive(script: &'static str, server: ServerProcess, token: String) -> String {
    tokio::task::spawn_blocking(move || run(script, &server, &token)).await.expect(script)
}

/// Runs `script` with `env` off the async runtime.
async fn drive_with(script: &'static str, env: Vec<(&'static str, String)>) -> String {
    let run = move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        node(script, &env)
    };
    tokio::task::spawn_blocking(run).await.expect(script)
}

/// A seeded app and a release-like server process on its database.
async fn server(app: &TestApp) -> (ServerProcess, String) {
    let user = Uuid::new_v4();
    app.insert(user, NewDeployment::default()).await;
    (ServerProcess::start(&app.database_url()).await, app.token(user))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_http_audit_finds_no_error_and_no_warning() {
    let app = TestApp::sqlite().await;
    let (server, token) = server(&app).await;
    let report = drive("audit.mjs", server, token).await;
    assert!(!report.contains("warn ") && !report.contains("error "), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_js_16_and_17_introspection_describes_schema_graphql() {
    let app = TestApp::sqlite().await;
    let (server, token) = server(&app).await;
    drive("introspection.mjs", server, token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_from_the_url_type_checks() {
    let app = TestApp::sqlite().await;
    let (server, token) = server(&app).await;
    drive("codegen.mjs", server, token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urql_with_default_settings_queries_over_get() {
    let app = TestApp::sqlite().await;
    let (server, token) = server(&app).await;
    drive("urql.mjs", server, token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_in_a_browser_shows_the_dev_token_and_the_schema() {
    let app = TestApp::sqlite().await;
    let (server, token) = ServerProcess::start_dev(&app.database_url()).await;
    drive("graphiql.mjs", server, token).await;
}

async fn graphql_ws_client_runs_every_operation_kind(app: &TestApp) {
    let (server, token) = server(app).await;
    drive("ws-operations.mjs", server, token).await;
}

async fn a_lazy_graphql_ws_client_runs_operations_one_after_another(app: &TestApp) {
    let (server, token) = server(app).await;
    let report = drive("ws-lazy.mjs", server, token).await;
    assert!(report.contains("ok    round 3"), "{report}");
}

backend_tests!(
    graphql_ws_client_runs_every_operation_kind,
    a_lazy_graphql_ws_client_runs_operations_one_after_another,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graphql_ws_client_answers_pings_and_stays_connected_for_a_minute() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    app.insert(user, NewDeployment::default()).await;
    let env = [("WS_PING_INTERVAL", "1s"), ("WS_PONG_TIMEOUT", "1s")];
    let server = ServerProcess::start_with(&app.database_url(), &env).await;
    let report = drive("ws-keepalive.mjs", server, app.token(user)).await;
    assert!(report.contains("connected for 60 s"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apollo_and_urql_register_persisted_queries_on_a_miss_then_send_hashes() {
    let app = TestApp::sqlite().await;
    let (server, token) = server(&app).await;
    let url = format!("http://{}", server.addr);
    let env =
        vec![("PHASE", "clients".to_owned()), ("DEPLOYQL_URL", url), ("DEPLOYQL_TOKEN", token)];
    drive_with("persisted.mjs", env).await;
    let registered = server.metric("deployql_persisted_documents_total").await;
    assert!(registered >= 3, "three registrations and their hits counted: {registered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codegens_persisted_documents_run_by_id_in_trusted_only_mode() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let dir = std::env::temp_dir().join(format!("deployql-codegen-{}", Uuid::new_v4()));
    let dir_text = dir.to_str().expect("utf-8").to_owned();
    drive_with("persisted.mjs", vec![("PHASE", "codegen".to_owned()), ("MANIFEST_DIR", dir_text)])
        .await;
    let manifest = dir.join("persisted-documents.json");
    // Relay's compiler names a document by the MD5 of its text.
    let relay_text = "query RelayCount { deployments { totalCount } }";
    let relay_id = "0a4c8ce2b0c6d5b8a1f4b8f57f0a3a77";
    let relay = dir.join("relay-persisted.json");
    std::fs::write(&relay, serde_json::json!({ relay_id: relay_text }).to_string()).expect("write");
    let trusted = format!("{},{}", manifest.display(), relay.display());
    let env = [("TRUSTED_DOCUMENTS", trusted.as_str()), ("TRUSTED_DOCUMENTS_ONLY", "true")];
    let server = ServerProcess::start_with(&app.database_url(), &env).await;
    let env = vec![
        ("PHASE", "trusted".to_owned()),
        ("DEPLOYQL_URL", format!("http://{}", server.addr)),
        ("DEPLOYQL_TOKEN", app.token(user)),
        ("MANIFEST", manifest.display().to_string()),
        ("DEPLOYMENT_ID", id.to_string()),
        ("RELAY_DOC_ID", relay_id.to_owned()),
    ];
    drive_with("persisted.mjs", env).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apollo_and_urql_retries_with_an_idempotency_key_create_once() {
    let app = TestApp::sqlite().await;
    let (server, token) = server(&app).await;
    drive("idempotency.mjs", server, token).await;
}
