//! Idempotency keys on mutations, against the real binary: a retry after a
//! lost reply replays the first answer; concurrent retries run once, on
//! one instance or two; a key reused for another operation is 422; a
//! retried scale takes effect once; a replay over the WebSocket is flagged;
//! a process killed before its commit leaves nothing, after it a replay;
//! expired keys are pruned and run again.

use std::{net::SocketAddr, process::Command, time::Duration};

use reqwest::header::HeaderMap;
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, ServerProcess, TestApp, error_code},
    ws_client::{TRANSPORT_WS, WsClient},
};

const CREATE: &str = "mutation Create($name: String!) { createDeployment(input: { name: $name, \
    targetReplicas: 2, resources: { cpuCores: 1, memoryMb: 64, storageGb: 1 } }) \
    { id name status statusHistory { newStatus } } }";
const SCALE: &str = "mutation Scale($id: ID!, $n: Int!) { scaleDeployment(id: $id, \
    targetReplicas: $n) { id targetReplicas } }";

/// POSTs `body` as `token`'s user with `key` as the Idempotency-Key header.
async fn send(
    addr: SocketAddr,
    token: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, HeaderMap, Value) {
    let mut request =
        reqwest::Client::new().post(format!("http://{addr}/graphql")).bearer_auth(token).json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", format!("\"{key}\""));
    }
    let response = request.send().await.expect("send");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.json().await.unwrap_or(Value::Null))
}

fn replayed(headers: &HeaderMap) -> bool {
    headers.get("idempotent-replayed").is_some_and(|value| value == "true")
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let statement = Statement::from_string(app.db.get_database_backend(), sql);
    let row = app.db.query_one_raw(statement).await.expect("count").expect("a row");
    row.try_get_by_index::<i64>(0).expect("a count")
}

async fn deployments_named(app: &TestApp, name: &str) -> i64 {
    count(app, &format!("SELECT COUNT(*) FROM deployments WHERE name = '{name}'")).await
}

async fn history_of_named(app: &TestApp, name: &str) -> i64 {
    count(
        app,
        &format!(
            "SELECT COUNT(*) FROM deployment_status_history h JOIN deployments d \
             ON d.id = h.deployment_id WHERE d.name = '{name}'"
        ),
    )
    .await
}

async fn a_retry_after_a_lost_reply_replays_the_first_answer(app: &TestApp) {
    let server = ServerProcess::start(&app.database_url()).await;
    let user = Uuid::new_v4();
    let token = app.token(user);
    let body = json!({ "query": CREATE, "variables": { "name": "web" } }).to_string();
    // The client sends the mutation and goes away unread once it committed.
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: deployql\r\ncontent-type: application/json\r\n\
         authorization: Bearer {token}\r\nidempotency-key: \"lost-reply\"\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    socket.write_all(body.as_bytes()).await.expect("body");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while deployments_named(app, "web").await == 0 {
        assert!(std::time::Instant::now() < deadline, "the mutation never committed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(socket);

    let variables = json!({ "query": CREATE, "variables": { "name": "web" } });
    let (status, headers, retried) =
        send(server.addr, &token, Some("lost-reply"), &variables).await;
    assert_eq!(status, 200, "{retried}");
    assert!(replayed(&headers), "{retried}");
    assert_eq!(retried["data"]["createDeployment"]["name"], "web", "{retried}");
    let (_, _, again) = send(server.addr, &token, Some("lost-reply"), &variables).await;
    assert_eq!(again, retried, "every replay is the same answer");
    assert_eq!(deployments_named(app, "web").await, 1);
    assert_eq!(history_of_named(app, "web").await, 1, "one history entry");
    // Without the key, the retry is the CONFLICT the issue started from.
    let (_, _, conflict) = send(server.addr, &token, None, &variables).await;
    assert_eq!(error_code(&conflict), Some("CONFLICT"), "{conflict}");
}

async fn concurrent_retries_with_one_key_run_once(app: &TestApp) {
    let first = ServerProcess::start(&app.database_url()).await;
    // On Postgres, half of them go to a second instance.
    let second = match app.postgres_url() {
        Some(_) => Some(ServerProcess::start(&app.database_url()).await),
        None => None,
    };
    let user = Uuid::new_v4();
    let token = app.token(user);
    let body = json!({ "query": CREATE, "variables": { "name": "burst" } });
    let sends = (0..20).map(|n| {
        let addr = match (&second, n % 2) {
            (Some(second), 1) => second.addr,
            _ => first.addr,
        };
        let (token, body) = (token.clone(), body.clone());
        tokio::spawn(async move { send(addr, &token, Some("burst-1"), &body).await })
    });
    let answers: Vec<_> =
        futures_util::future::join_all(sends).await.into_iter().map(|a| a.expect("task")).collect();
    let mut bodies = Vec::new();
    for (status, headers, body) in &answers {
        match status {
            200 => bodies.push(body.clone()),
            409 => {
                assert_eq!(error_code(body), Some("IDEMPOTENCY_KEY_IN_USE"), "{body}");
                assert!(headers.contains_key("retry-after"), "409 says when to retry");
            }
            other => panic!("{other}: {body}"),
        }
        let _ = replayed(headers);
    }
    assert!(!bodies.is_empty(), "one ran");
    assert!(bodies.windows(2).all(|pair| pair[0] == pair[1]), "one answer: {bodies:?}");
    assert!(bodies[0]["data"]["createDeployment"]["id"].is_string(), "{}", bodies[0]);
    assert_eq!(deployments_named(app, "burst").await, 1);
    assert_eq!(history_of_named(app, "burst").await, 1);
    // Once it has answered, every retry replays.
    let (status, headers, last) = send(first.addr, &token, Some("burst-1"), &body).await;
    assert!(status == 200 && replayed(&headers) && last == bodies[0], "{status} {last}");
}

async fn a_reused_key_is_422_and_keys_belong_to_their_user(app: &TestApp) {
    let server = ServerProcess::start(&app.database_url()).await;
    let (alice, bob) = (app.token(Uuid::new_v4()), app.token(Uuid::new_v4()));
    let create = |name: &str| json!({ "query": CREATE, "variables": { "name": name } });
    let (status, _, _) = send(server.addr, &alice, Some("k"), &create("one")).await;
    assert_eq!(status, 200);
    let (status, _, reused) = send(server.addr, &alice, Some("k"), &create("two")).await;
    assert_eq!((status, error_code(&reused)), (422, Some("IDEMPOTENCY_KEY_REUSED")), "{reused}");
    // The same key is Bob's own: it runs for him.
    let (status, headers, bobs) = send(server.addr, &bob, Some("k"), &create("one")).await;
    assert!(status == 200 && !replayed(&headers), "{bobs}");
    assert_eq!(deployments_named(app, "one").await, 2, "Alice's and Bob's");
    assert_eq!(deployments_named(app, "two").await, 0);
    // A mutation that fails on its own (a name taken) records its answer
    // too: its failed write is undone alone, the record stays.
    let (status, headers, conflict) =
        send(server.addr, &alice, Some("taken"), &create("one")).await;
    assert!(status == 200 && !replayed(&headers), "{conflict}");
    assert_eq!(error_code(&conflict), Some("CONFLICT"), "{conflict}");
    let (_, headers, again) = send(server.addr, &alice, Some("taken"), &create("one")).await;
    assert!(replayed(&headers) && again == conflict, "{again}");
    // Key order and whitespace make no other operation.
    let spaced = json!({ "variables": { "name": "one" }, "query": CREATE.replace(' ', "  \n") });
    let (status, headers, _) = send(server.addr, &alice, Some("k"), &spaced).await;
    assert!(status == 200 && replayed(&headers));
    // A query ignores a key; a malformed key is refused.
    let query = json!({ "query": "{ deployments { totalCount } }" });
    let (status, _, counted) = send(server.addr, &alice, Some("k"), &query).await;
    assert_eq!((status, counted["data"]["deployments"]["totalCount"].clone()), (200, json!(1)));
    let long = "x".repeat(256);
    let (status, _, refused) = send(server.addr, &alice, Some(&long), &create("three")).await;
    assert_eq!((status, error_code(&refused)), (400, Some("BAD_REQUEST")), "{refused}");
    let metrics = server.scrape().await;
    let outcome = |name: &str| {
        crate::helpers::metric_sum(
            &metrics,
            "deployql_idempotency_keys_total",
            &[("outcome", name)],
        )
    };
    assert_eq!((outcome("recorded"), outcome("reused"), outcome("replayed")), (3.0, 1.0, 2.0));
}

async fn a_retried_scale_takes_effect_once(app: &TestApp) {
    let server = ServerProcess::start(&app.database_url()).await;
    let user = Uuid::new_v4();
    let token = app.token(user);
    let id = app.insert(user, NewDeployment { target: 1, ..NewDeployment::default() }).await;
    let scale = |n: i32| json!({ "query": SCALE, "variables": { "id": id, "n": n } });
    let (status, _, first) = send(server.addr, &token, Some("scale-3"), &scale(3)).await;
    assert_eq!(
        (status, first["data"]["scaleDeployment"]["targetReplicas"].clone()),
        (200, json!(3))
    );
    // Another writer sets 5 in between.
    let (_, _, other) = send(server.addr, &token, None, &scale(5)).await;
    assert_eq!(other["data"]["scaleDeployment"]["targetReplicas"], 5);
    for _ in 0..3 {
        let (status, headers, retried) =
            send(server.addr, &token, Some("scale-3"), &scale(3)).await;
        assert!(status == 200 && replayed(&headers) && retried == first, "{retried}");
    }
    let lookup = "query($id: ID!) { deployment(id: $id) { targetReplicas } }";
    let (_, _, now) =
        send(server.addr, &token, None, &json!({ "query": lookup, "variables": { "id": id } }))
            .await;
    assert_eq!(now["data"]["deployment"]["targetReplicas"], 5, "the other writer's target stays");
}

async fn a_replay_over_the_websocket_is_flagged(app: &TestApp) {
    let server = ServerProcess::start(&app.database_url()).await;
    let token = app.token(Uuid::new_v4());
    let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
    ws.init_with_token(&token).await;
    let payload = json!({ "query": CREATE, "variables": { "name": "socket" },
        "extensions": { "idempotencyKey": "ws-1" } });
    ws.send(json!({ "id": "1", "type": "subscribe", "payload": payload })).await;
    let first = ws.next_payload(Duration::from_secs(5)).await;
    assert!(first["data"]["createDeployment"]["id"].is_string(), "{first}");
    assert!(first.get("extensions").is_none(), "{first}");
    ws.recv(Duration::from_secs(5)).await; // complete
    ws.send(json!({ "id": "2", "type": "subscribe", "payload": payload })).await;
    let again = ws.next_payload(Duration::from_secs(5)).await;
    assert_eq!(again["extensions"]["idempotentReplayed"], true, "{again}");
    assert_eq!(again["data"], first["data"]);
    assert_eq!(deployments_named(app, "socket").await, 1);
}

async fn a_process_killed_before_its_commit_leaves_nothing_and_after_it_a_replay(app: &TestApp) {
    let user = Uuid::new_v4();
    let token = app.token(user);
    let id = app.insert(user, NewDeployment { target: 1, ..NewDeployment::default() }).await;
    let scale = |n: i32| json!({ "query": SCALE, "variables": { "id": id, "n": n } });
    let server = ServerProcess::start(&app.database_url()).await;

    // Killed while the mutation waits inside its transaction: the test
    // holds the deployment's row (Postgres) or the write lock (SQLite).
    let holder = app.db.begin().await.expect("begin");
    holder.execute_unprepared(&hold(app, id)).await.expect("hold");
    let addr = server.addr;
    let (token2, body) = (token.clone(), scale(4));
    let pending = tokio::spawn(async move { send(addr, &token2, Some("killed"), &body).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pending.is_finished(), "the mutation waits for the lock");
    Command::new("kill").args(["-KILL", &server.pid().to_string()]).status().expect("kill");
    // Its connection died with the process.
    let _ = pending.await;
    holder.rollback().await.expect("release");
    let restarted = ServerProcess::start(&app.database_url()).await;
    let (status, headers, ran) = send(restarted.addr, &token, Some("killed"), &scale(4)).await;
    assert!(status == 200 && !replayed(&headers), "nothing was recorded: it runs ({ran})");
    assert_eq!(ran["data"]["scaleDeployment"]["targetReplicas"], 4, "{ran}");

    // Killed after the commit (its answer was read): the retry replays.
    Command::new("kill").args(["-KILL", &restarted.pid().to_string()]).status().expect("kill");
    let again = ServerProcess::start(&app.database_url()).await;
    let (status, headers, replay) = send(again.addr, &token, Some("killed"), &scale(4)).await;
    assert!(status == 200 && replayed(&headers) && replay == ran, "{replay}");
}

async fn expired_keys_are_pruned_and_run_again(app: &TestApp) {
    let server =
        ServerProcess::start_with(&app.database_url(), &[("IDEMPOTENCY_KEY_TTL", "1s")]).await;
    let user = Uuid::new_v4();
    let token = app.token(user);
    let id = app.insert(user, NewDeployment::default()).await;
    let scale = json!({ "query": SCALE, "variables": { "id": id, "n": 2 } });
    let (status, _, _) = send(server.addr, &token, Some("short"), &scale).await;
    assert_eq!(status, 200);
    assert_eq!(count(app, "SELECT COUNT(*) FROM idempotency_keys").await, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while count(app, "SELECT COUNT(*) FROM idempotency_keys").await > 0 {
        assert!(std::time::Instant::now() < deadline, "the expired key was never pruned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, headers, _) = send(server.addr, &token, Some("short"), &scale).await;
    assert!(status == 200 && !replayed(&headers), "past its TTL the key runs again");
}

async fn a_mutation_without_a_key_is_refused_when_keys_are_required(app: &TestApp) {
    let env = [("IDEMPOTENCY_KEY_REQUIRED", "true")];
    let server = ServerProcess::start_with(&app.database_url(), &env).await;
    let token = app.token(Uuid::new_v4());
    let create = json!({ "query": CREATE, "variables": { "name": "keyless" } });
    let (status, _, refused) = send(server.addr, &token, None, &create).await;
    assert_eq!(
        (status, error_code(&refused)),
        (400, Some("IDEMPOTENCY_KEY_REQUIRED")),
        "{refused}"
    );
    assert_eq!(deployments_named(app, "keyless").await, 0);
    let (status, _, _) = send(server.addr, &token, Some("with-key"), &create).await;
    assert_eq!(status, 200);
    let query = json!({ "query": "{ deployments { totalCount } }" });
    assert_eq!(send(server.addr, &token, None, &query).await.0, 200, "queries need no key");
}

async fn a_retry_while_the_first_attempt_runs_is_409_on_any_instance(app: &TestApp) {
    let user = Uuid::new_v4();
    let token = app.token(user);
    let id = app.insert(user, NewDeployment { target: 1, ..NewDeployment::default() }).await;
    let scale = json!({ "query": SCALE, "variables": { "id": id, "n": 6 } });
    // The user's share of slots must let the retry in while the first runs.
    let env = [("MAX_IN_FLIGHT_PER_USER", "4")];
    let first = ServerProcess::start_with(&app.database_url(), &env).await;
    // On Postgres, a second instance shares the database.
    let second = match app.postgres_url() {
        Some(_) => Some(ServerProcess::start_with(&app.database_url(), &env).await),
        None => None,
    };
    let holder = app.db.begin().await.expect("begin");
    holder.execute_unprepared(&hold(app, id)).await.expect("hold");
    let (addr, token2, body) = (first.addr, token.clone(), scale.clone());
    let running = tokio::spawn(async move { send(addr, &token2, Some("busy"), &body).await });
    // Time for the first attempt to reach the held lock, on a busy machine too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!running.is_finished(), "the first attempt waits for the lock");
    let mut others = vec![first.addr];
    others.extend(second.as_ref().map(|second| second.addr));
    for addr in others.iter().chain(&others) {
        let started = std::time::Instant::now();
        let (status, headers, busy) = send(*addr, &token, Some("busy"), &scale).await;
        assert_eq!((status, error_code(&busy)), (409, Some("IDEMPOTENCY_KEY_IN_USE")), "{busy}");
        assert_eq!(headers.get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
        assert!(started.elapsed() < Duration::from_secs(2), "refused at once, not queued");
    }
    holder.rollback().await.expect("release");
    let (status, headers, ran) = running.await.expect("the first attempt");
    assert!(status == 200 && !replayed(&headers), "{ran}");
    for addr in &others {
        let (status, headers, replay) = send(*addr, &token, Some("busy"), &scale).await;
        assert!(status == 200 && replayed(&headers) && replay == ran, "{replay}");
    }
}

/// A statement that, in a transaction of its own, holds deployment `id`'s
/// row (Postgres) or the database's write lock (SQLite) until it ends.
fn hold(app: &TestApp, id: Uuid) -> String {
    match app.postgres_url() {
        Some(_) => format!("SELECT id FROM deployments WHERE id = '{id}' FOR UPDATE"),
        None => "UPDATE deployql_write_probe SET writes = writes + 1".to_owned(),
    }
}

backend_tests!(
    a_retry_while_the_first_attempt_runs_is_409_on_any_instance,
    a_retry_after_a_lost_reply_replays_the_first_answer,
    concurrent_retries_with_one_key_run_once,
    a_reused_key_is_422_and_keys_belong_to_their_user,
    a_retried_scale_takes_effect_once,
    a_replay_over_the_websocket_is_flagged,
    a_process_killed_before_its_commit_leaves_nothing_and_after_it_a_replay,
    expired_keys_are_pruned_and_run_again,
    a_mutation_without_a_key_is_refused_when_keys_are_required,
);
