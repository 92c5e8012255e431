//! Per-test databases: Postgres ones created from `TEST_DATABASE_URL` and
//! dropped with their `TestApp` (with leftovers of killed runs), SQLite files removed.

use std::sync::{
    OnceLock,
    atomic::{AtomicU32, Ordering},
};

use deployql::db;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use super::TestApp;

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
pub(super) fn postgres_admin_url() -> Option<String> {
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
pub(super) async fn create_test_database(admin_url: &str) -> (String, String) {
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
    /// Empties this test's Postgres database: no tables, no migrations applied.
    pub async fn empty_postgres_schema(&self) {
        self.db
            .execute_unprepared("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            .await
            .expect("empty the database");
    }

    /// The URL of this test's Postgres database, when it runs on Postgres.
    pub fn postgres_url(&self) -> Option<String> {
        self.postgres_database.as_ref().map(|(admin_url, name)| with_database(admin_url, name))
    }
}
