//! `deploymentUpdated` over WebSocket, in process on SQLite (mutations
//! publish); the cross-instance Postgres cases are in `live_postgres`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, TestApp},
    ws_client::{Event, LEGACY_WS, TRANSPORT_WS, WsClient, operation_errors},
};

pub const WATCH: &str = "subscription($id: ID!) { deploymentUpdated(id: $id) { id targetReplicas health replicas { containerId status } } }";
const SECOND: Duration = Duration::from_secs(1);

pub fn code(payload: &Value) -> Option<&str> {
    payload["errors"][0]["extensions"]["code"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_message_is_the_current_state_and_mutations_update_it() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { target: 1, ..Default::default() }).await;
    let mut ws = WsClient::connect(app.serve().await, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;
    ws.subscribe("1", WATCH, json!({ "id": id })).await;
    let first = ws.next_payload(SECOND).await;
    assert_eq!(first["data"]["deploymentUpdated"]["targetReplicas"], 1, "{first}");
    assert_eq!(first["data"]["deploymentUpdated"]["health"], "HEALTHY");

    let scaled_at = Instant::now();
    let scale = "mutation($id: ID!) { scaleDeployment(id: $id, targetReplicas: 3) { id } }";
    app.gql(user, scale, json!({ "id": id })).await;
    let update = ws.next_payload(SECOND).await;
    assert!(scaled_at.elapsed() < SECOND);
    assert_eq!(update["data"]["deploymentUpdated"]["targetReplicas"], 3, "{update}");
    assert_eq!(update["data"]["deploymentUpdated"]["health"], "DEGRADED", "health is fresh");
    // Another deployment's change does not wake this subscription.
    let other = app.insert(user, NewDeployment::default()).await;
    app.gql(user, scale, json!({ "id": other })).await;
    assert_eq!(ws.recv(Duration::from_millis(300)).await, Event::Silence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscription_message_is_one_statement() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { target: 1, history: 2, ..Default::default() }).await;
    let mut ws = WsClient::connect(app.serve().await, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;
    let before = app.statements.lock().expect("log").len();
    let watch = "subscription($id: ID!) { deploymentUpdated(id: $id) { id health
        replicas { status } resources { cpuCores } statusHistory { newStatus } } }";
    ws.subscribe("1", watch, json!({ "id": id })).await;
    let first = ws.next_payload(SECOND).await;
    assert!(first["errors"].is_null(), "{first}");
    let statements = app.statements.lock().expect("log")[before..].to_vec();
    assert_eq!(statements.len(), 1, "the first message: {statements:#?}");
    let read = statements[0].clone();

    // The refetch may start before the mutation's response is back, so the
    // mutation's statements are in the window too: count the reads.
    let before = app.statements.lock().expect("log").len();
    let scale = "mutation($id: ID!) { scaleDeployment(id: $id, targetReplicas: 2) { id } }";
    app.gql(user, scale, json!({ "id": id })).await;
    let update = ws.next_payload(SECOND).await;
    assert_eq!(update["data"]["deploymentUpdated"]["health"], "DEGRADED", "{update}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let statements = app.statements.lock().expect("log")[before..].to_vec();
    let refetches = statements.iter().filter(|sql| **sql == read).count();
    assert_eq!(refetches, 1, "one refetch per change: {statements:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_deployment_ends_the_subscription_with_not_found() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let mut ws = WsClient::connect(app.serve().await, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;
    ws.subscribe("1", WATCH, json!({ "id": id })).await;
    ws.next_payload(SECOND).await;
    app.gql(user, "mutation($id: ID!) { deleteDeployment(id: $id) { id } }", json!({ "id": id }))
        .await;
    let last = ws.next_payload(SECOND).await;
    assert_eq!(code(&last), Some("NOT_FOUND"), "{last}");
    assert!(last["data"].is_null(), "{last}");
    assert_eq!(ws.recv(SECOND).await, Event::Message(json!({ "id": "1", "type": "complete" })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_unknown_and_malformed_ids_are_not_found() {
    let app = TestApp::sqlite().await;
    let (owner, stranger) = (Uuid::new_v4(), Uuid::new_v4());
    let id = app.insert(owner, NewDeployment::default()).await;
    let deleted = app.insert(owner, NewDeployment { deleted: true, ..Default::default() }).await;
    let mut ws = WsClient::connect(app.serve().await, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(stranger)).await;
    let ids = [id.to_string(), deleted.to_string(), Uuid::new_v4().to_string(), "nope".to_owned()];
    for (n, target) in ids.iter().enumerate() {
        ws.subscribe(&n.to_string(), WATCH, json!({ "id": target })).await;
        let message = match ws.recv(SECOND).await {
            Event::Message(message) => message,
            other => panic!("{target}: {other:?}"),
        };
        let payload = &message["payload"];
        let errors = operation_errors(&message);
        assert_eq!(errors[0]["extensions"]["code"], "NOT_FOUND", "{target}: {message}");
        assert!(
            payload["data"].is_null() || payload["data"]["deploymentUpdated"].is_null(),
            "{message}"
        );
        if message["type"] == "next" {
            assert_eq!(
                ws.recv(SECOND).await,
                Event::Message(json!({ "id": n.to_string(), "type": "complete" }))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_bad_token_closes_the_socket_before_any_ack() {
    let app = TestApp::sqlite().await;
    let addr = app.serve().await;
    let expired = {
        let claims = json!({ "sub": Uuid::new_v4().to_string(), "exp": chrono::Utc::now().timestamp() - 300 });
        let key = jsonwebtoken::EncodingKey::from_secret(crate::helpers::SECRET.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("token")
    };
    let cases = [
        (json!({}), 4401),
        (json!({ "authorization": "Bearer not-a-token" }), 4403),
        (json!({ "AUTHORIZATION": format!("Bearer {expired}") }), 4403),
        (json!({ "authorization": app.token(Uuid::new_v4()) }), 4403),
    ];
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        for (payload, expected) in &cases {
            let mut ws = WsClient::connect(addr, protocol).await;
            assert_eq!(
                ws.init(payload.clone()).await,
                Event::Closed(Some(*expected)),
                "{protocol} {payload}"
            );
        }
    }
    // Subscribing before connection_init is refused the same way.
    let mut ws = WsClient::connect(addr, TRANSPORT_WS).await;
    ws.subscribe("1", WATCH, json!({ "id": Uuid::new_v4() })).await;
    assert_eq!(ws.recv(SECOND).await, Event::Closed(Some(4401)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_graphql_ws_protocol_works_too() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { target: 1, ..Default::default() }).await;
    let mut ws = WsClient::connect(app.serve().await, LEGACY_WS).await;
    ws.init_with_token(&app.token(user)).await;
    let payload = json!({ "query": WATCH, "variables": { "id": id } });
    ws.send(json!({ "id": "1", "type": "start", "payload": payload })).await;
    let first = ws.next_payload(SECOND).await;
    assert_eq!(first["data"]["deploymentUpdated"]["targetReplicas"], 1, "{first}");
    let scale = "mutation($id: ID!) { scaleDeployment(id: $id, targetReplicas: 2) { id } }";
    app.gql(user, scale, json!({ "id": id })).await;
    assert_eq!(ws.next_payload(SECOND).await["data"]["deploymentUpdated"]["targetReplicas"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_leaves_the_selection_as_it_was_sends_nothing() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { target: 2, ..Default::default() }).await;
    let mut ws = WsClient::connect(app.serve().await, TRANSPORT_WS).await;
    ws.init_with_token(&app.token(user)).await;
    ws.subscribe("1", WATCH, json!({ "id": id })).await;
    ws.next_payload(SECOND).await;
    // Scaling to the same count is a change notice with nothing changed.
    let same = "mutation($id: ID!) { scaleDeployment(id: $id, targetReplicas: 2) { id } }";
    app.gql(user, same, json!({ "id": id })).await;
    assert_eq!(ws.recv(Duration::from_millis(500)).await, Event::Silence);
    let scale = "mutation($id: ID!) { scaleDeployment(id: $id, targetReplicas: 3) { id } }";
    app.gql(user, scale, json!({ "id": id })).await;
    assert_eq!(ws.next_payload(SECOND).await["data"]["deploymentUpdated"]["targetReplicas"], 3);
}
