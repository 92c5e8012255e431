//! graphql-transport-ws's rules that async-graphql does not enforce, checked
//! on each client frame before async-graphql sees it: a known message type,
//! ids unique while their operation runs, and a bound on operations per
//! connection.

use std::collections::HashSet;

use async_graphql::http::WebSocketProtocols;
use serde_json::{Value, json};

use crate::error::{codes, echo};

/// Operations one connection runs at once (subscriptions, mostly).
pub(super) const MAX_OPERATIONS: usize = crate::config::Limits::MAX_WS_OPERATIONS;

/// What the loop does with a client frame.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Screened {
    /// Hand it to async-graphql.
    Forward,
    /// Hand this instead to async-graphql: the frame with its payload's
    /// `documentId` or `doc_id` moved into its `extensions`, where
    /// `persisted` reads it (async-graphql keeps only the request's own fields).
    Rewritten(Vec<u8>),
    /// Answer with this message instead (an operation refused alone).
    Refuse(String),
    /// Close the socket, as graphql-transport-ws prescribes.
    Close(u16, String),
}

/// The operations a connection runs, tracked by id so the protocol's rules
/// hold: ids are unique while running, and a connection runs at most
/// [`MAX_OPERATIONS`] at once.
#[derive(Debug, Default)]
pub(super) struct Operations {
    running: HashSet<String>,
}

impl Operations {
    pub(super) fn screen(&mut self, frame: &[u8], protocol: WebSocketProtocols) -> Screened {
        #[derive(serde::Deserialize)]
        struct Envelope {
            r#type: String,
            id: Option<String>,
            payload: Option<Named>,
        }
        #[derive(serde::Deserialize)]
        struct Named {
            #[serde(rename = "documentId")]
            document_id: Option<serde::de::IgnoredAny>,
            doc_id: Option<serde::de::IgnoredAny>,
        }
        let Ok(envelope) = serde_json::from_slice::<Envelope>(frame) else {
            return Screened::Close(
                4400,
                "Invalid message: not a JSON object with a `type`".into(),
            );
        };
        let id = envelope.id.unwrap_or_default();
        match envelope.r#type.as_str() {
            "subscribe" | "start" if self.running.contains(&id) => {
                Screened::Close(4409, format!("Subscriber for {} already exists", echo(&id)))
            }
            "subscribe" | "start" if self.running.len() >= MAX_OPERATIONS => {
                let message =
                    format!("a connection runs at most {MAX_OPERATIONS} operations at once");
                let error = crate::http::error_object(
                    &message,
                    json!({ "code": codes::TOO_MANY_OPERATIONS }),
                );
                let message = match protocol {
                    WebSocketProtocols::GraphQLWS => {
                        json!({ "type": "error", "id": id, "payload": [error] })
                    }
                    WebSocketProtocols::SubscriptionsTransportWS => {
                        json!({ "type": "error", "id": id, "payload": error })
                    }
                };
                Screened::Refuse(message.to_string())
            }
            "subscribe" | "start" => {
                self.running.insert(id);
                match envelope.payload {
                    Some(Named { document_id: None, doc_id: None }) | None => Screened::Forward,
                    Some(_) => named_by_id(frame).map_or(Screened::Forward, Screened::Rewritten),
                }
            }
            "complete" | "stop" => {
                self.running.remove(&id);
                Screened::Forward
            }
            "connection_init" | "ping" | "pong" | "connection_terminate" => Screened::Forward,
            other => Screened::Close(4400, format!("Unknown message type `{}`", echo(other))),
        }
    }

    /// Notes the end of an operation the server completed or failed.
    pub(super) fn sent(&mut self, message: &str) {
        // Only `complete` and `error` end an operation; `next` messages,
        // the bulk, are not parsed.
        let ends = message.starts_with(r#"{"type":"complete""#)
            || message.starts_with(r#"{"type":"error""#);
        if ends
            && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(message)
            && let Some(Value::String(id)) = fields.get("id")
        {
            self.running.remove(id);
        }
    }
}

/// `frame` with its payload's `documentId` and `doc_id` moved into the
/// payload's `extensions`.
fn named_by_id(frame: &[u8]) -> Option<Vec<u8>> {
    let mut message: Value = serde_json::from_slice(frame).ok()?;
    let payload = message.get_mut("payload")?.as_object_mut()?;
    let ids: Vec<(&str, Value)> = [crate::persisted::DOCUMENT_ID, crate::persisted::RELAY_DOC_ID]
        .into_iter()
        .filter_map(|key| payload.remove(key).map(|id| (key, id)))
        .collect();
    let extensions = payload.entry("extensions").or_insert_with(|| json!({}));
    if extensions.is_null() {
        *extensions = json!({});
    }
    let extensions = extensions.as_object_mut()?;
    for (key, id) in ids {
        extensions.insert(key.to_owned(), id);
    }
    serde_json::to_vec(&message).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: WebSocketProtocols = WebSocketProtocols::GraphQLWS;

    fn subscribe(id: &str) -> Vec<u8> {
        json!({ "type": "subscribe", "id": id, "payload": { "query": "{ __typename }" } })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn unknown_message_types_close_with_4400() {
        let mut operations = Operations::default();
        assert!(matches!(operations.screen(br#"{"type":"bogus"}"#, WS), Screened::Close(4400, _)));
        assert!(matches!(operations.screen(b"[1, 2]", WS), Screened::Close(4400, _)));
        assert_eq!(operations.screen(br#"{"type":"ping"}"#, WS), Screened::Forward);
    }

    #[test]
    fn a_running_id_cannot_be_reused_until_it_completes() {
        let mut operations = Operations::default();
        assert_eq!(operations.screen(&subscribe("1"), WS), Screened::Forward);
        assert_eq!(
            operations.screen(&subscribe("1"), WS),
            Screened::Close(4409, "Subscriber for 1 already exists".into())
        );
        operations.sent(r#"{"type":"complete","id":"1"}"#);
        assert_eq!(operations.screen(&subscribe("1"), WS), Screened::Forward);
        assert_eq!(operations.screen(br#"{"type":"complete","id":"1"}"#, WS), Screened::Forward);
        assert_eq!(operations.screen(&subscribe("1"), WS), Screened::Forward);
    }

    #[test]
    fn a_document_id_moves_into_the_extensions() {
        let frame = json!({ "type": "subscribe", "id": "1",
            "payload": { "documentId": "sha256:ab", "variables": { "a": 1 } } });
        let Screened::Rewritten(rewritten) =
            Operations::default().screen(frame.to_string().as_bytes(), WS)
        else {
            panic!("not rewritten");
        };
        let rewritten: Value = serde_json::from_slice(&rewritten).expect("JSON");
        assert_eq!(
            rewritten["payload"],
            json!({ "variables": { "a": 1 }, "extensions": { "documentId": "sha256:ab" } })
        );
        assert_eq!(Operations::default().screen(&subscribe("2"), WS), Screened::Forward);
    }

    #[test]
    fn operations_past_the_limit_are_refused_alone() {
        let mut operations = Operations::default();
        for n in 0..MAX_OPERATIONS {
            assert_eq!(operations.screen(&subscribe(&n.to_string()), WS), Screened::Forward);
        }
        match operations.screen(&subscribe("one-more"), WS) {
            Screened::Refuse(message) => {
                assert!(message.contains("TOO_MANY_OPERATIONS") && message.contains("one-more"));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
