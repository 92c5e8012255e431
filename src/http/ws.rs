//! GraphQL over WebSocket at `/graphql/ws`, speaking `graphql-transport-ws`
//! and the legacy `graphql-ws`: queries, mutations and subscriptions alike,
//! each run exactly as over HTTP (see [`SessionExecutor`]). The bearer token
//! comes in `connection_init`'s payload (`{"authorization": "Bearer <jwt>"}`,
//! key in any case) and is checked here, before async-graphql sees the
//! socket, so a refusal is a close with 4401 or 4403 and never a
//! `connection_ack`; when the token expires, the socket is closed with 4403.

use std::{
    str::FromStr,
    sync::Arc,
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
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt, stream, stream::BoxStream};
use serde_json::Value;

mod keepalive;
mod protocol;

use self::{
    keepalive::{Due, Keepalive},
    protocol::{Operations, Screened},
};
use super::{
    AppState,
    slots::{Refusal, Slots},
};
use uuid::Uuid;

use crate::{
    auth::{JwtKeys, Session, TokenRefusal},
    engine::SessionExecutor,
    error::{ApiError, codes},
    persisted::PersistedDocuments,
    telemetry::{CarriedRequest, Refusal as Counted},
};

pub(super) async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(protocol) = protocol(&headers) else {
        let message = "ask for the graphql-transport-ws (or legacy graphql-ws) subprotocol";
        return (StatusCode::BAD_REQUEST, message).into_response();
    };
    let request = CarriedRequest::current();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        // The same bound as an HTTP request body.
        .max_message_size(state.limits.body_bytes)
        .max_frame_size(state.limits.body_bytes)
        // The socket lives on in a task of its own, still as this request's.
        .on_upgrade(move |socket| request.run(serve(socket, state, protocol)))
}

/// The first GraphQL subprotocol the client offers.
fn protocol(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    let offered = headers.get(header::SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
    offered.split(',').find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
}

async fn serve(socket: WebSocket, state: AppState, protocol: WebSocketProtocols) {
    let _open = state.metrics.websocket_opened();
    let going_away = state.going_away();
    let (mut sink, mut incoming) = socket.split();
    let init =
        match tokio::time::timeout(state.limits.ws_init_timeout, first_text(&mut incoming)).await {
            Ok(Some(init)) => init,
            Ok(None) => return answer_close(&mut sink).await,
            Err(_) => {
                state.metrics.refused(Counted::WebSocketInitTimeout);
                return close(&mut sink, &mut incoming, 4408, "Connection initialisation timeout")
                    .await;
            }
        };
    let session = match authenticate(&state.keys, &init).await {
        Ok(session) => session,
        Err((code, reason)) => {
            state.metrics.refused(Counted::Unauthenticated);
            return close(&mut sink, &mut incoming, code, reason).await;
        }
    };
    // async-graphql reads the frames this loop lets through, starting with
    // `connection_init`, as if it had the socket itself.
    let (frames, screened) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let _ = frames.send(init.into_bytes());
    let screened = Box::pin(stream::unfold(screened, |mut screened| async move {
        screened.recv().await.map(|frame| (frame, screened))
    }));
    let executor = SlottedExecutor {
        inner: state.executor(session),
        persisted: state.persisted.clone(),
        slots: state.slots.clone(),
        user: session.user.0,
    };
    let mut messages = GraphQLSocket::new(executor, screened, protocol);
    let mut operations = Operations::default();
    let mut keepalive = Keepalive::new(state.limits.ws_ping_interval, state.limits.ws_pong_timeout);
    let expiry = tokio::time::sleep(until(session.expires_at));
    let shutdown = going_away.announced();
    tokio::pin!(expiry, shutdown);
    loop {
        tokio::select! {
            frame = incoming.next() => {
                keepalive.heard();
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Err(err)) if is_too_big(&err) => {
                        state.metrics.refused(Counted::BodyTooLarge);
                        return close(&mut sink, &mut incoming, 1009, "Message too big").await;
                    }
                    // The client's close: its answer is on its way out, and
                    // the operations stop when this returns.
                    Some(Ok(Message::Close(_))) => return answer_close(&mut sink).await,
                    Some(Err(_)) | None => return,
                };
                match operations.screen(&text, protocol) {
                    Screened::Forward => {
                        let _ = frames.send(text);
                    }
                    Screened::Rewritten(frame) => {
                        let _ = frames.send(frame);
                    }
                    Screened::Refuse(message) => {
                        state.metrics.refused(Counted::TooManyOperations);
                        if !keepalive.send(&mut sink, Message::Text(message.into())).await {
                            return;
                        }
                    }
                    Screened::Close(code, reason) => {
                        return close(&mut sink, &mut incoming, code, &reason).await;
                    }
                }
            }
            message = messages.next() => {
                let frame = match message {
                    Some(WsMessage::Text(text)) => {
                        operations.sent(&text);
                        Message::Text(text.into())
                    }
                    Some(WsMessage::Close(code, reason)) => {
                        return close(&mut sink, &mut incoming, code, &reason).await;
                    }
                    None => return close(&mut sink, &mut incoming, 1000, "").await,
                };
                if !keepalive.send(&mut sink, frame).await {
                    return;
                }
            }
            due = keepalive.due() => match due {
                Due::Ping => {
                    if !keepalive.send(&mut sink, Message::Ping(Bytes::new())).await {
                        return;
                    }
                }
                Due::Silent => {
                    let reason = "Going away: no answer to ping";
                    return close(&mut sink, &mut incoming, 1001, reason).await;
                }
            },
            () = &mut expiry => {
                return close(&mut sink, &mut incoming, 4403, "Forbidden: token expired").await;
            }
            () = &mut shutdown => return close(&mut sink, &mut incoming, 1001, "Going away").await,
        }
    }
}

/// Queries and mutations over the socket take a slot like HTTP requests,
/// so a socket is no way around the in-flight limits; subscriptions, which
/// wait most of their life, do not (a connection runs at most
/// [`protocol::MAX_OPERATIONS`] of them).
#[derive(Clone)]
struct SlottedExecutor {
    inner: SessionExecutor,
    persisted: Arc<PersistedDocuments>,
    slots: Arc<Slots>,
    user: Uuid,
}

impl async_graphql::Executor for SlottedExecutor {
    async fn execute(&self, mut request: async_graphql::Request) -> async_graphql::Response {
        match self.persisted.resolve(&mut request).await {
            Ok(()) => self.inner.execute(request).await,
            Err(refusal) => async_graphql::Response::from_errors(vec![refusal.to_server_error()]),
        }
    }

    fn execute_stream(
        &self,
        mut request: async_graphql::Request,
        connection: Option<Arc<async_graphql::Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        let this = self.clone();
        stream::once(async move {
            if let Err(refusal) = this.persisted.resolve(&mut request).await {
                let refused = async_graphql::Response::from_errors(vec![refusal.to_server_error()]);
                return stream::once(async move { refused }).boxed();
            }
            if this.inner.is_subscription(&mut request) {
                return this.inner.execute_stream(request, connection);
            }
            stream::once(async move {
                let admitted = std::time::Instant::now();
                let _slot = match this.slots.acquire(this.user).await {
                    Ok(slot) => slot,
                    Err(refusal) => return refusal_response(refusal),
                };
                this.inner.admitted_at(admitted).execute(request).await
            })
            .boxed()
        })
        .flatten()
        .boxed()
    }
}

/// A refused operation's answer on the socket, with the HTTP refusal's code.
fn refusal_response(refusal: Refusal) -> async_graphql::Response {
    let (code, message) = match refusal {
        Refusal::UserBusy => {
            (codes::RATE_LIMITED, "too many of your requests are running at once; retry shortly")
        }
        Refusal::Busy => (codes::SERVICE_UNAVAILABLE, "the server is busy; retry shortly"),
    };
    let mut error = async_graphql::ServerError::new(message, None);
    error.extensions.get_or_insert_with(Default::default).set("code", code);
    async_graphql::Response::from_errors(vec![error])
}

/// Whether a read failed because the frame passed the size limit.
fn is_too_big(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(error) = source {
        if error.to_string().contains("too long") || error.to_string().contains("too big") {
            return true;
        }
        source = error.source();
    }
    false
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
async fn authenticate(keys: &JwtKeys, init: &str) -> Result<Session, (u16, &'static str)> {
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
    keys.verify_authorization(authorization).await.map_err(|err| match err {
        // 1013 Try Again Later: the server cannot verify any token yet.
        ApiError::KeysUnavailable => (1013, "Try again later: signing keys not loaded"),
        ApiError::Unauthenticated { refusal: TokenRefusal::Expired, .. } => {
            (4403, "Forbidden: token expired")
        }
        ApiError::Unauthenticated { refusal: TokenRefusal::Malformed, .. } => {
            (4403, "Forbidden: authorization must be `Bearer <token>`")
        }
        _ => (4403, "Forbidden: invalid token"),
    })
}

/// Closes the socket from this side: the close frame, then a moment for the
/// client's answering close (RFC 6455, 5.5.1) before the connection drops.
/// After a frame over the size limit, its unread rest is still arriving:
/// dropping the connection at once would answer it with a reset, which can
/// overtake the close frame, so the moment is waited out whatever comes.
async fn close(
    sink: &mut (impl Sink<Message> + Unpin),
    incoming: &mut (impl Stream<Item = Result<Message, axum::Error>> + Unpin),
    code: u16,
    reason: &str,
) {
    tracing::debug!(code, reason, "closing the WebSocket");
    let deadline = tokio::time::Instant::now() + CLOSE_HANDSHAKE;
    let frame = CloseFrame { code, reason: reason.into() };
    if !matches!(
        tokio::time::timeout_at(deadline, sink.send(Message::Close(Some(frame)))).await,
        Ok(Ok(()))
    ) {
        return;
    }
    loop {
        match tokio::time::timeout_at(deadline, incoming.next()).await {
            // Frames sent before the client saw ours, then its close.
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) => return tokio::time::sleep_until(deadline).await,
            Ok(None) | Err(_) => return,
        }
    }
}

/// Sends the close frame that answers the client's (queued by the
/// WebSocket layer when the client's arrived, echoing its code).
async fn answer_close(sink: &mut (impl Sink<Message> + Unpin)) {
    tracing::debug!("the client closed the WebSocket");
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, sink.flush()).await;
}

/// Longest a close handshake is waited for, either way.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);
