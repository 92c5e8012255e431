//! A fresh app per test on SQLite (its own file) or Postgres (a database
//! created for this test run), with typed helpers to seed and query it.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use chrono::{DateTime, Utc};
use deployql::{
    auth::JwtKeys,
    config::JwtSecret,
    db::{self, StatementCounter},
    http::{self, AppState},
};
use entity::{
    DeploymentStatus, ReplicaStatus, deployment, deployment_replica, deployment_resources,
    deployment_status_history,
};
use http_body_util::BodyExt;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseConnection, EntityTrait};
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

pub const SECRET: &str = "test-secret-test-secret-test-secret!";

#[derive(Debug)]
pub struct TestApp {
    pub db: DatabaseConnection,
    pub router: Router,
    pub keys: JwtKeys,
    /// Every SQL statement run on this app's pool, in order.
    pub statements: Arc<Mutex<Vec<String>>>,
    sqlite_file: Option<PathBuf>,
    /// Admin URL and name of this test's Postgres database.
    postgres_database: Option<(String, String)>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres_database.take() {
            on_own_runtime(async move {
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                admin(&admin_url).await.execute_unprepared(&sql).await.expect("drop test database");
            });
        }
        if let Some(path) = &self.sqlite_file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
}

/// The admin URL from `TEST_DATABASE_URL`, after dropping the databases that
/// earlier, killed runs left behind; `None` when unset outside CI.
fn postgres_admin_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set TEST_DATABASE_URL so the Postgres tests run"
            );
            eprintln!("TEST_DATABASE_URL is unset: skipping the Postgres variant");
            return None;
        };
        let url = admin_url.clone();
        on_own_runtime(async move { drop_stale_databases(&url).await });
        Some(admin_url)
    })
    .clone()
}

/// Runs admin work on a runtime of its own, from sync code or from inside a
/// test's runtime alike.
fn on_own_runtime<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || tokio::runtime::Runtime::new().expect("a runtime").block_on(work))
        .join()
        .expect("admin work panicked")
}

async fn admin(admin_url: &str) -> DatabaseConnection {
    db::connect(admin_url, 1)
        .await
        .unwrap_or_else(|err| panic!("Postgres at TEST_DATABASE_URL is unreachable: {err}"))
}

/// Test databases are named `deployql_test_<pid>_<n>`; those whose process is gone are dropped.
async fn drop_stale_databases(admin_url: &str) {
    let admin = admin(admin_url).await;
    let rows = admin
        .query_all_raw(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            "SELECT datname FROM pg_database WHERE datname LIKE 'deployql_test_%'",
        ))
        .await
        .expect("list test databases");
    for row in rows {
        let name: String = row.try_get("", "datname").expect("datname");
        let pid = name.trim_start_matches("deployql_test_").split('_').next().unwrap_or_default();
        if !std::path::Path::new("/proc").join(pid).exists() {
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            let _ = admin.execute_unprepared(&sql).await;
        }
    }
}

/// A fresh, migrated database for one test; dropped when the test's `TestApp` drops.
async fn create_test_database(admin_url: &str) -> (String, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name =
        format!("deployql_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let admin = admin(admin_url).await;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    let url = with_database(admin_url, &name);
    let test_db = db::connect(&url, 1).await.expect("connect test database");
    db::migrate(&test_db).await.expect("migrate test database");
    (name, url)
}

/// `admin_url` with its database name replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url.split_once('?').map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

impl TestApp {
    pub async fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!("deployql-test-{}.db", Uuid::new_v4()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let app = Self::connect(&url, Some(path)).await;
        db::migrate(&app.db).await.expect("migrate");
        app
    }

    /// `None` when Postgres is not configured (never in CI).
    pub async fn postgres() -> Option<Self> {
        let admin_url = postgres_admin_url()?;
        let (name, url) = create_test_database(&admin_url).await;
        let mut app = Self::connect(&url, None).await;
        app.postgres_database = Some((admin_url, name));
        Some(app)
    }

    async fn connect(url: &str, sqlite_file: Option<PathBuf>) -> Self {
        let mut db = db::connect(url, 8).await.expect("connect");
        let statements = Arc::new(Mutex::new(Vec::new()));
        let (log, counter) = (statements.clone(), StatementCounter::default());
        let metrics = counter.clone();
        db.set_metric_callback(move |info| {
            counter.record();
            log.lock().expect("statement log").push(info.statement.sql.clone());
        });
        let keys = JwtKeys::new(&JwtSecret::parse(SECRET).expect("secret"));
        let router = http::router(AppState::new(db.clone(), keys.clone(), None, metrics));
        Self { db, router, keys, statements, sqlite_file, postgres_database: None }
    }

    pub fn token(&self, user: Uuid) -> String {
        self.keys.mint(user, Duration::from_secs(600)).expect("mint")
    }

    /// Serves a router built from this app's database and keys, adjusted by `configure`.
    pub fn reconfigure(&mut self, configure: impl FnOnce(AppState) -> AppState) {
        let state =
            AppState::new(self.db.clone(), self.keys.clone(), None, StatementCounter::default());
        self.router = http::router(configure(state));
    }

    /// The URL a `deployql serve` process would use for this app's database.
    pub fn database_url(&self) -> String {
        match (&self.sqlite_file, self.postgres_url()) {
            (_, Some(url)) => url,
            (Some(path), None) => format!("sqlite://{}?mode=rwc", path.display()),
            (None, None) => unreachable!("an app is on SQLite or Postgres"),
        }
    }

    /// Sends a request through the router (no network) and returns status,
    /// headers and the JSON body (Null when the body is not JSON).
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let response = self.router.clone().oneshot(request).await.expect("router");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, parts.headers, json)
    }

    /// POSTs `body` to /graphql with `authorization` as the header value, if any.
    pub async fn post(
        &self,
        authorization: Option<&str>,
        body: Body,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request =
            Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        self.send(request.body(body).expect("request")).await
    }

    /// Runs one GraphQL operation as `user` and returns the whole response body.
    pub async fn gql(&self, user: Uuid, query: &str, variables: Value) -> Value {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let (status, _, json) =
            self.post(Some(&format!("Bearer {}", self.token(user))), body.into()).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json
    }

    /// The `targetReplicas` `user` sees for deployment `id` (null when not found).
    pub async fn target_replicas(&self, user: Uuid, id: Uuid) -> Value {
        let query = "query($id: ID!) { deployment(id: $id) { targetReplicas } }";
        self.gql(user, query, json!({ "id": id })).await["data"]["deployment"]["targetReplicas"]
            .clone()
    }

    /// Like `gql`, and also returns the SQL statements it ran.
    pub async fn gql_logged(
        &self,
        user: Uuid,
        query: &str,
        variables: Value,
    ) -> (Value, Vec<String>) {
        let before = self.statements.lock().expect("log").len();
        let json = self.gql(user, query, variables).await;
        let statements = self.statements.lock().expect("log")[before..].to_vec();
        (json, statements)
    }

    /// Serves the app on a free port of 127.0.0.1, until the test ends.
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = self.router.clone();
        tokio::spawn(http::serve(listener, router, std::future::pending()));
        addr
    }

    /// Inserts a deployment as another service would, straight into the tables.
    pub async fn insert(&self, user: Uuid, new: NewDeployment) -> Uuid {
        let id = Uuid::new_v4();
        deployment::Entity::insert(deployment::ActiveModel {
            id: Set(id),
            user_id: Set(user),
            name: Set(new.name.clone()),
            status: Set(new.status),
            target_replicas: Set(new.target),
            created_at: Set(new.created_at),
            updated_at: Set(new.created_at),
            deleted_at: Set(new.deleted.then_some(new.created_at)),
        })
        .exec(&self.db)
        .await
        .expect("insert deployment");
        for (n, status) in new.replicas.iter().enumerate() {
            deployment_replica::Entity::insert(deployment_replica::ActiveModel {
                id: Set(Uuid::new_v4()),
                deployment_id: Set(id),
                node_id: Set(Some(Uuid::new_v4())),
                status: Set(*status),
                container_id: Set(Some(format!("c-{n}"))),
                started_at: Set(Some(new.created_at + chrono::Duration::seconds(n as i64))),
                stopped_at: Set(None),
            })
            .exec(&self.db)
            .await
            .expect("insert replica");
        }
        if new.resources {
            deployment_resources::Entity::insert(deployment_resources::ActiveModel {
                id: Set(Uuid::new_v4()),
                deployment_id: Set(id),
                cpu_cores: Set(1.5),
                memory_mb: Set(2048),
                gpu_units: Set(1),
                storage_gb: Set(10),
            })
            .exec(&self.db)
            .await
            .expect("insert resources");
        }
        for n in 0..new.history {
            deployment_status_history::Entity::insert(deployment_status_history::ActiveModel {
                id: Set(Uuid::new_v4()),
                deployment_id: Set(id),
                old_status: Set((n > 0).then_some(DeploymentStatus::Pending)),
                new_status: Set(DeploymentStatus::Running),
                changed_at: Set(new.created_at + chrono::Duration::minutes(n as i64)),
                reason: Set(Some(format!("change {n}"))),
            })
            .exec(&self.db)
            .await
            .expect("insert history");
        }
        id
    }
}

/// What `TestApp::insert` writes; `Default` is a healthy deployment of one replica.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub name: String,
    pub status: DeploymentStatus,
    pub target: i32,
    pub replicas: Vec<ReplicaStatus>,
    pub resources: bool,
    pub history: usize,
    pub created_at: DateTime<Utc>,
    pub deleted: bool,
}

impl Default for NewDeployment {
    fn default() -> Self {
        Self {
            name: format!("app-{}", &Uuid::new_v4().simple().to_string()[..8]),
            status: DeploymentStatus::Running,
            target: 1,
            replicas: vec![ReplicaStatus::Running],
            resources: true,
            history: 1,
            // An hour ago, so seeded history (a minute a row) lies in the past.
            created_at: micros(Utc::now() - chrono::Duration::hours(1)),
            deleted: false,
        }
    }
}

/// Postgres keeps microseconds; seeding with them keeps comparisons exact on both backends.
pub fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).expect("in range")
}

/// The `extensions.code` of the first error, if any.
pub fn error_code(response: &Value) -> Option<&str> {
    response["errors"][0]["extensions"]["code"].as_str()
}

impl TestApp {
    /// The URL of this test's Postgres database, when it runs on Postgres.
    pub fn postgres_url(&self) -> Option<String> {
        self.postgres_database.as_ref().map(|(admin_url, name)| with_database(admin_url, name))
    }
}

/// A child process killed when dropped, pass or fail.
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port of 127.0.0.1 that nothing listens on (for a server process to take).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr")
}

/// A `deployql serve` process on a free port, killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: KillOnDrop,
    pub addr: SocketAddr,
}

impl ServerProcess {
    pub async fn start(database_url: &str) -> Self {
        Self::start_with(database_url, &[]).await
    }

    /// Starts a server with extra environment variables (`CORS_ALLOWED_ORIGINS`, ...).
    pub async fn start_with(database_url: &str, env: &[(&str, &str)]) -> Self {
        let addr = free_addr();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_deployql"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("JWT_SECRET", SECRET)
            .env("LISTEN_ADDR", addr.to_string())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start deployql");
        let server = Self { child: KillOnDrop(child), addr };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            let ready = client.get(format!("http://{addr}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("deployql on {addr} did not become ready");
    }

    /// Starts a dev-mode server (no `JWT_SECRET`) and returns it with the
    /// demo token it prints.
    pub async fn start_dev(database_url: &str) -> (Self, String) {
        use std::io::BufRead;
        let addr = free_addr();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_deployql"))
            .arg("serve")
            .env_remove("JWT_SECRET")
            .env("DEV_MODE", "true")
            .env("DATABASE_URL", database_url)
            .env("LISTEN_ADDR", addr.to_string())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start deployql");
        let stdout = child.stdout.take().expect("stdout");
        let server = Self { child: KillOnDrop(child), addr };
        let token = tokio::task::spawn_blocking(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .find_map(|line| line.strip_prefix("export TOKEN=").map(str::to_owned))
        })
        .await
        .expect("read stdout")
        .expect("dev mode prints `export TOKEN=...`");
        (server, token)
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The server's resident and peak memory in MiB, from /proc.
    pub fn memory_mb(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .unwrap_or(0)
                / 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Runs one GraphQL operation over HTTP as `token`'s user.
    pub async fn gql(&self, token: &str, query: &str, variables: Value) -> Value {
        post_graphql(self.addr, token, query, variables).await
    }
}

/// POSTs one GraphQL operation to a real server at `addr`.
pub async fn post_graphql(addr: SocketAddr, token: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}
