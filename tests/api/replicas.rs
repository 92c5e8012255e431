//! Reads on a real hot standby (`DATABASE_REPLICA_URLS`): a throwaway
//! primary made with `initdb` and a standby made with `pg_basebackup -R`,
//! on free ports, as the `postgres` user. Reads go to the standby while it
//! is within `REPLICA_MAX_LAG`, never when it is behind (replay paused, or
//! delayed by `recovery_min_apply_delay`), a writer reads their own writes,
//! and a standby that stops costs no request.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::ConnectionTrait as _;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{SECRET, ServerProcess, free_addr, is_root, metric_sum, post_graphql},
    live::WATCH,
    ws_client::{TRANSPORT_WS, WsClient},
};

/// A Postgres cluster of its own, stopped and removed when dropped.
struct Cluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.pg_ctl().args(["-m", "immediate", "stop"]).arg("-D").arg(&data).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    /// A new primary; `None` where Postgres' server binaries are missing
    /// (never in CI).
    fn primary() -> Option<Self> {
        // pg_config names the server's binaries; Debian keeps them in
        // /usr/lib/postgresql/<version>/bin either way.
        let configured = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|dirs| dirs.filter_map(|dir| Some(dir.ok()?.path().join("bin"))).collect())
            .unwrap_or_default();
        debian.sort();
        let bin = configured
            .into_iter()
            .chain(debian.into_iter().rev())
            .find(|bin| bin.join("initdb").exists());
        let Some(bin) = bin else {
            assert!(std::env::var_os("CI").is_none(), "CI must have Postgres' server binaries");
            eprintln!("skipped: no initdb here");
            return None;
        };
        let cluster = Self::empty(bin);
        let data = cluster.dir.join("data");
        let mut init = cluster.as_postgres(cluster.bin.join("initdb"));
        init.arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "--no-sync"]);
        run(&mut init, "initdb");
        cluster.start();
        Some(cluster)
    }

    /// A hot standby of this primary, streaming from it, with `settings`
    /// (`recovery_min_apply_delay = '2s'`, say).
    fn standby(&self, settings: &str) -> Self {
        let standby = Self::empty(self.bin.clone());
        let data = standby.dir.join("data");
        let mut backup = standby.as_postgres(self.bin.join("pg_basebackup"));
        let port = self.port.to_string();
        backup
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-R", "-X", "stream"])
            .args(["-c", "fast", "--no-sync", "-D"])
            .arg(&data);
        run(&mut backup, "pg_basebackup");
        let auto = data.join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&auto).expect("postgresql.auto.conf");
        conf.push_str(&format!("\n{settings}\n"));
        std::fs::write(&auto, conf).expect("postgresql.auto.conf");
        standby.start();
        standby
    }

    fn empty(bin: PathBuf) -> Self {
        let dir = std::env::temp_dir().join(format!("deployql-pg-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres"]).arg(&dir).status();
            assert!(status.is_ok_and(|s| s.success()), "chown");
        }
        Self { dir, port: free_addr().port(), bin }
    }

    /// `program` run as the `postgres` user (Postgres refuses root).
    fn as_postgres(&self, program: PathBuf) -> Command {
        let mut command = if is_root() {
            let mut command = Command::new("setpriv");
            command.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        command
    }

    fn pg_ctl(&self) -> Command {
        self.as_postgres(self.bin.join("pg_ctl"))
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB",
            self.port,
            self.dir.display()
        );
        let mut pg_ctl = self.pg_ctl();
        let start = pg_ctl
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        run(start, "pg_ctl start");
    }

    fn stop(&self) {
        let mut pg_ctl = self.pg_ctl();
        let stop = pg_ctl.arg("-D").arg(self.dir.join("data")).args(["-m", "fast", "-w", "stop"]);
        run(stop, "pg_ctl stop");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    async fn execute(&self, sql: &str) {
        let db = sea_orm::Database::connect(self.url()).await.expect("connect");
        db.execute_unprepared(sql).await.expect(sql);
        db.close().await.expect("close");
    }
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|err| panic!("{what}: {err}"));
    assert!(output.status.success(), "{what}: {}", String::from_utf8_lossy(&output.stderr));
}

fn token(user: Uuid) -> String {
    let secret = deployql::config::JwtSecret::parse(SECRET).expect("secret");
    deployql::auth::JwtKeys::new(&secret).mint(user, Duration::from_secs(600)).expect("token")
}

/// Read operations counted so far: (on the primary, on a replica).
async fn reads(server: &ServerProcess) -> (f64, f64) {
    let samples = server.scrape().await;
    let on = |target| metric_sum(&samples, "deployql_db_reads_total", &[("target", target)]);
    (on("primary"), on("replica"))
}

const CREATE: &str = "mutation($name: String!) { createDeployment(input: { name: $name, \
    targetReplicas: 1, resources: { cpuCores: 1, memoryMb: 64, storageGb: 1 } }) { id } }";
const SCALE: &str =
    "mutation($id: ID!, $n: Int!) { scaleDeployment(id: $id, targetReplicas: $n) { id } }";
const READ: &str = "query($id: ID!) { deployment(id: $id) { id targetReplicas } }";

/// The deployment's target as `token`'s user reads it, or the answer that
/// is not one.
async fn target(server: &ServerProcess, token: &str, id: &str) -> Result<i64, Value> {
    let answer = post_graphql(server.addr, token, READ, json!({ "id": id })).await;
    answer["data"]["deployment"]["targetReplicas"].as_i64().ok_or(answer)
}

async fn create(server: &ServerProcess, token: &str) -> String {
    let name = format!("app-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let answer = post_graphql(server.addr, token, CREATE, json!({ "name": name })).await;
    answer["data"]["createDeployment"]["id"].as_str().expect("created").to_owned()
}

async fn scale(server: &ServerProcess, token: &str, id: &str, n: i64) {
    let answer = post_graphql(server.addr, token, SCALE, json!({ "id": id, "n": n })).await;
    assert!(answer["errors"].is_null(), "{answer}");
}

/// Reads until one is counted on the replica, each answering `expected`.
async fn until_a_replica_serves(server: &ServerProcess, token: &str, id: &str, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (_, before) = reads(server).await;
    loop {
        assert_eq!(target(server, token, id).await, Ok(expected));
        if reads(server).await.1 > before {
            return;
        }
        assert!(Instant::now() < deadline, "no read went to the replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// For `during`, every read answers `expected` and none is served by the
/// replica.
async fn only_the_primary_serves(
    server: &ServerProcess,
    token: &str,
    id: &str,
    expected: i64,
    during: Duration,
) {
    let (primary, replica) = reads(server).await;
    let (until, mut count) = (Instant::now() + during, 0.0);
    while Instant::now() < until {
        assert_eq!(target(server, token, id).await, Ok(expected), "a stale read");
        count += 1.0;
    }
    let (primary_after, replica_after) = reads(server).await;
    assert_eq!(replica_after, replica, "the replica served a read while behind");
    assert!(primary_after - primary >= count, "every read counted on the primary");
}

/// Longer than the default REPLICA_MAX_LAG (100 ms) and its poll.
const PAST_THE_BOUND: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_serves_reads_while_caught_up_and_no_request_fails_when_it_pauses_or_stops() {
    let Some(primary) = Cluster::primary() else { return };
    let standby = primary.standby("");
    let log = standby.dir.join("deployql.log");
    let env = [
        ("DATABASE_REPLICA_URLS", &standby.url()[..]),
        ("JWT_SECRET", SECRET),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
    ];
    let server = ServerProcess::spawn_with_log(&primary.url(), &env, &log);
    server.wait_ready().await;
    let token = token(Uuid::new_v4());
    let id = create(&server, &token).await;

    // Caught up: reads go to the standby.
    until_a_replica_serves(&server, &token, &id, 1).await;

    // Replay paused, then a write: once the bound has passed, every read
    // goes to the primary and sees the write; the lag shows.
    standby.execute("SELECT pg_wal_replay_pause()").await;
    scale(&server, &token, &id, 3).await;
    tokio::time::sleep(PAST_THE_BOUND).await;
    only_the_primary_serves(&server, &token, &id, 3, Duration::from_secs(1)).await;
    let samples = server.scrape().await;
    let lag = metric_sum(&samples, "deployql_replica_lag_seconds", &[("replica", "0")]);
    assert!(lag >= PAST_THE_BOUND.as_secs_f64(), "lag {lag} s while paused");

    // Resumed: back on the standby.
    standby.execute("SELECT pg_wal_replay_resume()").await;
    until_a_replica_serves(&server, &token, &id, 3).await;

    // Stopped under load, and started again: no request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, token, id, addr) = (stop.clone(), token.clone(), id.clone(), server.addr);
            tokio::spawn(async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let answer = post_graphql(addr, &token, READ, json!({ "id": id })).await;
                    if answer["data"]["deployment"]["targetReplicas"] != 3 {
                        failures.push(answer);
                    }
                }
                failures
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    standby.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let failures = reader.await.expect("reader");
        assert!(failures.is_empty(), "failed while the standby stopped: {failures:?}");
    }
    assert!(server.ready_within(Duration::from_secs(2)).await, "/readyz with the standby down");
    only_the_primary_serves(&server, &token, &id, 3, Duration::from_millis(500)).await;
    standby.start();
    until_a_replica_serves(&server, &token, &id, 3).await;

    // Each operation's log line says where it read.
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<Value> =
        text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let logged = |db: &str| {
        lines.iter().any(|line| line["message"] == "graphql operation" && line["db"] == db)
    };
    assert!(logged("replica") && logged("primary"), "operation lines name their server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_standby_never_serves_a_stale_read_and_a_writer_reads_their_writes() {
    let Some(primary) = Cluster::primary() else { return };
    let standby = primary.standby("recovery_min_apply_delay = '2s'");
    let env = [("DATABASE_REPLICA_URLS", &standby.url()[..])];
    let server = ServerProcess::start_with(&primary.url(), &env).await;
    let token = token(Uuid::new_v4());

    // A writer's next read, at once, sees the write, though the standby
    // (2 s behind) serves reads within the bound just before it.
    let id = create(&server, &token).await;
    for n in 2..5 {
        until_a_replica_serves(&server, &token, &id, n - 1).await;
        scale(&server, &token, &id, n).await;
        assert_eq!(target(&server, &token, &id).await, Ok(n), "scaled, then read at once");
    }
    until_a_replica_serves(&server, &token, &id, 4).await;

    // Another writer (a node agent, a script, another instance) changes the
    // deployment: a subscriber gets the change, and once the bound has passed
    // every read is the primary's until the standby applies it.
    let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
    ws.init_with_token(&token).await;
    ws.subscribe("1", WATCH, json!({ "id": id })).await;
    let first = ws.next_payload(Duration::from_secs(10)).await;
    assert_eq!(first["data"]["deploymentUpdated"]["targetReplicas"], 4, "{first}");
    let uuid = Uuid::parse_str(&id).expect("a uuid id");
    let outside = format!("UPDATE deployments SET target_replicas = 7 WHERE id = '{uuid}'");
    primary.execute(&outside).await;
    let update = ws.next_payload(Duration::from_secs(10)).await;
    assert_eq!(update["data"]["deploymentUpdated"]["targetReplicas"], 7, "{update}");
    tokio::time::sleep(PAST_THE_BOUND).await;
    only_the_primary_serves(&server, &token, &id, 7, Duration::from_secs(1)).await;
    until_a_replica_serves(&server, &token, &id, 7).await;
}
