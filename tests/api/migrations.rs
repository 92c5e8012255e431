//! Instances starting together on an empty database all come up, each
//! migration applied once; `MIGRATE_ON_START=false` applies nothing; a
//! database a newer release migrated still serves this one.

use std::process::{Command, Output};

use sea_orm::ConnectionTrait as _;

use crate::helpers::{SECRET, ServerProcess, TestApp, free_addr, start_all_at_once};

/// Each applied migration and how often it was recorded.
async fn applied(app: &TestApp) -> Vec<(String, i64)> {
    let statement = sea_orm::Statement::from_string(
        app.db.get_database_backend(),
        "SELECT version, COUNT(*) AS n FROM seaql_migrations GROUP BY version ORDER BY version",
    );
    let rows = app.db.query_all_raw(statement).await.expect("migrations table");
    rows.iter()
        .map(|row| (row.try_get("", "version").expect("version"), row.try_get("", "n").expect("n")))
        .collect()
}

fn serve(url: &str, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployql"))
        .arg("serve")
        .env("DATABASE_URL", url)
        .env("JWT_SECRET", SECRET)
        .env("LISTEN_ADDR", free_addr().to_string())
        .envs(env.iter().copied())
        .output()
        .expect("deployql serve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_instances_started_at_once_on_an_empty_database_all_serve() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    app.empty_postgres_schema().await;
    let _servers = start_all_at_once(&url, &[], 4).await;
    let applied = applied(&app).await;
    let known = <migration::Migrator as migration::MigratorTrait>::migrations().len();
    assert_eq!(applied.len(), known, "{applied:?}");
    assert!(applied.iter().all(|(_, n)| *n == 1), "a migration recorded twice: {applied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_migrate_on_start_a_server_applies_nothing_and_names_deployql_migrate() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    app.empty_postgres_schema().await;
    let output = serve(&url, &[("MIGRATE_ON_START", "false")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "served a database without its schema");
    assert!(stderr.contains("deployql migrate"), "{stderr}");
    let tables = sea_orm::Statement::from_string(
        app.db.get_database_backend(),
        "SELECT 1 FROM information_schema.tables WHERE table_schema = 'public'",
    );
    assert!(app.db.query_all_raw(tables).await.expect("tables").is_empty(), "it migrated");

    let migrate = Command::new(env!("CARGO_BIN_EXE_deployql"))
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .expect("deployql migrate");
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let server = ServerProcess::start_with(&url, &[("MIGRATE_ON_START", "false")]).await;
    assert!(server.ready_within(std::time::Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_a_newer_release_migrated_still_serves_this_one() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    // What the next release's first migration leaves behind.
    app.db
        .execute_unprepared(
            "INSERT INTO seaql_migrations (version, applied_at) \
             VALUES ('m20991231_000001_from_the_future', 0)",
        )
        .await
        .expect("a newer migration");
    let server = ServerProcess::start(&url).await;
    assert!(server.ready_within(std::time::Duration::from_secs(1)).await);
    let migrate = Command::new(env!("CARGO_BIN_EXE_deployql"))
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .expect("deployql migrate");
    let stderr = String::from_utf8_lossy(&migrate.stderr);
    assert!(migrate.status.success(), "{stderr}");
    assert!(stderr.contains("newer release"), "{stderr}");
}
