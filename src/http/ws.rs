//! GraphQL over WebSocket at `/graphql/ws`, speaking `graphql-transport-ws`
//! and the legacy `graphql-ws`: queries, mutations and subscriptions alike,
//! each run exactly as over HTTP (see [`SessionExecutor`]). The bearer token
//! comes in `connection_init`'s payload (`{"authorization": "Bearer <jwt>"}`,
//! key in any case) and is checked here, before async-graphql sees the
//! socket, so a refusal is a close with 4401 or 4403 and never a
//! `connection_ack`; when the token expires, the socket is closed with 4403.

use std::{
    str::FromStr,
    time::{Duration, SystemTime},
};

use async_graphql::http::{
    ALL_WEBSOCKET_PROTOCOLS, WebSocket as GraphQLSocket, WebSocketProtocols, WsMessage,
};
use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::{Sink, SinkExt, Stream, StreamExt, future, stream};
use serde_json::Value;

use super::{AppState, MAX_BODY_BYTES};
use crate::{
    auth::{JwtKeys, Session, TokenRefusal},
    error::ApiError,
};

/// How long a client may take to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(protocol) = protocol(&headers) else {
        let message = "ask for the graphql-transport-ws (or legacy graphql-ws) subprotocol";
        return (StatusCode::BAD_REQUEST, message).into_response();
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        // The same bound as an HTTP request body.
        .max_message_size(MAX_BODY_BYTES)
        .max_frame_size(MAX_BODY_BYTES)
        .on_upgrade(move |socket| serve(socket, state, protocol))
}

/// The first GraphQL subprotocol the client offers.
fn protocol(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    let offered = headers.get(header::SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
    offered.split(',').find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
}

async fn serve(socket: WebSocket, state: AppState, protocol: WebSocketProtocols) {
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
    // Hand async-graphql the socket as if untouched: `connection_init` first.
    let replayed = stream::once(future::ready(Ok(Message::Text(init.into())))).chain(incoming);
    let frames = replayed.take_while(|frame| future::ready(frame.is_ok())).filter_map(|frame| {
        future::ready(match frame {
            Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
            Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
            _ => None,
        })
    });
    let mut messages = GraphQLSocket::new(state.executor(session), frames, protocol);
    let expiry = tokio::time::sleep(until(session.expires_at));
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            message = messages.next() => {
                let frame = match message {
                    Some(WsMessage::Text(text)) => Message::Text(text.into()),
                    Some(WsMessage::Close(code, reason)) => {
                        Message::Close(Some(CloseFrame { code, reason: reason.into() }))
                    }
                    None => return,
                };
                if sink.send(frame).await.is_err() {
                    return;
                }
            }
            () = &mut expiry => return close(&mut sink, 4403, "Forbidden: token expired").await,
        }
    }
}

/// How long from now until `at` (zero if past).
fn until(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::now()).unwrap_or_default()
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
    keys.verify_authorization(authorization).map_err(|err| match err {
        ApiError::Unauthenticated { refusal: TokenRefusal::Expired, .. } => {
            (4403, "Forbidden: token expired")
        }
        ApiError::Unauthenticated { refusal: TokenRefusal::Malformed, .. } => {
            (4403, "Forbidden: authorization must be `Bearer <token>`")
        }
        _ => (4403, "Forbidden: invalid token"),
    })
}

async fn close(sink: &mut (impl Sink<Message> + Unpin), code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = sink.send(Message::Close(Some(frame))).await;
}
