//! Request ids: every HTTP request has one (the client's `x-request-id` when
//! it is well-formed, a new UUID otherwise). It is echoed in the response,
//! carried by the request's span (so every log line and the trace have it)
//! and added to the `extensions` of every error the request answers with.

use std::{fmt, future::Future, sync::Arc};

use axum::http::HeaderValue;

/// The header that carries it, both ways.
pub const HEADER: &str = "x-request-id";

/// Longest id kept from a client; a longer one is replaced.
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: RequestId;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// The client's id when well-formed (1 to 128 characters of letters,
    /// digits and `-_.:/+=`, the alphabet of UUIDs, ULIDs, base64 and
    /// tracing ids), else a new one: an id must be safe to log and to echo.
    pub fn from_client(value: Option<&HeaderValue>) -> Self {
        value
            .and_then(|value| value.to_str().ok())
            .filter(|id| well_formed(id))
            .map_or_else(Self::new, |id| Self(id.into()))
    }

    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string().into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn header_value(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.0).ok()
    }

    /// Runs `work` as this request's.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        CURRENT.scope(self, work).await
    }

    /// The id of the request the running task serves.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn well_formed(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_client_id_is_kept_and_anything_else_replaced() {
        let kept = HeaderValue::from_static("req-42:abc.DEF_9");
        assert_eq!(RequestId::from_client(Some(&kept)).as_str(), "req-42:abc.DEF_9");
        for bad in ["", "has space", "quote\"", "<script>"] {
            let value = HeaderValue::from_str(bad).ok();
            let id = RequestId::from_client(value.as_ref());
            assert!(uuid::Uuid::parse_str(id.as_str()).is_ok(), "{bad:?} replaced by {id}");
        }
        let long = HeaderValue::from_str(&"a".repeat(129)).ok();
        assert_eq!(RequestId::from_client(long.as_ref()).as_str().len(), 36);
        assert_eq!(RequestId::from_client(None).as_str().len(), 36);
    }

    #[tokio::test]
    async fn the_current_id_is_the_scope_s() {
        let id = RequestId::new();
        let seen = id.clone().scope(async { RequestId::current() }).await;
        assert_eq!(seen, Some(id));
        assert_eq!(RequestId::current(), None);
    }
}
