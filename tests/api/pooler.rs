//! deployql behind PgBouncer in transaction mode, stock settings, with
//! `DB_PREPARED_STATEMENTS=false`: migrations, every entry point, live
//! updates through the change reader, statement timeouts, several
//! instances starting at once; and with prepared statements left on, a
//! refusal at start that names the variable.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sea_orm::ConnectionTrait as _;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{
        KillOnDrop, SECRET, ServerProcess, TestApp, error_code, free_addr, is_root, post_graphql,
        start_all_at_once,
    },
    ws_client::{TRANSPORT_WS, WsClient},
};

/// A PgBouncer in transaction mode in front of the tests' Postgres.
pub(crate) struct PgBouncer {
    pub(crate) addr: SocketAddr,
    _process: KillOnDrop,
    dir: PathBuf,
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PgBouncer {
    /// Started on a free port, forwarding to the host and port of `url`;
    /// `None` where Postgres or PgBouncer is missing (never in CI).
    pub(crate) async fn start(url: &str) -> Option<Self> {
        Self::start_on(url, free_addr()).await
    }

    /// Started on `addr` (again, after one stopped there).
    async fn start_on(url: &str, addr: SocketAddr) -> Option<Self> {
        if Command::new("pgbouncer").arg("--version").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "CI must install pgbouncer");
            eprintln!("skipped: no pgbouncer here");
            return None;
        }
        let (user, upstream) = user_and_host(url);
        let dir = std::env::temp_dir().join(format!("deployql-pgbouncer-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("pgbouncer directory");
        // Stock settings but for where it listens and whom it trusts.
        let config = format!(
            "[databases]\n* = host={} port={}\n\n[pgbouncer]\nlisten_addr = {}\n\
             listen_port = {}\nauth_type = trust\nauth_file = {}/users.txt\n\
             pool_mode = transaction\nignore_startup_parameters = extra_float_digits\n\
             unix_socket_dir =\nlogfile = {}/pgbouncer.log\n",
            upstream.ip(),
            upstream.port(),
            addr.ip(),
            addr.port(),
            dir.display(),
            dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), config).expect("pgbouncer.ini");
        std::fs::write(dir.join("users.txt"), format!("\"{user}\" \"\"\n")).expect("users");
        let mut command = if is_root() {
            // PgBouncer refuses to run as root.
            let status = Command::new("chown").args(["-R", "postgres"]).arg(&dir).status();
            assert!(status.is_ok_and(|s| s.success()), "chown");
            // setpriv runs it in its own process, which a kill reaches.
            let mut command = Command::new("setpriv");
            command.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "pgbouncer"]);
            command
        } else {
            Command::new("pgbouncer")
        };
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer");
        let process = KillOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "pgbouncer did not listen on {addr}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Self { addr, _process: process, dir })
    }

    /// `url` through this pooler (same user and database).
    pub(crate) fn url_for(&self, url: &str) -> String {
        let at = url.find('@').map_or_else(|| url.find("://").map_or(0, |i| i + 3), |i| i + 1);
        let end = url[at..].find('/').map_or(url.len(), |i| at + i);
        format!("{}{}{}", &url[..at], self.addr, &url[end..])
    }
}

/// The user and the address of a `postgres://user@host:port/db` URL.
fn user_and_host(url: &str) -> (String, SocketAddr) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (user, rest) = rest.split_once('@').unwrap_or(("postgres", rest));
    let user = user.split(':').next().unwrap_or("postgres").to_owned();
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let authority =
        if authority.contains(':') { authority.to_owned() } else { format!("{authority}:5432") };
    let addr =
        std::net::ToSocketAddrs::to_socket_addrs(&authority.replace("localhost", "127.0.0.1"))
            .expect("resolve")
            .next()
            .expect("an address");
    (user, addr)
}

fn token(user: Uuid) -> String {
    let secret = deployql::config::JwtSecret::parse(SECRET).expect("secret");
    deployql::auth::JwtKeys::new(&secret).mint(user, Duration::from_secs(600)).expect("token")
}

const NO_PREPARED: (&str, &str) = ("DB_PREPARED_STATEMENTS", "false");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_point_works_through_pgbouncer_in_transaction_mode() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    let Some(pooler) = PgBouncer::start(&url).await else { return };
    let pooled = pooler.url_for(&url);
    app.empty_postgres_schema().await;
    for _ in 0..2 {
        let migrate = Command::new(env!("CARGO_BIN_EXE_deployql"))
            .arg("migrate")
            .env("DATABASE_URL", &pooled)
            .env("DB_PREPARED_STATEMENTS", "false")
            .output()
            .expect("deployql migrate");
        assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    }
    let server = ServerProcess::start_with(&pooled, &[NO_PREPARED]).await;
    let user = Uuid::new_v4();
    let token = token(user);
    let create = "mutation($name: String!) { createDeployment(input: { name: $name, \
        targetReplicas: 2, resources: { cpuCores: 1.5, memoryMb: 64, storageGb: 1 } }) \
        { id status health resources { cpuCores } statusHistory { newStatus } } }";
    let created = post_graphql(server.addr, &token, create, json!({ "name": "web" })).await;
    assert!(created["errors"].is_null(), "{created}");
    let id = created["data"]["createDeployment"]["id"].as_str().expect("id").to_owned();
    let again = post_graphql(server.addr, &token, create, json!({ "name": "web" })).await;
    assert_eq!(error_code(&again), Some("CONFLICT"), "{again}");

    // Live: a subscriber on this instance hears a scale through the change
    // reader, which reads the log through the pooler too.
    let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
    ws.init_with_token(&token).await;
    let watch = "subscription($id: ID!) { deploymentUpdated(id: $id) { targetReplicas } }";
    ws.subscribe("1", watch, json!({ "id": id })).await;
    ws.next_payload(Duration::from_secs(5)).await;
    let scale =
        "mutation($id: ID!) { scaleDeployment(id: $id, targetReplicas: 5) { targetReplicas } }";
    let scaled = post_graphql(server.addr, &token, scale, json!({ "id": id })).await;
    assert_eq!(scaled["data"]["scaleDeployment"]["targetReplicas"], 5, "{scaled}");
    let heard = Instant::now();
    loop {
        let payload = ws.next_payload(Duration::from_secs(2).saturating_sub(heard.elapsed())).await;
        if payload["data"]["deploymentUpdated"]["targetReplicas"] == 5 {
            break;
        }
    }

    let lookup = "query($id: ID!) { deployment(id: $id) { name targetReplicas health \
        replicas { id } statusHistory { newStatus changedAt } } }";
    let found = post_graphql(server.addr, &token, lookup, json!({ "id": id })).await;
    assert_eq!(found["data"]["deployment"]["targetReplicas"], 5, "{found}");
    let page = "{ deployments(first: 5) { totalCount nodes { id name health } } }";
    let listed = post_graphql(server.addr, &token, page, json!({})).await;
    assert_eq!(listed["data"]["deployments"]["totalCount"], 1, "{listed}");
    // An automatic persisted query registers through the pooler, and
    // another instance answers its hash alone.
    let hash = deployql::digest::sha256_hex(page);
    let apq = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let send = |addr: SocketAddr, body: Value| {
        let request = reqwest::Client::new()
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(&token)
            .json(&body);
        async move { request.send().await.expect("send").json::<Value>().await.expect("json") }
    };
    let registered = send(server.addr, json!({ "query": page, "extensions": apq })).await;
    assert_eq!(registered["data"]["deployments"]["totalCount"], 1, "{registered}");
    let other = ServerProcess::start_with(&pooled, &[NO_PREPARED]).await;
    let by_hash = send(other.addr, json!({ "extensions": apq })).await;
    assert_eq!(by_hash["data"]["deployments"]["totalCount"], 1, "{by_hash}");
    // A mutation with an idempotency key runs in one transaction with
    // savepoints, through the pooler too: a name taken is recorded and
    // replayed, and the key's answer stays.
    let keyed = |key: &'static str| {
        let request = reqwest::Client::new()
            .post(format!("http://{}/graphql", server.addr))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&json!({ "query": create, "variables": { "name": "web" } }));
        async move {
            let response = request.send().await.expect("send");
            let replayed = response.headers().contains_key("idempotent-replayed");
            (replayed, response.json::<Value>().await.expect("json"))
        }
    };
    let (replayed, conflict) = keyed("pooled").await;
    assert!(!replayed && error_code(&conflict) == Some("CONFLICT"), "{conflict}");
    let (replayed, again) = keyed("pooled").await;
    assert!(replayed && again == conflict, "{again}");
    let delete = "mutation($id: ID!) { deleteDeployment(id: $id) { id } }";
    let deleted = post_graphql(server.addr, &token, delete, json!({ "id": id })).await;
    assert!(deleted["errors"].is_null(), "{deleted}");
    let gone = post_graphql(server.addr, &token, lookup, json!({ "id": id })).await;
    assert_eq!(error_code(&gone), Some("NOT_FOUND"), "{gone}");
    assert!(server.ready_within(Duration::from_secs(1)).await, "/readyz through the pooler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeouts_hold_through_the_pooler() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    let Some(pooler) = PgBouncer::start(&url).await else { return };
    let timeouts = deployql::db::DbTimeouts {
        acquire: Duration::from_secs(2),
        statement: Duration::from_millis(200),
    };
    let db = deployql::db::connect_for_requests(
        &pooler.url_for(&url),
        2,
        timeouts,
        deployql::db::Access::ReadWrite,
        None,
        false,
    )
    .await
    .expect("connect through the pooler");
    // Values are written into the text, quotes and backslashes included.
    let text = "it's a \\ 'quoted' \"text\"";
    let echo = sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT $1::text AS echoed",
        [text.into()],
    );
    let row = db.query_one_raw(echo).await.expect("echo").expect("a row");
    assert_eq!(row.try_get::<String>("", "echoed").expect("echoed"), text);
    let slow = sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, "SELECT pg_sleep(5)");
    let started = Instant::now();
    let err = db.query_all_raw(slow.clone()).await.expect_err("the statement timed out");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(deployql::error::is_unavailable(&err), "{err}");
    let txn = db.begin_write().await.expect("a transaction");
    let err = txn.query_all_raw(slow).await.expect_err("timed out inside a transaction");
    assert!(deployql::error::is_unavailable(&err), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_instances_started_at_once_through_the_pooler_all_serve() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    let Some(pooler) = PgBouncer::start(&url).await else { return };
    let pooled = pooler.url_for(&url);
    app.empty_postgres_schema().await;
    let _servers = start_all_at_once(&pooled, &[NO_PREPARED], 4).await;
    let statement = sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        "SELECT COUNT(*) = COUNT(DISTINCT version) AS once FROM seaql_migrations",
    );
    let row = app.db.query_one_raw(statement).await.expect("migrations").expect("a row");
    assert!(row.try_get::<bool>("", "once").expect("once"), "a migration recorded twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_through_the_pooler_are_refused_at_start_naming_the_switch() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    let Some(pooler) = PgBouncer::start(&url).await else { return };
    let output = Command::new(env!("CARGO_BIN_EXE_deployql"))
        .arg("serve")
        .env("DATABASE_URL", pooler.url_for(&url))
        .env("JWT_SECRET", SECRET)
        .env("LISTEN_ADDR", free_addr().to_string())
        .output()
        .expect("deployql serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "served prepared statements through a transaction pooler");
    assert!(stderr.contains("DB_PREPARED_STATEMENTS=false"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_pooler_requests_fail_within_the_deadline_and_recover_after() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    let Some(pooler) = PgBouncer::start(&url).await else { return };
    let (addr, pooled) = (pooler.addr, pooler.url_for(&url));
    let server = ServerProcess::start_with(&pooled, &[NO_PREPARED]).await;
    let lookup = "{ deployments { totalCount } }";
    let tokens: Vec<String> = (0..8).map(|_| token(Uuid::new_v4())).collect();
    let answer = post_graphql(server.addr, &tokens[0], lookup, json!({})).await;
    assert_eq!(answer["data"]["deployments"]["totalCount"], 0, "{answer}");

    drop(pooler);
    let timed = tokens.iter().map(|token| async {
        let started = Instant::now();
        (post_graphql(server.addr, token, lookup, json!({})).await, started.elapsed())
    });
    for (answer, took) in futures_util::future::join_all(timed).await {
        assert_eq!(error_code(&answer), Some("SERVICE_UNAVAILABLE"), "{answer}");
        assert!(took < Duration::from_millis(3300), "answered after {took:?}");
    }

    let _pooler = PgBouncer::start_on(&url, addr).await.expect("pgbouncer again");
    let back = Instant::now();
    loop {
        let answer = post_graphql(server.addr, &tokens[0], lookup, json!({})).await;
        if answer["errors"].is_null() {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(5), "not back: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
