//! Live updates across two `deployql` processes sharing one Postgres
//! database, fed by the triggers whoever the writer is.

use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, ServerProcess, TestApp},
    live::WATCH,
    ws_client::{Event, TRANSPORT_WS, WsClient},
};

const SECOND: Duration = Duration::from_secs(1);

fn field<'a>(payload: &'a Value, name: &str) -> &'a Value {
    &payload["data"]["deploymentUpdated"][name]
}

/// Reads messages until one satisfies `wanted`, within `limit`; returns it.
async fn until(ws: &mut WsClient, limit: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let payload = ws.next_payload(left).await;
        if wanted(&payload) {
            return payload;
        }
    }
}

/// Inserts a deployment and subscribes to it on `server`, past the first message.
async fn watch_new_deployment(app: &TestApp, server: &ServerProcess) -> (Uuid, WsClient) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    // The insert's own changes reach the server within a read of the log;
    // let them pass before watching, so they are not taken for later ones.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;
    ws.subscribe("1", WATCH, json!({ "id": id })).await;
    ws.next_payload(SECOND).await;
    (id, ws)
}

async fn sql(app: &TestApp, statement: &str) {
    app.db.execute_unprepared(statement).await.expect("raw SQL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_sees_changes_made_through_another_and_by_raw_sql() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    let (a, b) = (ServerProcess::start(&url).await, ServerProcess::start(&url).await);
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { target: 1, ..Default::default() }).await;
    // Resources and history selected too: a change shows only where selected
    // (a subscriber never gets the same result twice in a row).
    let watch_all = "subscription($id: ID!) { deploymentUpdated(id: $id) { id targetReplicas \
                     health replicas { containerId status } resources { memoryMb } \
                     statusHistory(limit: 1) { newStatus } } }";
    let token = app.token(user);
    let mut ws = WsClient::connect(b.addr, TRANSPORT_WS).await;
    ws.init_with_token(&token).await;
    ws.subscribe("1", watch_all, json!({ "id": id })).await;
    let first = ws.next_payload(SECOND).await;
    assert_eq!(field(&first, "targetReplicas"), 1, "{first}");

    let started = Instant::now();
    let scale = "mutation($id: ID!) { scaleDeployment(id: $id, targetReplicas: 4) { id } }";
    a.gql(&token, scale, json!({ "id": id })).await;
    until(&mut ws, SECOND, |p| field(p, "targetReplicas") == 4).await;
    assert!(started.elapsed() < SECOND, "{:?}", started.elapsed());

    let started = Instant::now();
    sql(
        &app,
        &format!("UPDATE deployment_replicas SET status = 'failed' WHERE deployment_id = '{id}'"),
    )
    .await;
    let failed = until(&mut ws, SECOND, |p| field(p, "health") == "UNHEALTHY").await;
    assert!(started.elapsed() < SECOND, "{:?}", started.elapsed());
    assert_eq!(field(&failed, "replicas")[0]["status"], "FAILED");

    // Resources and history changes wake the subscription too.
    sql(
        &app,
        &format!("UPDATE deployment_resources SET memory_mb = 4096 WHERE deployment_id = '{id}'"),
    )
    .await;
    let resized = ws.next_payload(SECOND).await;
    assert_eq!(field(&resized, "resources")["memoryMb"], 4096, "{resized}");
    sql(
        &app,
        &format!(
            "INSERT INTO deployment_status_history (id, deployment_id, new_status, changed_at) \
             VALUES ('{}', '{id}', 'failed', now())",
            Uuid::new_v4()
        ),
    )
    .await;
    let recorded = ws.next_payload(SECOND).await;
    assert_eq!(field(&recorded, "statusHistory")[0]["newStatus"], "FAILED", "{recorded}");

    // A deployment nobody watches costs the watching instance no query.
    let unwatched = app.insert(user, NewDeployment::default()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = b.metric("deployql_sql_statements_total").await;
    sql(&app, &format!("UPDATE deployments SET target_replicas = 9 WHERE id = '{unwatched}'"))
        .await;
    assert_eq!(ws.recv(Duration::from_millis(500)).await, Event::Silence);
    assert_eq!(b.metric("deployql_sql_statements_total").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_replica_updates_ends_on_the_last_state() {
    let Some(app) = TestApp::postgres().await else { return };
    let server = ServerProcess::start(&app.postgres_url().expect("postgres")).await;
    let (id, mut ws) = watch_new_deployment(&app, &server).await;
    for n in 0..50 {
        sql(&app, &format!("UPDATE deployment_replicas SET container_id = 'burst-{n}' WHERE deployment_id = '{id}'")).await;
    }
    let mut messages = 0;
    loop {
        let payload = ws.next_payload(Duration::from_secs(2)).await;
        messages += 1;
        if field(&payload, "replicas")[0]["containerId"] == "burst-49" {
            break;
        }
    }
    assert!(messages < 50, "coalesced into {messages} messages");
    assert_eq!(
        ws.recv(Duration::from_millis(300)).await,
        Event::Silence,
        "nothing after the last state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_reader_survives_its_connection_being_killed() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    let server = ServerProcess::start(&url).await;
    let (id, mut ws) = watch_new_deployment(&app, &server).await;

    let database =
        url.rsplit('/').next().unwrap_or_default().split('?').next().unwrap_or_default().to_owned();
    let listeners = |action: &str| {
        format!(
            "SELECT {action} FROM pg_stat_activity \
             WHERE application_name = 'deployql-changes' AND datname = '{database}'"
        )
    };
    let rows = |sql: String| {
        let db = app.db.clone();
        async move {
            let statement = sea_orm::Statement::from_string(db.get_database_backend(), sql);
            db.query_all_raw(statement).await.expect("pg_stat_activity").len()
        }
    };
    // The reader connects just after the server answers; wait for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while rows(listeners("pid")).await == 0 {
        assert!(Instant::now() < deadline, "the change reader never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows(listeners("pg_terminate_backend(pid)")).await, 1, "one reader killed");
    // Changed while the reader is down: the resync after reconnecting delivers it.
    sql(&app, &format!("UPDATE deployment_replicas SET container_id = 'after-kill' WHERE deployment_id = '{id}'")).await;
    until(&mut ws, Duration::from_secs(5), |p| {
        field(p, "replicas")[0]["containerId"] == "after-kill"
    })
    .await;
    // And notifications flow again.
    sql(&app, &format!("UPDATE deployments SET target_replicas = 7 WHERE id = '{id}'")).await;
    until(&mut ws, SECOND, |p| field(p, "targetReplicas") == 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscription_message_is_one_statement_on_postgres() {
    let Some(app) = TestApp::postgres().await else { return };
    let server = ServerProcess::start(&app.postgres_url().expect("postgres")).await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { target: 1, history: 2, ..Default::default() }).await;
    // With no subscription the reader only snapshots (every 200 ms), and a
    // first subscription reads from the last snapshot: let the insert fall
    // well before it, so its rows are not taken for a change after.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;
    let watch = "subscription($id: ID!) { deploymentUpdated(id: $id) { id health
        replicas { status } resources { cpuCores } statusHistory { newStatus } } }";
    let before = server.metric("deployql_sql_statements_total").await;
    ws.subscribe("1", watch, json!({ "id": id })).await;
    ws.next_payload(SECOND).await;
    assert_eq!(
        server.metric("deployql_sql_statements_total").await - before,
        1,
        "the first message"
    );

    let before = server.metric("deployql_sql_statements_total").await;
    sql(
        &app,
        &format!("UPDATE deployment_replicas SET status = 'failed' WHERE deployment_id = '{id}'"),
    )
    .await;
    until(&mut ws, SECOND, |p| field(p, "health") == "UNHEALTHY").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.metric("deployql_sql_statements_total").await - before,
        1,
        "one refetch per change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_changes_nothing_is_captured_but_sends_nothing() {
    let Some(app) = TestApp::postgres().await else { return };
    let server = ServerProcess::start(&app.postgres_url().expect("postgres")).await;
    let (id, mut ws) = watch_new_deployment(&app, &server).await;
    let changes = || server.metric("deployql_live_changes_total");
    let before = changes().await;
    // A node agent's heartbeat: every row rewritten as it was.
    let heartbeat =
        format!("UPDATE deployment_replicas SET status = status WHERE deployment_id = '{id}'");
    sql(&app, &heartbeat).await;
    assert_eq!(ws.recv(Duration::from_millis(500)).await, Event::Silence, "sent again");
    assert!(changes().await > before, "the heartbeat was not captured");
    // The next real change is the next message.
    sql(&app, &format!("UPDATE deployments SET target_replicas = 7 WHERE id = '{id}'")).await;
    assert_eq!(field(&ws.next_payload(SECOND).await, "targetReplicas"), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_at_a_time_prunes_the_change_log_and_old_rows_go() {
    use sea_orm::sqlx::{Connection, PgConnection};
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    let _server = ServerProcess::start(&url).await;
    let log_rows = || {
        let db = app.db.clone();
        async move {
            let sql = format!("SELECT count(*) AS n FROM {}", migration::CHANGE_LOG);
            let statement = sea_orm::Statement::from_string(db.get_database_backend(), sql);
            let row = db.query_one_raw(statement).await.expect("count").expect("a row");
            row.try_get::<i64>("", "n").expect("n")
        }
    };
    // Another instance pruning, as far as the server can tell.
    let mut other = PgConnection::connect(&url).await.expect("connect");
    sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(deployql::live::capture::PRUNE_LOCK)
        .execute(&mut other)
        .await
        .expect("lock");
    app.insert(Uuid::new_v4(), NewDeployment::default()).await;
    let written = log_rows().await;
    assert!(written > 0, "the insert was not captured");
    // Past the retention (30 s) and a prune's interval (5 s): the server's
    // prunes were skipped, the rows are still there.
    tokio::time::sleep(Duration::from_secs(37)).await;
    assert_eq!(log_rows().await, written, "pruned while another instance held the lock");
    // The other instance is done: the server's next prune deletes them.
    sea_orm::sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut other)
        .await
        .expect("unlock");
    let deadline = Instant::now() + Duration::from_secs(8);
    while log_rows().await > 0 {
        assert!(Instant::now() < deadline, "the change log was never pruned");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_committed_after_a_later_one_still_arrives() {
    use sea_orm::TransactionTrait;
    let Some(app) = TestApp::postgres().await else { return };
    let server = ServerProcess::start(&app.postgres_url().expect("postgres")).await;
    let (a_id, mut watch_a) = watch_new_deployment(&app, &server).await;
    let (b_id, mut watch_b) = watch_new_deployment(&app, &server).await;
    let container = |id: Uuid, value: &str| {
        format!(
            "UPDATE deployment_replicas SET container_id = '{value}' WHERE deployment_id = '{id}'"
        )
    };
    // A writes first, so its transaction id is the lower one, and stays open.
    let a = app.db.begin().await.expect("begin a");
    a.execute_unprepared(&container(a_id, "from-a")).await.expect("write a");
    // B writes later and commits first; the reader reads past it.
    let b = app.db.begin().await.expect("begin b");
    b.execute_unprepared(&container(b_id, "from-b")).await.expect("write b");
    b.commit().await.expect("commit b");
    until(&mut watch_b, SECOND, |p| field(p, "replicas")[0]["containerId"] == "from-b").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A commits now: its change, older than B's, still reaches A's watcher.
    a.commit().await.expect("commit a");
    until(&mut watch_a, SECOND, |p| field(p, "replicas")[0]["containerId"] == "from-a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_from_notify_triggers_to_the_change_log_and_back() {
    use migration::MigratorTrait;
    let Some(app) = TestApp::postgres().await else { return };
    let triggers = || {
        let db = app.db.clone();
        async move {
            let sql = "SELECT tgname::text AS name FROM pg_trigger \
                       WHERE tgrelid = 'deployment_replicas'::regclass AND NOT tgisinternal \
                       ORDER BY tgname";
            let statement = sea_orm::Statement::from_string(db.get_database_backend(), sql);
            let rows = db.query_all_raw(statement).await.expect("triggers");
            rows.iter()
                .map(|row| row.try_get::<String>("", "name").expect("name"))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(triggers().await, ["deployment_replicas_capture"]);
    // Migrations 9 (idempotency keys), 8 (persisted queries), 7 (SQLite
    // only) and 6 (the write probe) leave the triggers be.
    migration::Migrator::down(&app.db, Some(5)).await.expect("down 10 to 6");
    assert_eq!(triggers().await, ["deployment_replicas_capture"]);
    // Migration 5 down restores migration 4's pair (updates compared first).
    migration::Migrator::down(&app.db, Some(1)).await.expect("down 5");
    assert_eq!(
        triggers().await,
        ["deployment_replicas_capture", "deployment_replicas_capture_update"]
    );
    // The documented rollback: migration 4 down restores the notify trigger.
    migration::Migrator::down(&app.db, Some(1)).await.expect("down 4");
    assert_eq!(triggers().await, ["deployment_replicas_notify"]);
    // And `deployql migrate` moves it forward again.
    migration::Migrator::up(&app.db, None).await.expect("up");
    assert_eq!(triggers().await, ["deployment_replicas_capture"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_reader_idles_while_no_one_subscribes_and_misses_nothing_after() {
    let Some(app) = TestApp::postgres().await else { return };
    let server = ServerProcess::start(&app.postgres_url().expect("postgres")).await;
    let reads = || server.metric("deployql_live_log_reads_total");
    let before = reads().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = reads().await - before;
    assert!(idle <= 14, "{idle} reads in 2 s without a subscription (5 a second expected)");

    // Changes keep coming while no one watches; then someone does, and a
    // change right after their first message reaches them.
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { target: 1, ..Default::default() }).await;
    let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;
    ws.subscribe("1", WATCH, json!({ "id": id })).await;
    ws.next_payload(SECOND).await;
    sql(&app, &format!("UPDATE deployments SET target_replicas = 5 WHERE id = '{id}'")).await;
    until(&mut ws, SECOND, |p| field(p, "targetReplicas") == 5).await;
    let before = reads().await;
    tokio::time::sleep(SECOND).await;
    let watching = reads().await - before;
    assert!(watching >= 25, "only {watching} reads in 1 s with a subscription (20 ms interval)");
    assert_eq!(
        server.metric("deployql_live_reader_restarts_total").await,
        1,
        "a first subscription is no restart"
    );
}
