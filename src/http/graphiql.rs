//! The GraphiQL page served to browsers at GET /graphql. Written here rather
//! than taken from async-graphql so that, in dev mode, the demo token sits
//! visibly in GraphiQL's Headers tab (async-graphql's fetcher would send it
//! unseen) and the WebSocket carries it in `connection_init`.

use serde_json::json;

/// GraphiQL's version, pinned so the page does not change under users.
const GRAPHIQL_VERSION: &str = "3.9.0";

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
    TEMPLATE.replace("{version}", GRAPHIQL_VERSION).replace("{config}", &config)
}

const TEMPLATE: &str = r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="robots" content="noindex">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>deployql</title>
    <style>body { margin: 0; } #graphiql { height: 100vh; }</style>
    <script crossorigin src="https://unpkg.com/react@18/umd/react.production.min.js"></script>
    <script crossorigin src="https://unpkg.com/react-dom@18/umd/react-dom.production.min.js"></script>
    <link rel="stylesheet" href="https://unpkg.com/graphiql@{version}/graphiql.min.css">
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL…</div>
    <script crossorigin src="https://unpkg.com/graphiql@{version}/graphiql.min.js"></script>
    <script>
      const config = {config};
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
    </script>
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
    fn values_cannot_close_the_script() {
        assert!(!page(Some("</script><script>alert(1)")).contains("</script><script>alert"));
    }
}
