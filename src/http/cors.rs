//! Cross-origin access to /graphql for browser frontends on other origins
//! (a Vite dev server, an app on its own domain). Tokens travel in the
//! `Authorization` header, never in cookies, so credentials stay off.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header, request::Parts};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may reuse a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The CORS layer for `origins` (`*` allows any), plus any
/// `http://localhost:*` and `http://127.0.0.1:*` origin when `allow_local`
/// (dev mode). `None` when nothing is allowed: no CORS headers at all.
pub(super) fn layer(origins: &[String], allow_local: bool) -> Option<CorsLayer> {
    let allow_origin = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else if origins.is_empty() && !allow_local {
        return None;
    } else {
        let listed: Vec<HeaderValue> =
            origins.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()).collect();
        AllowOrigin::predicate(move |origin: &HeaderValue, _: &Parts| {
            listed.contains(origin) || (allow_local && is_local(origin))
        })
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                // Apollo Client's CSRF-prevention and operation-name headers.
                HeaderName::from_static("apollo-require-preflight"),
                HeaderName::from_static("x-apollo-operation-name"),
            ])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// `http://localhost[:port]` or `http://127.0.0.1[:port]`.
fn is_local(origin: &HeaderValue) -> bool {
    let Ok(origin) = origin.to_str() else { return false };
    ["http://localhost", "http://127.0.0.1"].iter().any(|host| {
        origin.strip_prefix(host).is_some_and(|rest| {
            rest.is_empty()
                || rest.strip_prefix(':').is_some_and(|port| {
                    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_origins_are_loopback_http_with_any_port() {
        let local = |o: &'static str| is_local(&HeaderValue::from_static(o));
        assert!(local("http://localhost:5173"));
        assert!(local("http://127.0.0.1:3000"));
        assert!(local("http://localhost"));
        assert!(!local("http://localhost.evil.com"));
        assert!(!local("http://localhost:5173.evil.com"));
        assert!(!local("https://example.com"));
        assert!(!local("http://127.0.0.1:"));
    }

    #[test]
    fn nothing_configured_means_no_layer() {
        assert!(layer(&[], false).is_none());
        assert!(layer(&[], true).is_some());
        assert!(layer(&["https://app.example.com".to_owned()], false).is_some());
    }
}
