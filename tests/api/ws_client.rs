//! A small GraphQL-over-WebSocket client for the tests.

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{
        Message,
        client::IntoClientRequest,
        http::HeaderValue,
        protocol::{CloseFrame, frame::coding::CloseCode},
    },
};

pub const TRANSPORT_WS: &str = "graphql-transport-ws";
pub const LEGACY_WS: &str = "graphql-ws";

/// The errors an operation's message carries: an `error` message's payload,
/// or a `next` message's `errors`.
pub fn operation_errors(message: &Value) -> Value {
    let payload = &message["payload"];
    if message["type"] == "error" { payload.clone() } else { payload["errors"].clone() }
}

#[derive(Debug, PartialEq)]
pub enum Event {
    Message(Value),
    Closed(Option<u16>),
    Silence,
}

#[derive(Debug)]
pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    pub async fn connect(addr: SocketAddr, protocol: &str) -> Self {
        let mut request = format!("ws://{addr}/graphql/ws").into_client_request().expect("request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(protocol).expect("header"));
        let (socket, _) =
            tokio_tungstenite::connect_async(request).await.expect("websocket handshake");
        Self { socket }
    }

    pub async fn send(&mut self, message: Value) {
        self.socket.send(Message::Text(message.to_string().into())).await.expect("send");
    }

    /// Sends `message` while reading, as browsers and WebSocket libraries
    /// do, until the server closes: a server that refuses a message before
    /// taking all of it (too big) is heard, though the send itself may then
    /// fail. Anything but a close within `within` is `Silence`.
    pub async fn send_until_closed(&mut self, message: Value, within: Duration) -> Event {
        let (mut sink, mut stream) = (&mut self.socket).split();
        let send = async {
            let _ = sink.send(Message::Text(message.to_string().into())).await;
            std::future::pending::<Event>().await
        };
        let closed = async {
            loop {
                match stream.next().await {
                    None | Some(Err(_)) => return Event::Closed(None),
                    Some(Ok(Message::Close(frame))) => {
                        return Event::Closed(frame.map(|f| f.code.into()));
                    }
                    Some(Ok(_)) => {}
                }
            }
        };
        let either = async {
            tokio::select! {
                event = closed => event,
                event = send => event,
            }
        };
        tokio::time::timeout(within, either).await.unwrap_or(Event::Silence)
    }

    /// The next message, the close, or `Silence` after `within`.
    pub async fn recv(&mut self, within: Duration) -> Event {
        // One deadline for all: pings and keep-alives do not extend it.
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Event::Silence,
                Ok(None) | Ok(Some(Err(_))) => return Event::Closed(None),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: Value = serde_json::from_str(&text).expect("json message");
                    if value["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    if value["type"] == "ka" {
                        continue;
                    }
                    return Event::Message(value);
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Event::Closed(frame.map(|f| f.code.into()));
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Closes with `code` and `reason`, and returns the code of the
    /// server's answering close frame (`None`: the connection dropped
    /// without one). Messages the server sent before it saw the close are
    /// skipped; the connection must end within `within`.
    pub async fn close(&mut self, code: u16, reason: &str, within: Duration) -> Option<u16> {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
        self.socket.close(Some(frame)).await.expect("close frame sent");
        let answered = async {
            let mut answer = None;
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Close(frame))) => answer = frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return answer,
                }
            }
        };
        tokio::time::timeout(within, answered).await.expect("the connection ended")
    }

    /// Answers the server's close frame, once it has come, as the server's
    /// own closes expect.
    pub async fn answer_close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.next()).await;
    }

    /// Sends `connection_init` with `payload` and returns what came back.
    pub async fn init(&mut self, payload: Value) -> Event {
        self.send(json!({ "type": "connection_init", "payload": payload })).await;
        self.recv(Duration::from_secs(5)).await
    }

    pub async fn init_with_token(&mut self, token: &str) {
        let ack = self.init(json!({ "Authorization": format!("Bearer {token}") })).await;
        assert_eq!(ack, Event::Message(json!({ "type": "connection_ack" })));
    }

    /// Starts subscription `id` (graphql-transport-ws).
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let payload = json!({ "query": query, "variables": variables });
        self.send(json!({ "id": id, "type": "subscribe", "payload": payload })).await;
    }

    /// The payload of the next `next` message, panicking on anything else.
    pub async fn next_payload(&mut self, within: Duration) -> Value {
        match self.recv(within).await {
            Event::Message(message) if message["type"] == "next" || message["type"] == "data" => {
                message["payload"].clone()
            }
            other => panic!("expected a next message, got {other:?}"),
        }
    }
}
