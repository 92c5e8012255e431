//! The GraphiQL page served to browsers at GET /graphql. Written here rather
//! than taken from async-graphql so that, in dev mode, the demo token sits
//! visibly in GraphiQL's Headers tab (async-graphql's fetcher would send it
//! unseen) and the WebSocket carries it in `connection_init`.
//!
//! Its scripts and styles come from the binary (`assets/graphiql`: GraphiQL
//! and React from their npm packages, with their licences and SHA-256
//! sums), not from a CDN: the page works where no other host is reachable,
//! and its Content-Security-Policy lets it load nothing from anywhere else.

use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// GraphiQL's version, pinned so the page does not change under users; the
/// assets' paths carry it, so a new release is a new URL.
const GRAPHIQL_VERSION: &str = "3.9.0";

/// What the page may load and connect to: this origin only. GraphiQL sets
/// inline styles and its stylesheet embeds its fonts as `data:` URLs.
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; font-src 'self' data:; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const JS: &str = "text/javascript; charset=utf-8";

/// The files the page loads, by name, with their media types.
pub(super) const ASSETS: [(&str, &str, &[u8]); 5] = [
    (
        "react.production.min.js",
        JS,
        include_bytes!("../../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        JS,
        include_bytes!("../../assets/graphiql/react-dom.production.min.js"),
    ),
    ("graphiql.min.js", JS, include_bytes!("../../assets/graphiql/graphiql.min.js")),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/graphiql/graphiql.min.css"),
    ),
    ("boot.js", JS, BOOT.as_bytes()),
];

/// GET /graphiql/{version}/{name}: one of [`ASSETS`], cached for good (its
/// path changes with its version).
pub(super) async fn asset(Path((version, name)): Path<(String, String)>) -> Response {
    let found = ASSETS.iter().find(|(asset, _, _)| *asset == name);
    match found {
        Some((_, media_type, bytes)) if version == GRAPHIQL_VERSION => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(media_type)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
                (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            ],
            *bytes,
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The page; `token`, when given (dev mode), fills the Headers tab.
pub(super) fn page(token: Option<&str>) -> String {
    let authorization = token.map(|token| format!("Bearer {token}"));
    // Pretty, as a person would type it into the Headers tab.
    let headers = authorization
        .as_ref()
        .and_then(|value| serde_json::to_string_pretty(&json!({ "Authorization": value })).ok())
        .unwrap_or_default();
    let connection_params =
        authorization.as_ref().map_or_else(|| json!({}), |value| json!({ "authorization": value }));
    // JSON is valid JavaScript; `</` is escaped so no value can close the script.
    let config = json!({
        "headers": headers,
        "connectionParams": connection_params,
        "openHeaders": authorization.is_some(),
    })
    .to_string()
    .replace("</", "<\\/");
    TEMPLATE
        .replace("{assets}", &format!("/graphiql/{GRAPHIQL_VERSION}"))
        .replace("{config}", &config)
}

/// Renders GraphiQL with the page's configuration (a JSON element, not a
/// script: the policy runs no inline script).
const BOOT: &str = r#"const config = JSON.parse(document.getElementById("graphiql-config").textContent);
const url = new URL("/graphql", window.location.href);
const wsUrl = new URL("/graphql/ws", window.location.href);
wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";
ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQL, {
    fetcher: GraphiQL.createFetcher({
      url: url.toString(),
      subscriptionUrl: wsUrl.toString(),
      wsConnectionParams: config.connectionParams,
    }),
    // `headers` fills the first tab; `defaultHeaders` every new one.
    headers: config.headers || undefined,
    defaultHeaders: config.headers || undefined,
    defaultEditorToolsVisibility: config.openHeaders ? "headers" : false,
  }),
);
"#;

const TEMPLATE: &str = r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="robots" content="noindex">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>deployql</title>
    <style>body { margin: 0; } #graphiql { height: 100vh; }</style>
    <script src="{assets}/react.production.min.js"></script>
    <script src="{assets}/react-dom.production.min.js"></script>
    <link rel="stylesheet" href="{assets}/graphiql.min.css">
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL…</div>
    <script type="application/json" id="graphiql-config">{config}</script>
    <script src="{assets}/graphiql.min.js"></script>
    <script src="{assets}/boot.js"></script>
  </body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_token_fills_the_headers_tab() {
        let html = page(Some("abc.def.ghi"));
        assert!(html.contains(r#"\"Authorization\": \"Bearer abc.def.ghi\""#), "{html}");
        assert!(html.contains(r#""openHeaders":true"#), "{html}");
        assert!(!page(None).contains("Bearer"));
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        let html = page(None);
        assert!(!html.contains("://"), "{html}");
        for (name, _, _) in ASSETS {
            assert!(html.contains(&format!("/graphiql/{GRAPHIQL_VERSION}/{name}")), "{name}");
        }
    }

    /// The embedded files are the npm packages' (their sums are checked in
    /// beside them; `tests/js/graphiql.mjs` compares the served bytes with
    /// the packages themselves).
    #[test]
    fn the_assets_match_their_checked_in_sums() {
        let sums = include_str!("../../assets/graphiql/SHA256SUMS");
        for (name, _, bytes) in &ASSETS[..4] {
            let digest = crate::digest::sha256_hex(bytes);
            assert!(sums.contains(&format!("{digest}  {name}")), "{name}: {digest}");
        }
    }

    #[test]
    fn values_cannot_close_the_script() {
        assert!(!page(Some("</script><script>alert(1)")).contains("</script><script>alert"));
    }
}
