//! The end of a WebSocket, from either side: a client's close frame is
//! answered with its code in every state (RFC 6455, 5.5.1), the server's own
//! closes wait for the client's answer, a client that vanished without a
//! word is let go by the keepalive, and nothing a socket held stays behind.

use std::{net::SocketAddr, time::Duration};

use serde_json::json;
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, TestApp, metric_sum, parse_metrics},
    live::WATCH,
    ws_client::{Event, LEGACY_WS, TRANSPORT_WS, WsClient},
};

const SECOND: Duration = Duration::from_secs(1);

/// The app under test, served with `limits` and going away on `shutdown`.
async fn serve_with(
    app: &TestApp,
    limits: deployql::config::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (SocketAddr, deployql::http::AppState) {
    let metrics = deployql::telemetry::Metrics::default();
    let state = deployql::http::AppState::new(app.db.clone(), app.keys.clone(), None, metrics)
        .with_limits(limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let limits = deployql::http::ServerLimits::default();
    tokio::spawn(deployql::http::serve_app(listener, state.clone(), limits, shutdown));
    (addr, state)
}

/// The socket gauges and what the sockets held, from `/metrics`.
fn leftovers(state: &deployql::http::AppState) -> Vec<(&'static str, f64)> {
    let text = state.metrics.render(|| {});
    let samples = parse_metrics(&text);
    let router = state.feed.router();
    vec![
        (
            "deployql_websocket_connections",
            metric_sum(&samples, "deployql_websocket_connections", &[]),
        ),
        ("live subscriptions", router.subscriptions() as f64),
        ("live groups", router.groups() as f64),
    ]
}

/// Waits up to `within` for every gauge of [`leftovers`] to read zero.
async fn nothing_left(state: &deployql::http::AppState, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = leftovers(state);
        if left.iter().all(|(_, value)| *value == 0.0) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_client_s_close_is_answered_with_its_code_in_every_state(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let addr = app.serve().await;
    let token = app.token(user);

    // Before connection_init, on both subprotocols.
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        let mut socket = WsClient::connect(addr, protocol).await;
        assert_eq!(socket.close(1000, "", SECOND * 3).await, Some(1000), "{protocol}");
    }
    // After the ack.
    let mut socket = WsClient::connect(addr, TRANSPORT_WS).await;
    socket.init_with_token(&token).await;
    assert_eq!(socket.close(1000, "", SECOND * 3).await, Some(1000));
    // After a completed operation.
    let mut socket = WsClient::connect(addr, TRANSPORT_WS).await;
    socket.init_with_token(&token).await;
    socket.subscribe("q", "{ __typename }", json!({})).await;
    socket.next_payload(SECOND * 5).await;
    assert_eq!(socket.recv(SECOND).await, Event::Message(json!({ "id": "q", "type": "complete" })));
    assert_eq!(socket.close(1000, "", SECOND * 3).await, Some(1000));
    // With a subscription running: stopped, nothing sent after the answer.
    let mut socket = WsClient::connect(addr, TRANSPORT_WS).await;
    socket.init_with_token(&token).await;
    socket.subscribe("w", WATCH, json!({ "id": id })).await;
    socket.next_payload(SECOND * 5).await;
    assert_eq!(socket.close(1000, "", SECOND * 3).await, Some(1000));
    // Any code a client may send is echoed.
    let mut socket = WsClient::connect(addr, TRANSPORT_WS).await;
    socket.init_with_token(&token).await;
    assert_eq!(socket.close(4499, "x", SECOND * 3).await, Some(4499));
}

async fn no_socket_leaves_anything_behind_after_200_client_closes(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let (addr, state) =
        serve_with(app, deployql::config::Limits::default(), std::future::pending()).await;
    let token = app.token(user);
    for round in 0..200 {
        let mut socket = WsClient::connect(addr, TRANSPORT_WS).await;
        socket.init_with_token(&token).await;
        socket.subscribe("w", WATCH, json!({ "id": id })).await;
        if round % 2 == 0 {
            socket.next_payload(SECOND * 5).await;
        }
        // Half closed while the subscription starts, half once it runs.
        assert_eq!(socket.close(1000, "", SECOND * 3).await, Some(1000), "round {round}");
    }
    nothing_left(&state, SECOND * 5).await;
}

async fn the_server_s_own_closes_wait_for_the_client_s_answer(app: &TestApp) {
    let user = Uuid::new_v4();
    let (going_away, gone) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        let _ = gone.await;
    };
    let (addr, state) = serve_with(app, deployql::config::Limits::default(), shutdown).await;
    let token = app.token(user);

    // A protocol violation (4400), answered by the client.
    let mut socket = WsClient::connect(addr, TRANSPORT_WS).await;
    socket.init_with_token(&token).await;
    socket.send(json!({ "type": "bogus" })).await;
    assert_eq!(socket.recv(SECOND * 3).await, Event::Closed(Some(4400)));
    socket.answer_close().await;

    // The server going away (1001) with a socket open.
    let mut socket = WsClient::connect(addr, TRANSPORT_WS).await;
    socket.init_with_token(&token).await;
    let _ = going_away.send(());
    assert_eq!(socket.recv(SECOND * 5).await, Event::Closed(Some(1001)));
    socket.answer_close().await;
    nothing_left(&state, SECOND * 5).await;
}

async fn a_client_that_vanished_is_closed_and_a_live_one_is_not(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let limits = deployql::config::Limits {
        ws_ping_interval: SECOND,
        ws_pong_timeout: SECOND,
        ..Default::default()
    };
    let (addr, state) = serve_with(app, limits, std::future::pending()).await;
    let token = app.token(user);

    // Subscribes, then neither reads nor answers: its pings go unanswered
    // (this client answers a ping only while it reads).
    let mut vanished = WsClient::connect(addr, TRANSPORT_WS).await;
    vanished.init_with_token(&token).await;
    vanished.subscribe("w", WATCH, json!({ "id": id })).await;
    vanished.next_payload(SECOND * 5).await;
    // Reads, and so answers every ping.
    let mut live = WsClient::connect(addr, TRANSPORT_WS).await;
    live.init_with_token(&token).await;
    live.subscribe("w", WATCH, json!({ "id": id })).await;
    live.next_payload(SECOND * 5).await;

    let started = std::time::Instant::now();
    let one_left = async {
        loop {
            let left = leftovers(&state);
            if left[0].1 == 1.0 && left[1].1 == 1.0 {
                return;
            }
            // The live client reads (and answers pings) meanwhile.
            assert_eq!(live.recv(Duration::from_millis(50)).await, Event::Silence);
        }
    };
    // Ping interval + pong timeout, and slack for a loaded machine.
    tokio::time::timeout(SECOND * 5, one_left).await.expect("the vanished client was let go");
    assert!(started.elapsed() >= SECOND, "closed before a ping went unanswered");
    // The live one stays for several rounds of pings.
    assert_eq!(live.recv(SECOND * 5).await, Event::Silence);
    assert_eq!(leftovers(&state)[0].1, 1.0, "the live client was closed");
    assert_eq!(live.close(1000, "", SECOND * 3).await, Some(1000));
    nothing_left(&state, SECOND * 5).await;
}

backend_tests!(
    a_client_s_close_is_answered_with_its_code_in_every_state,
    no_socket_leaves_anything_behind_after_200_client_closes,
    the_server_s_own_closes_wait_for_the_client_s_answer,
    a_client_that_vanished_is_closed_and_a_live_one_is_not,
);
