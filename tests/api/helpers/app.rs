//! `TestApp`, the app under test, and its SQLite and Postgres constructors.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::Router;
use deployql::{
    auth::JwtKeys,
    config::JwtSecret,
    db::{self, StatementCounter},
    http::{self, AppState},
    telemetry::Metrics,
};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::database::{create_test_database, postgres_admin_url};

pub const SECRET: &str = "test-secret-test-secret-test-secret!";

#[derive(Debug)]
pub struct TestApp {
    pub db: DatabaseConnection,
    pub router: Router,
    pub keys: JwtKeys,
    /// Every SQL statement run on this app's pool, in order.
    pub statements: Arc<Mutex<Vec<String>>>,
    pub(super) sqlite_file: Option<PathBuf>,
    /// Admin URL and name of this test's Postgres database.
    pub(super) postgres_database: Option<(String, String)>,
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
        let metrics = counter.metrics().clone();
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
        let state = AppState::new(self.db.clone(), self.keys.clone(), None, Metrics::default());
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
}
