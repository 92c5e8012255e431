//! GraphQL subscriptions over WebSocket at `/graphql/ws`, speaking
//! `graphql-transport-ws` and the legacy `graphql-ws`. The bearer token comes
//! in `connection_init`'s payload (`{"authorization": "Bearer <jwt>"}`, key
//! in any case) and is checked here, before async-graphql sees the socket, so
//! a refusal is a close with 4401 or 4403 and never a `connection_ack`.

use std::time::Duration;

use async_graphql::{Data, http::ALL_WEBSOCKET_PROTOCOLS};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    response::Response,
};
use futures_util::{SinkExt, Stream, StreamExt, future, stream};
use serde_json::Value;

use crate::{
    auth::{JwtKeys, Session},
    graphql::subscription::SessionExpiry,
    http::{AppState, MAX_BODY_BYTES},
};

/// How long a client may take to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn subscriptions(
    State(state): State<AppState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        // The same bound as an HTTP request body.
        .max_message_size(MAX_BODY_BYTES)
        .max_frame_size(MAX_BODY_BYTES)
        .on_upgrade(move |socket| serve(socket, state, protocol))
}

async fn serve(socket: WebSocket, state: AppState, protocol: GraphQLProtocol) {
    let (mut sink, mut incoming) = socket.split();
    let init = match tokio::time::timeout(INIT_TIMEOUT, first_text(&mut incoming)).await {
        Ok(Some(init)) => init,
        Ok(None) => return,
        Err(_) => return close(&mut sink, 4408, "Connection initialisation timeout").await,
    };
    let session = match authenticate(&state.keys, &init) {
        Ok(session) => session,
        Err((code, reason)) => return close(&mut sink, code, reason).await,
    };
    let mut data = Data::default();
    data.insert(state.db.clone());
    data.insert(state.feed.clone());
    data.insert(session.user);
    data.insert(SessionExpiry(session.expires_at));
    // Hand async-graphql the socket as if untouched: `connection_init` first.
    let replayed = stream::once(future::ready(Ok(Message::Text(init.into())))).chain(incoming);
    GraphQLWebSocket::new_with_pair(sink, replayed, state.schema.clone(), protocol)
        .on_connection_init(move |_| async move { Ok(data) })
        .serve()
        .await;
}

/// The first text frame, skipping pings; `None` once the socket closes.
async fn first_text(
    incoming: &mut (impl Stream<Item = Result<Message, axum::Error>> + Unpin),
) -> Option<String> {
    while let Some(Ok(message)) = incoming.next().await {
        match message {
            Message::Text(text) => return Some(text.to_string()),
            Message::Binary(bytes) => return String::from_utf8(bytes.to_vec()).ok(),
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => return None,
        }
    }
    None
}

/// Checks the `connection_init` message; a refusal is a close code and reason.
fn authenticate(keys: &JwtKeys, init: &str) -> Result<Session, (u16, &'static str)> {
    let message: Value = serde_json::from_str(init).map_err(|_| (4400, "Bad request"))?;
    if message["type"] != "connection_init" {
        return Err((4401, "Unauthorized: send connection_init first"));
    }
    let authorization = message["payload"]
        .as_object()
        .and_then(|payload| {
            payload.iter().find(|(key, _)| key.eq_ignore_ascii_case("authorization"))
        })
        .and_then(|(_, value)| value.as_str())
        .ok_or((4401, "Unauthorized: connection_init needs an authorization"))?;
    let token = authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .ok_or((4403, "Forbidden: authorization must be `Bearer <token>`"))?;
    keys.verify_session(token.trim()).map_err(|_| (4403, "Forbidden: invalid token"))
}

async fn close(
    sink: &mut (impl futures_util::Sink<Message> + Unpin),
    code: u16,
    reason: &'static str,
) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = sink.send(Message::Close(Some(frame))).await;
}
