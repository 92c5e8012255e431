//! The media types of GraphQL over HTTP, and which one a client accepts.

use axum::http::{HeaderMap, HeaderValue, header};

/// The response types GraphQL over HTTP defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MediaType {
    /// `application/json`: the legacy type; every answer is a 200.
    Json,
    /// `application/graphql-response+json`: status codes tell request errors apart.
    GraphQLResponse,
}

impl MediaType {
    pub(super) fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Json => "application/json; charset=utf-8",
            Self::GraphQLResponse => "application/graphql-response+json; charset=utf-8",
        })
    }

    /// The most preferred type of an `Accept` header; no header means
    /// `application/json`, as the spec says; `None` when nothing we send fits.
    pub(super) fn negotiate(headers: &HeaderMap) -> Option<Self> {
        let mut accept = headers.get_all(header::ACCEPT).iter().peekable();
        if accept.peek().is_none() {
            return Some(Self::Json);
        }
        let mut best: Option<(f32, Self)> = None;
        for range in accept.filter_map(|value| value.to_str().ok()).flat_map(|v| v.split(',')) {
            let mut parts = range.split(';');
            let media = match parts.next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
                "application/graphql-response+json" => Self::GraphQLResponse,
                "application/json" | "application/*" | "*/*" => Self::Json,
                _ => continue,
            };
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
                best = Some((quality, media));
            }
        }
        best.map(|(_, media)| media)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn accept_picks_the_preferred_graphql_type() {
        use MediaType::{GraphQLResponse, Json};
        assert_eq!(MediaType::negotiate(&HeaderMap::new()), Some(Json));
        assert_eq!(MediaType::negotiate(&accept("*/*")), Some(Json));
        assert_eq!(MediaType::negotiate(&accept("application/json")), Some(Json));
        let both = accept("application/graphql-response+json, application/json");
        assert_eq!(MediaType::negotiate(&both), Some(GraphQLResponse));
        let apollo = accept("application/graphql-response+json,application/json;q=0.9");
        assert_eq!(MediaType::negotiate(&apollo), Some(GraphQLResponse));
        let json_first = accept("application/graphql-response+json;q=0.5, application/json");
        assert_eq!(MediaType::negotiate(&json_first), Some(Json));
        assert_eq!(MediaType::negotiate(&accept("text/html")), None);
        assert_eq!(MediaType::negotiate(&accept("application/json;q=0")), None);
    }
}
