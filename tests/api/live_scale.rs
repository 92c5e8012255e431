//! Live updates at scale: a change wakes only its deployment's watchers,
//! watchers of one selection share one refetch, results are never shared
//! across users, and the subscription caps hold.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, ServerProcess, TestApp},
    live::WATCH,
    ws_client::{Event, TRANSPORT_WS, WsClient, operation_errors},
};

const SECOND: Duration = Duration::from_secs(1);
const OTHER_SELECTION: &str =
    "subscription($id: ID!) { deploymentUpdated(id: $id) { id targetReplicas } }";

/// `count` subscriptions to `id` with `query` as `token`'s user, 50 per
/// socket, each past its first message.
async fn watchers(
    addr: std::net::SocketAddr,
    token: &str,
    query: &str,
    id: Uuid,
    count: usize,
) -> Vec<WsClient> {
    let mut sockets = Vec::new();
    let mut left = count;
    while left > 0 {
        let here = left.min(50);
        let mut ws = WsClient::connect(addr, TRANSPORT_WS).await;
        ws.init_with_token(token).await;
        for n in 0..here {
            ws.subscribe(&n.to_string(), query, json!({ "id": id })).await;
        }
        for _ in 0..here {
            let first = ws.next_payload(5 * SECOND).await;
            assert!(first["errors"].is_null(), "{first}");
        }
        sockets.push(ws);
        left -= here;
    }
    sockets
}

/// Reads one message from every subscription of `sockets`.
async fn each_gets_one(sockets: &mut [WsClient], count: usize) -> Vec<Value> {
    let (mut payloads, mut left) = (Vec::new(), count);
    for ws in sockets.iter_mut() {
        let here = left.min(50);
        left -= here;
        for _ in 0..here {
            payloads.push(ws.next_payload(5 * SECOND).await);
        }
    }
    payloads
}

fn statements(app: &TestApp) -> usize {
    app.statements.lock().expect("log").len()
}

async fn scale(app: &TestApp, user: Uuid, id: Uuid, to: i32) {
    let scale =
        format!("mutation {{ scaleDeployment(id: \"{id}\", targetReplicas: {to}) {{ id }} }}");
    let body = app.gql(user, &scale, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_watchers_cost_what_one_does_and_only_their_deployment_wakes() {
    let app = TestApp::sqlite().await;
    let addr = app.serve().await;
    let (user, stranger) = (Uuid::new_v4(), Uuid::new_v4());
    let x = app.insert(user, NewDeployment { target: 1, ..Default::default() }).await;
    let y = app.insert(user, NewDeployment { target: 1, ..Default::default() }).await;
    let token = app.token(user);

    // One watcher of X: the statements one change costs.
    let mut one = watchers(addr, &token, WATCH, x, 1).await;
    let before = statements(&app);
    scale(&app, user, x, 2).await;
    each_gets_one(&mut one, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let with_one = statements(&app) - before;

    // 99 more with the same selection, and 100 watchers of Y.
    let mut many = watchers(addr, &token, WATCH, x, 99).await;
    let mut of_y = watchers(addr, &token, WATCH, y, 100).await;
    let before = statements(&app);
    scale(&app, user, x, 3).await;
    each_gets_one(&mut one, 1).await;
    for payload in each_gets_one(&mut many, 99).await {
        assert_eq!(payload["data"]["deploymentUpdated"]["targetReplicas"], 3, "{payload}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(statements(&app) - before, with_one, "100 watchers cost what one does");
    for ws in &mut of_y {
        assert_eq!(ws.recv(Duration::from_millis(50)).await, Event::Silence, "Y did not change");
    }

    // Another selection of the same deployment is a refetch of its own.
    let mut other = watchers(addr, &token, OTHER_SELECTION, x, 50).await;
    let before = statements(&app);
    scale(&app, user, x, 4).await;
    each_gets_one(&mut other, 50).await;
    each_gets_one(&mut many, 99).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(statements(&app) - before, with_one + 1, "two selections, two refetches");

    // A stranger watching X gets NOT_FOUND, never the owner's shared state.
    let mut ws = WsClient::connect(addr, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(stranger)).await;
    ws.subscribe("1", WATCH, json!({ "id": x })).await;
    let Event::Message(message) = ws.recv(SECOND).await else { panic!("no answer") };
    let payload = &message["payload"];
    let errors = operation_errors(&message);
    assert_eq!(errors[0]["extensions"]["code"], "NOT_FOUND", "{message}");
    assert!(payload["data"].is_null() || payload["data"]["deploymentUpdated"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_refetches_once_per_change_whatever_its_watchers() {
    let Some(app) = TestApp::postgres().await else { return };
    let url = app.postgres_url().expect("postgres");
    let instances = [ServerProcess::start(&url).await, ServerProcess::start(&url).await];
    let user = Uuid::new_v4();
    let x = app.insert(user, NewDeployment { target: 1, ..Default::default() }).await;
    let y = app.insert(user, NewDeployment { target: 1, ..Default::default() }).await;
    let token = app.token(user);
    let mut sockets = Vec::new();
    for server in &instances {
        sockets.push((
            watchers(server.addr, &token, WATCH, x, 60).await,
            watchers(server.addr, &token, WATCH, y, 10).await,
        ));
    }
    let mut before = Vec::new();
    for server in &instances {
        assert_eq!(server.metric("deployql_live_subscriptions").await, 70);
        assert_eq!(server.metric("deployql_live_groups").await, 2);
        before.push((
            server.metric("deployql_sql_statements_total").await,
            server.metric("deployql_live_refetches_total").await,
        ));
    }
    let update = format!("UPDATE deployments SET target_replicas = 5 WHERE id = '{x}'");
    app.db.execute_unprepared(&update).await.expect("raw SQL");
    for (of_x, _) in &mut sockets {
        for payload in each_gets_one(of_x, 60).await {
            assert_eq!(payload["data"]["deploymentUpdated"]["targetReplicas"], 5, "{payload}");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (server, (statements, refetches)) in instances.iter().zip(before) {
        let ran = server.metric("deployql_sql_statements_total").await - statements;
        let refetched = server.metric("deployql_live_refetches_total").await - refetches;
        // One refetch for X's 60 watchers, none for Y's; plus this scrape's
        // own nothing (metrics run no SQL).
        assert_eq!((ran, refetched), (1, 1), "statements and refetches on one instance");
    }
    for (_, of_y) in &mut sockets {
        for ws in of_y.iter_mut() {
            assert_eq!(ws.recv(Duration::from_millis(50)).await, Event::Silence);
        }
    }
}

/// The error code a subscription was refused with.
async fn refusal(ws: &mut WsClient, id: &str, deployment: Uuid) -> Value {
    ws.subscribe(id, WATCH, json!({ "id": deployment })).await;
    let Event::Message(message) = ws.recv(SECOND).await else { panic!("no answer") };
    let errors = operation_errors(&message);
    // The refusal ends the operation: a `complete` follows.
    let complete = json!({ "id": id, "type": "complete" });
    assert_eq!(ws.recv(SECOND).await, Event::Message(complete), "after {message}");
    errors[0]["extensions"]["code"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_caps_per_user_and_per_instance_refuse_with_their_codes() {
    let app = TestApp::sqlite().await;
    let env = [("MAX_SUBSCRIPTIONS_PER_USER", "2"), ("MAX_SUBSCRIPTIONS", "3")];
    let server = ServerProcess::start_with(&app.database_url(), &env).await;
    let (alice, bob, carol) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let a = app.insert(alice, NewDeployment::default()).await;
    let b = app.insert(bob, NewDeployment::default()).await;
    let c = app.insert(carol, NewDeployment::default()).await;
    let mut alices = watchers(server.addr, &app.token(alice), WATCH, a, 2).await;
    let mut ws = WsClient::connect(server.addr, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(alice)).await;
    assert_eq!(refusal(&mut ws, "3", a).await, "TOO_MANY_SUBSCRIPTIONS");
    let _bobs = watchers(server.addr, &app.token(bob), WATCH, b, 1).await;
    let mut carols = WsClient::connect(server.addr, TRANSPORT_WS).await;
    carols.init_with_token(&app.token(carol)).await;
    assert_eq!(refusal(&mut carols, "1", c).await, "SERVICE_UNAVAILABLE");
    // Ending one frees its place.
    alices[0].send(json!({ "id": "0", "type": "complete" })).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    carols.subscribe("2", WATCH, json!({ "id": c })).await;
    let first = carols.next_payload(SECOND).await;
    assert!(first["errors"].is_null(), "{first}");
}
