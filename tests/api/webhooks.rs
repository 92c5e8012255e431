//! Webhooks against the real binary, received by a Node receiver that
//! verifies every delivery with the Standard Webhooks reference library
//! (`tests/js/webhook-receiver.mjs`, `standardwebhooks` from npm): raw SQL
//! writes make exactly one event per transition; failures are retried on
//! the configured schedule; a killed instance loses nothing; two instances
//! share the outbox without attempting one delivery twice at once; a slow
//! receiver delays no one else; private targets are refused; a rotated
//! secret and its predecessor both verify; endpoints are their owner's.

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use entity::{deployment_replica, webhook_deployment_state, webhook_endpoint};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait,
    QueryFilter, Statement, Value as SqlValue,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{KillOnDrop, NewDeployment, ServerProcess, TestApp, error_code, post_graphql};

const ALL_EVENTS: &str = "[DEPLOYMENT_HEALTH_CHANGED, DEPLOYMENT_STATUS_CHANGED, \
    DEPLOYMENT_CREATED, DEPLOYMENT_SCALED, DEPLOYMENT_DELETED]";
const DELIVERIES: &str = "query($id: ID!) { webhookDeliveries(endpointId: $id, first: 100) { \
    nodes { id webhookId eventType state attempts lastStatusCode lastError nextAttemptAt } } }";

/// The Node receiver, killed when dropped.
struct Receiver {
    _child: KillOnDrop,
    port: u16,
}

impl Receiver {
    fn start(port: u16, slow_ms: u64) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/webhook-receiver.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .env("PORT", port.to_string())
            .env("SLOW_MS", slow_ms.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs the receiver (npm ci --prefix tests/js installs its library)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("the receiver's first line");
        let port = line.trim().strip_prefix("listening ").and_then(|p| p.parse().ok());
        let port = port.unwrap_or_else(|| panic!("receiver said `{line}`"));
        Self { _child: KillOnDrop(child), port }
    }

    fn url(&self, kind: &str, name: &str) -> String {
        format!("http://127.0.0.1:{}/{kind}/{name}", self.port)
    }

    async fn trust(&self, name: &str, secrets: &[&str]) {
        let url = format!("http://127.0.0.1:{}/secrets/{name}", self.port);
        let response = reqwest::Client::new().put(url).json(&secrets).send().await.expect("put");
        assert!(response.status().is_success());
    }

    /// Every request received so far, in order.
    async fn log(&self) -> Vec<Value> {
        let url = format!("http://127.0.0.1:{}/log", self.port);
        reqwest::get(url).await.expect("log").json().await.expect("log json")
    }

    /// The log once `done` holds of it; panics after `within`.
    async fn wait_for(&self, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log().await;
            if done(&log) {
                return log;
            }
            assert!(Instant::now() < deadline, "receiver log never got there: {log:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Requests to `name` answered 200 (only those the receiver verified).
fn delivered<'l>(log: &'l [Value], name: &str) -> Vec<&'l Value> {
    log.iter().filter(|entry| entry["name"] == name && entry["status"] == 200).collect()
}

/// A server whose webhooks may target the receiver on loopback.
async fn server(app: &TestApp, env: &[(&str, &str)]) -> ServerProcess {
    let env = [&[("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")], env].concat();
    ServerProcess::start_with(&app.database_url(), &env).await
}

async fn create_endpoint(
    addr: SocketAddr,
    token: &str,
    url: &str,
    events: &str,
) -> (String, String) {
    let query = format!(
        "mutation($url: String!) {{ createWebhookEndpoint(input: {{ url: $url, events: {events} }}) \
         {{ endpoint {{ id url events deploymentIds enabled }} secret }} }}"
    );
    let created = post_graphql(addr, token, &query, json!({ "url": url })).await;
    assert!(created["errors"].is_null(), "{created}");
    let created = &created["data"]["createWebhookEndpoint"];
    assert_eq!(created["endpoint"]["enabled"], true);
    let secret = created["secret"].as_str().expect("secret");
    assert!(secret.starts_with("whsec_"), "{secret}");
    (created["endpoint"]["id"].as_str().expect("id").to_owned(), secret.to_owned())
}

/// Runs `sql` (Postgres placeholders, rewritten for SQLite) on the database.
async fn raw(app: &TestApp, sql: &str, values: Vec<SqlValue>) {
    let backend = app.db.get_database_backend();
    let sql = if backend == DbBackend::Sqlite { sql.replace('$', "?") } else { sql.to_owned() };
    let statement = Statement::from_sql_and_values(backend, sql.clone(), values);
    app.db.execute_raw(statement).await.expect(&sql);
}

/// Waits until every deployment of `ids` has been described by the
/// detector (its startup sweep, or an event).
async fn described(app: &TestApp, ids: &[Uuid]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let states = webhook_deployment_state::Entity::find()
            .filter(webhook_deployment_state::Column::DeploymentId.is_in(ids.iter().copied()))
            .filter(webhook_deployment_state::Column::Snapshot.is_not_null())
            .all(&app.db)
            .await
            .expect("states");
        if states.len() == ids.len() {
            return;
        }
        assert!(Instant::now() < deadline, "the detector never described {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deliveries(addr: SocketAddr, token: &str, endpoint: &str) -> Vec<Value> {
    let page = post_graphql(addr, token, DELIVERIES, json!({ "id": endpoint })).await;
    assert!(page["errors"].is_null(), "{page}");
    page["data"]["webhookDeliveries"]["nodes"].as_array().expect("nodes").clone()
}

async fn a_replica_failed_by_raw_sql_is_one_health_event_each_way(app: &TestApp) {
    let receiver = Receiver::start(0, 0);
    let user = Uuid::new_v4();
    let replicas = vec![entity::ReplicaStatus::Running; 2];
    let id = app.insert(user, NewDeployment { target: 2, replicas, ..Default::default() }).await;
    let server = server(app, &[]).await;
    let token = app.token(user);
    // The user's first endpoint: their deployments are described as they
    // are, and the next change is told.
    let (_, secret) = create_endpoint(
        server.addr,
        &token,
        &receiver.url("ok", "health"),
        "[DEPLOYMENT_HEALTH_CHANGED]",
    )
    .await;
    described(app, &[id]).await;
    receiver.trust("health", &[&secret]).await;
    let replica = deployment_replica::Entity::find()
        .filter(deployment_replica::Column::DeploymentId.eq(id))
        .one(&app.db)
        .await
        .expect("replica")
        .expect("a replica");
    // As a node agent reports a crash: raw SQL, not the API.
    let set = "UPDATE deployment_replicas SET status = $1 WHERE id = $2";
    raw(app, set, vec!["failed".into(), replica.id.into()]).await;
    let log = receiver
        .wait_for(Duration::from_secs(10), |log| !delivered(log, "health").is_empty())
        .await;
    let event = &delivered(&log, "health")[0]["payload"];
    assert_eq!(event["type"], "DEPLOYMENT_HEALTH_CHANGED");
    assert_eq!(event["data"]["deployment"]["id"], id.to_string());
    assert_eq!(event["data"]["deployment"]["health"], "DEGRADED");
    assert_eq!(event["data"]["previous"]["health"], "HEALTHY");
    let counts = &event["data"]["deployment"]["replicaCounts"];
    assert_eq!(
        (counts["running"].as_i64(), counts["failed"].as_i64()),
        (Some(1), Some(1)),
        "{event}"
    );
    assert_eq!(event["data"]["deployment"]["targetReplicas"], 2);
    raw(app, set, vec!["running".into(), replica.id.into()]).await;
    let log =
        receiver.wait_for(Duration::from_secs(10), |log| delivered(log, "health").len() >= 2).await;
    let back = &delivered(&log, "health")[1]["payload"];
    assert_eq!(back["data"]["deployment"]["health"], "HEALTHY");
    assert_eq!(back["data"]["previous"]["health"], "DEGRADED");
    assert!(back["sequence"].as_i64() > event["sequence"].as_i64(), "{back} after {event}");
    // Exactly one each way, each verified by the reference library.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = receiver.log().await;
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(log.iter().all(|entry| entry["verifiedWith"] == json!([0])), "{log:#?}");
}

async fn a_receiver_failing_twice_gets_three_attempts_and_one_success(app: &TestApp) {
    let receiver = Receiver::start(0, 0);
    let server = server(app, &[("WEBHOOK_RETRY_SCHEDULE", "200ms,200ms,200ms")]).await;
    let user = Uuid::new_v4();
    let token = app.token(user);
    let url = receiver.url("flaky", "flaky");
    let (endpoint, secret) = create_endpoint(server.addr, &token, &url, ALL_EVENTS).await;
    receiver.trust("flaky", &[&secret]).await;
    let create = "mutation { createDeployment(input: { name: \"flaky\", targetReplicas: 1, \
        resources: { cpuCores: 1, memoryMb: 64, storageGb: 1 } }) { id } }";
    let created = post_graphql(server.addr, &token, create, json!({})).await;
    assert!(created["errors"].is_null(), "{created}");
    let log =
        receiver.wait_for(Duration::from_secs(10), |log| !delivered(log, "flaky").is_empty()).await;
    assert_eq!(log.len(), 3, "two 500s, then the 200: {log:#?}");
    assert!(
        log.iter().all(|entry| entry["id"] == log[0]["id"] && entry["verifiedWith"] == json!([0]))
    );
    assert_eq!(log[0]["payload"]["type"], "DEPLOYMENT_CREATED");
    let nodes = deliveries(server.addr, &token, &endpoint).await;
    assert_eq!(nodes.len(), 1, "{nodes:#?}");
    let delivery = &nodes[0];
    assert_eq!(delivery["state"], "SUCCEEDED", "{delivery}");
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["lastStatusCode"], 200);
    assert_eq!(delivery["webhookId"], log[0]["id"]);
    assert!(delivery["nextAttemptAt"].is_null() && delivery["lastError"].is_null());
}

async fn deliveries_pending_when_the_instance_is_killed_are_delivered_after(app: &TestApp) {
    // A receiver slow enough that attempts are under way at the kill.
    let receiver = Receiver::start(0, 300);
    let env = [("WEBHOOK_TIMEOUT", "1s"), ("WEBHOOK_RETRY_SCHEDULE", "200ms,200ms,200ms,200ms")];
    let mut first = Some(server(app, &env).await);
    let addr = first.as_ref().map(|s| s.addr).expect("server");
    let user = Uuid::new_v4();
    let token = app.token(user);
    let (endpoint, secret) =
        create_endpoint(addr, &token, &receiver.url("slow", "kill"), "[DEPLOYMENT_CREATED]").await;
    receiver.trust("kill", &[&secret]).await;
    let mut ids = Vec::new();
    for n in 0..30 {
        let new = NewDeployment { name: format!("killed-{n}"), ..Default::default() };
        ids.push(app.insert(user, new).await);
    }
    // Attempts are under way (received, not yet answered) when it dies.
    receiver.wait_for(Duration::from_secs(10), |log| log.len() >= 6).await;
    drop(first.take()); // SIGKILL
    let again = server(app, &env).await;
    // Delivered as the server knows it: every delivery SUCCEEDED.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = deliveries(again.addr, &token, &endpoint).await;
        if nodes.len() == ids.len() && nodes.iter().all(|node| node["state"] == "SUCCEEDED") {
            break;
        }
        assert!(Instant::now() < deadline, "not all delivered: {nodes:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One message per deployment; the attempts cut short by the kill were
    // made again, with the same webhook-id.
    let log = receiver.log().await;
    let mut ids_by_deployment: HashMap<String, HashSet<String>> = HashMap::new();
    let mut requests_by_id: HashMap<String, usize> = HashMap::new();
    for entry in &log {
        assert_eq!(entry["verifiedWith"], json!([0]), "{entry}");
        let deployment = entry["payload"]["data"]["deployment"]["id"].as_str().expect("id");
        ids_by_deployment.entry(deployment.to_owned()).or_default().insert(entry["id"].to_string());
        *requests_by_id.entry(entry["id"].to_string()).or_default() += 1;
    }
    assert_eq!(ids_by_deployment.len(), ids.len());
    assert!(ids_by_deployment.values().all(|ids| ids.len() == 1), "{ids_by_deployment:#?}");
    assert!(requests_by_id.values().any(|n| *n > 1), "no attempt was repeated: {log:#?}");
}

async fn a_slow_receiver_does_not_delay_another_endpoint(app: &TestApp) {
    let receiver = Receiver::start(0, 30_000);
    // Fewer attempts at once in all than the slow endpoint has waiting:
    // only its own cap (4) leaves room for the other.
    let server = server(app, &[("WEBHOOK_CONCURRENCY", "6")]).await;
    let user = Uuid::new_v4();
    let token = app.token(user);
    let events = "[DEPLOYMENT_CREATED]";
    let (_, slow) =
        create_endpoint(server.addr, &token, &receiver.url("slow", "slow"), events).await;
    let (_, fast) = create_endpoint(server.addr, &token, &receiver.url("ok", "fast"), events).await;
    receiver.trust("slow", &[&slow]).await;
    receiver.trust("fast", &[&fast]).await;
    let create = "mutation($name: String!) { createDeployment(input: { name: $name, \
        targetReplicas: 1, resources: { cpuCores: 1, memoryMb: 64, storageGb: 1 } }) { id } }";
    for n in 0..8 {
        let created_at = chrono::Utc::now().timestamp_millis();
        let name = format!("fast-{n}");
        let created = post_graphql(server.addr, &token, create, json!({ "name": name })).await;
        assert!(created["errors"].is_null(), "{created}");
        let log =
            receiver.wait_for(Duration::from_secs(5), |log| delivered(log, "fast").len() > n).await;
        let received = delivered(&log, "fast")[n]["receivedAt"].as_i64().expect("receivedAt");
        assert!(received - created_at < 1_000, "delivery {n} took {} ms", received - created_at);
    }
    // The slow receiver got its share, and holds them: none answered yet.
    let log = receiver.log().await;
    let slow_requests: Vec<_> = log.iter().filter(|entry| entry["name"] == "slow").collect();
    assert!(
        !slow_requests.is_empty() && slow_requests.iter().all(|e| e["status"].is_null()),
        "{log:#?}"
    );
}

async fn an_endpoint_failing_past_the_limit_is_disabled_and_says_so(app: &TestApp) {
    let receiver = Receiver::start(0, 0);
    let log = std::env::temp_dir().join(format!("deployql-webhooks-{}.log", Uuid::new_v4()));
    let env = [
        ("JWT_SECRET", crate::helpers::SECRET),
        ("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("WEBHOOK_RETRY_SCHEDULE", "300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms"),
        ("WEBHOOK_DISABLE_AFTER", "1s"),
        ("LOG_FORMAT", "json"),
    ];
    let server = ServerProcess::spawn_with_log(&app.database_url(), &env, &log);
    server.wait_ready().await;
    let token = app.token(Uuid::new_v4());
    let url = receiver.url("fail", "failing");
    let (endpoint, secret) = create_endpoint(server.addr, &token, &url, ALL_EVENTS).await;
    let test = "mutation($id: ID!) { sendTestWebhook(id: $id) { id } }";
    post_graphql(server.addr, &token, test, json!({ "id": endpoint })).await;
    post_graphql(server.addr, &token, test, json!({ "id": endpoint })).await;
    let listed = "{ webhookEndpoints { id enabled disabledReason failingSince } }";
    let deadline = Instant::now() + Duration::from_secs(15);
    let endpoint_now = loop {
        let listed = post_graphql(server.addr, &token, listed, json!({})).await;
        let endpoint = listed["data"]["webhookEndpoints"][0].clone();
        if endpoint["enabled"] == false {
            break endpoint;
        }
        assert!(Instant::now() < deadline, "never disabled: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = endpoint_now["disabledReason"].as_str().expect("a reason");
    assert!(reason.contains("failed for 1s"), "{reason}");
    assert!(endpoint_now["failingSince"].is_string());
    // Its deliveries are over, FAILED, not left pending.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let nodes = deliveries(server.addr, &token, &endpoint).await;
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|node| node["state"] == "FAILED"), "{nodes:#?}");
    // Each failed attempt is logged with the endpoint, never the secret.
    let text = std::fs::read_to_string(&log).expect("log");
    let failures: Vec<&str> =
        text.lines().filter(|line| line.contains("webhook delivery attempt failed")).collect();
    assert!(!failures.is_empty(), "{text}");
    assert!(failures.iter().all(|line| line.contains(&endpoint)), "{failures:#?}");
    assert!(!text.contains(&secret[6..]), "the secret is in the log");
    // Enabled again, it starts over.
    let enable = "mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: { enabled: true }) \
        { enabled disabledReason failingSince } }";
    let enabled = post_graphql(server.addr, &token, enable, json!({ "id": endpoint })).await;
    let enabled = &enabled["data"]["updateWebhookEndpoint"];
    assert_eq!(enabled, &json!({ "enabled": true, "disabledReason": null, "failingSince": null }));
    let _ = std::fs::remove_file(log);
}

async fn events_cost_statements_per_batch_not_per_deployment(app: &TestApp) {
    let receiver = Receiver::start(0, 0);
    let server = server(app, &[]).await;
    let user = Uuid::new_v4();
    let token = app.token(user);
    let url = receiver.url("ok", "batch");
    create_endpoint(server.addr, &token, &url, "[DEPLOYMENT_CREATED]").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.metric("deployql_webhook_sql_statements_total").await;
    // 100 deployments in one commit, as a bulk import would write them.
    let now = chrono::Utc::now();
    let rows = (0..100).map(|n| entity::deployment::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(user),
        name: Set(format!("bulk-{n}")),
        status: Set(entity::DeploymentStatus::Running),
        target_replicas: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        deleted_at: Set(None),
    });
    entity::deployment::Entity::insert_many(rows).exec(&app.db).await.expect("bulk insert");
    receiver.wait_for(Duration::from_secs(20), |log| delivered(log, "batch").len() == 100).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spent = server.metric("deployql_webhook_sql_statements_total").await - before;
    // Detection is a dozen statements per batch of 100; each delivery
    // costs its share of a claim and its outcome (about 1.5). Deployment
    // by deployment, detection alone took about 10 each.
    assert!(spent <= 250, "{spent} statements for 100 events");
}

async fn private_targets_are_refused_without_the_switch(app: &TestApp) {
    let receiver = Receiver::start(0, 0);
    let server = ServerProcess::start_with(&app.database_url(), &[]).await;
    let user = Uuid::new_v4();
    let token = app.token(user);
    let create = "mutation($url: String!) { createWebhookEndpoint(input: { url: $url, \
        events: [DEPLOYMENT_CREATED] }) { secret } }";
    for url in [
        receiver.url("ok", "private"),
        format!("https://127.0.0.1:{}/ok/private", receiver.port),
        format!("https://localhost:{}/ok/private", receiver.port),
        "https://169.254.169.254/latest/meta-data".to_owned(),
        "https://10.0.0.1/hook".to_owned(),
        "https://[::1]/hook".to_owned(),
        "https://[::ffff:127.0.0.1]/hook".to_owned(),
    ] {
        let refused = post_graphql(server.addr, &token, create, json!({ "url": url })).await;
        assert_eq!(error_code(&refused), Some("BAD_USER_INPUT"), "{url}: {refused}");
    }
    // A name that resolved elsewhere at creation and to loopback now (DNS
    // rebinding) is refused at connection: written past the API's check.
    let id = Uuid::new_v4();
    let now = chrono::Utc::now();
    webhook_endpoint::ActiveModel {
        id: Set(id),
        user_id: Set(user),
        url: Set(format!("https://localhost:{}/ok/private", receiver.port)),
        events: Set("DEPLOYMENT_CREATED".into()),
        deployment_ids: Set(None),
        enabled: Set(true),
        disabled_reason: Set(None),
        secret: Set("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        previous_secret: Set(None),
        previous_secret_until: Set(None),
        failing_since: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&app.db)
    .await
    .expect("endpoint row");
    let test = "mutation($id: ID!) { sendTestWebhook(id: $id) { id } }";
    let sent = post_graphql(server.addr, &token, test, json!({ "id": id.to_string() })).await;
    assert!(sent["errors"].is_null(), "{sent}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let nodes = deliveries(server.addr, &token, &id.to_string()).await;
        if nodes[0]["attempts"].as_i64() >= Some(1) && nodes[0]["lastError"].is_string() {
            break nodes[0].clone();
        }
        assert!(Instant::now() < deadline, "never attempted: {nodes:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = delivery["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("not a public address"), "{delivery}");
    assert!(delivery["lastStatusCode"].is_null());
    assert!(receiver.log().await.is_empty());
}

async fn during_a_rotation_either_secret_verifies(app: &TestApp) {
    let receiver = Receiver::start(0, 0);
    let server = server(app, &[]).await;
    let token = app.token(Uuid::new_v4());
    let url = receiver.url("ok", "rotated");
    let (endpoint, old) = create_endpoint(server.addr, &token, &url, ALL_EVENTS).await;
    let rotate = "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret \
        previousSecretExpiresAt endpoint { id previousSecretExpiresAt } } }";
    let rotated = post_graphql(server.addr, &token, rotate, json!({ "id": endpoint })).await;
    assert!(rotated["errors"].is_null(), "{rotated}");
    let new = rotated["data"]["rotateWebhookSecret"]["secret"].as_str().expect("secret");
    assert_ne!(new, old);
    let until =
        rotated["data"]["rotateWebhookSecret"]["previousSecretExpiresAt"].as_str().expect("until");
    let until = chrono::DateTime::parse_from_rfc3339(until).expect("a timestamp");
    let overlap = until.signed_duration_since(chrono::Utc::now());
    assert!((23..=24).contains(&overlap.num_hours()), "{overlap}");
    // A receiver holding only the old secret, one holding only the new.
    receiver.trust("rotated", &[&old, new]).await;
    let test = "mutation($id: ID!) { sendTestWebhook(id: $id) { id webhookId eventType state } }";
    let sent = post_graphql(server.addr, &token, test, json!({ "id": endpoint })).await;
    assert!(sent["errors"].is_null(), "{sent}");
    assert_eq!(sent["data"]["sendTestWebhook"]["eventType"], "WEBHOOK_TEST");
    let log = receiver.wait_for(Duration::from_secs(10), |log| !log.is_empty()).await;
    assert_eq!(log[0]["verifiedWith"], json!([0, 1]), "both secrets verify: {log:#?}");
    assert_eq!(log[0]["payload"]["type"], "WEBHOOK_TEST");
    assert_eq!(log[0]["id"], sent["data"]["sendTestWebhook"]["webhookId"]);
}

async fn another_users_endpoints_are_not_found(app: &TestApp) {
    let receiver = Receiver::start(0, 0);
    let server = server(app, &[]).await;
    let (owner, other) = (app.token(Uuid::new_v4()), app.token(Uuid::new_v4()));
    let url = receiver.url("ok", "owned");
    let (endpoint, _) = create_endpoint(server.addr, &owner, &url, ALL_EVENTS).await;
    let test = "mutation($id: ID!) { sendTestWebhook(id: $id) { id } }";
    let sent = post_graphql(server.addr, &owner, test, json!({ "id": endpoint })).await;
    let delivery = sent["data"]["sendTestWebhook"]["id"].as_str().expect("delivery").to_owned();
    let listed = post_graphql(server.addr, &other, "{ webhookEndpoints { id } }", json!({})).await;
    assert_eq!(listed["data"]["webhookEndpoints"], json!([]), "{listed}");
    let id = json!({ "id": endpoint });
    for (query, variables) in [
        (DELIVERIES, id.clone()),
        (
            "mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: { enabled: false }) { id } }",
            id.clone(),
        ),
        ("mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { id } }", id.clone()),
        ("mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret } }", id.clone()),
        (test, id.clone()),
        (
            "mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { id } }",
            json!({ "id": delivery }),
        ),
        (test, json!({ "id": "not-an-id" })),
    ] {
        let refused = post_graphql(server.addr, &other, query, variables.clone()).await;
        assert_eq!(error_code(&refused), Some("NOT_FOUND"), "{query} {variables}: {refused}");
    }
    // Still the owner's, unchanged.
    let mine =
        post_graphql(server.addr, &owner, "{ webhookEndpoints { id enabled } }", json!({})).await;
    assert_eq!(mine["data"]["webhookEndpoints"], json!([{ "id": endpoint, "enabled": true }]));
    let redeliver =
        "mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { id state attempts } }";
    let again = post_graphql(server.addr, &owner, redeliver, json!({ "id": delivery })).await;
    assert_eq!(again["data"]["redeliverWebhook"]["state"], "PENDING", "{again}");
}

/// Two instances on one Postgres database: 200 events, each delivered,
/// none attempted by both at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_200_events_each_once() {
    let Some(app) = TestApp::postgres().await else { return };
    let receiver = Receiver::start(0, 20);
    let a = server(&app, &[]).await;
    let b = server(&app, &[]).await;
    let user = Uuid::new_v4();
    let token = app.token(user);
    let url = receiver.url("ok", "pair");
    let (_, secret) = create_endpoint(a.addr, &token, &url, "[DEPLOYMENT_CREATED]").await;
    receiver.trust("pair", &[&secret]).await;
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(
            app.insert(user, NewDeployment { name: format!("pair-{n}"), ..Default::default() })
                .await,
        );
    }
    receiver.wait_for(Duration::from_secs(60), |log| delivered(log, "pair").len() >= 200).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = &receiver.log().await;
    let mut seen: HashMap<&str, Vec<&Value>> = HashMap::new();
    for entry in log {
        assert_eq!(entry["verifiedWith"], json!([0]), "{entry}");
        seen.entry(entry["id"].as_str().expect("id")).or_default().push(entry);
    }
    assert_eq!(seen.len(), 200, "one message per event");
    // No message attempted twice at once (a repeat would start after the
    // previous attempt was answered).
    for attempts in seen.values() {
        assert_eq!(attempts.len(), 1, "attempted more than once: {attempts:#?}");
    }
    let deployments: HashSet<&str> =
        log.iter().filter_map(|e| e["payload"]["data"]["deployment"]["id"].as_str()).collect();
    assert_eq!(deployments.len(), 200);
    // Both instances took part.
    let on_a = a.metric("deployql_webhook_attempts_total").await;
    let on_b = b.metric("deployql_webhook_attempts_total").await;
    assert_eq!(on_a + on_b, 200, "{on_a} + {on_b}");
}

backend_tests!(
    a_replica_failed_by_raw_sql_is_one_health_event_each_way,
    a_receiver_failing_twice_gets_three_attempts_and_one_success,
    deliveries_pending_when_the_instance_is_killed_are_delivered_after,
    a_slow_receiver_does_not_delay_another_endpoint,
    an_endpoint_failing_past_the_limit_is_disabled_and_says_so,
    events_cost_statements_per_batch_not_per_deployment,
    private_targets_are_refused_without_the_switch,
    during_a_rotation_either_secret_verifies,
    another_users_endpoints_are_not_found,
);

/// Behind PgBouncer in transaction mode (simple queries only): the
/// detector's locking transaction, the claim and the retries all work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_work_through_pgbouncer_in_transaction_mode() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    let Some(pooler) = crate::pooler::PgBouncer::start(&url).await else { return };
    let receiver = Receiver::start(0, 0);
    let env = [("DB_PREPARED_STATEMENTS", "false"), ("WEBHOOK_RETRY_SCHEDULE", "200ms,200ms")];
    let server = {
        let env = [&[("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")], &env[..]].concat();
        ServerProcess::start_with(&pooler.url_for(&url), &env).await
    };
    let user = Uuid::new_v4();
    let token = app.token(user);
    let url = receiver.url("flaky", "pooled");
    let (endpoint, secret) = create_endpoint(server.addr, &token, &url, ALL_EVENTS).await;
    receiver.trust("pooled", &[&secret]).await;
    // No replicas: it stays UNHEALTHY, so the events are CREATED, then SCALED.
    let pooled =
        NewDeployment { name: "pooled".into(), replicas: Vec::new(), ..Default::default() };
    let id = app.insert(user, pooled).await;
    let scale = "UPDATE deployments SET target_replicas = 7 WHERE id = $1";
    let log = receiver
        .wait_for(Duration::from_secs(15), |log| !delivered(log, "pooled").is_empty())
        .await;
    assert_eq!(delivered(&log, "pooled")[0]["payload"]["type"], "DEPLOYMENT_CREATED");
    raw(&app, scale, vec![id.into()]).await;
    let log =
        receiver.wait_for(Duration::from_secs(15), |log| delivered(log, "pooled").len() >= 2).await;
    let scaled = &delivered(&log, "pooled")[1]["payload"];
    assert_eq!(scaled["type"], "DEPLOYMENT_SCALED", "{scaled}");
    assert_eq!(scaled["data"]["deployment"]["targetReplicas"], 7, "{scaled}");
    assert_eq!(scaled["data"]["previous"]["targetReplicas"], 1, "{scaled}");
    assert!(log.iter().all(|entry| entry["verifiedWith"] == json!([0])), "{log:#?}");
    let nodes = deliveries(server.addr, &token, &endpoint).await;
    assert!(
        nodes.iter().all(|node| node["state"] == "SUCCEEDED" && node["attempts"] == 3),
        "{nodes:#?}"
    );
}
