//! Clients: requests through the router (no network), GraphQL as a user,
//! serving the router on a port, and GraphQL over HTTP to a real server.

use std::net::SocketAddr;

use axum::{
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use deployql::http;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use super::{ServerProcess, TestApp};

impl TestApp {
    /// Sends a request through the router (no network) and returns status,
    /// headers and the JSON body (Null when the body is not JSON).
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let response = self.router.clone().oneshot(request).await.expect("router");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, parts.headers, json)
    }

    /// POSTs `body` to /graphql with `authorization` as the header value, if any.
    pub async fn post(
        &self,
        authorization: Option<&str>,
        body: Body,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request =
            Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        self.send(request.body(body).expect("request")).await
    }

    /// Runs one GraphQL operation as `user` and returns the whole response body.
    pub async fn gql(&self, user: Uuid, query: &str, variables: Value) -> Value {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let (status, _, json) =
            self.post(Some(&format!("Bearer {}", self.token(user))), body.into()).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json
    }

    /// The `targetReplicas` `user` sees for deployment `id` (null when not found).
    pub async fn target_replicas(&self, user: Uuid, id: Uuid) -> Value {
        let query = "query($id: ID!) { deployment(id: $id) { targetReplicas } }";
        self.gql(user, query, json!({ "id": id })).await["data"]["deployment"]["targetReplicas"]
            .clone()
    }

    /// Like `gql`, and also returns the SQL statements it ran.
    pub async fn gql_logged(
        &self,
        user: Uuid,
        query: &str,
        variables: Value,
    ) -> (Value, Vec<String>) {
        let before = self.statements.lock().expect("log").len();
        let json = self.gql(user, query, variables).await;
        let statements = self.statements.lock().expect("log")[before..].to_vec();
        (json, statements)
    }

    /// This app's `/metrics` text.
    pub async fn scrape(&self) -> String {
        let request = Request::get("/metrics").body(Body::empty()).expect("request");
        let response =
            tower::ServiceExt::oneshot(self.router.clone(), request).await.expect("router");
        let body =
            http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    /// Serves the app on a free port of 127.0.0.1, until the test ends.
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = self.router.clone();
        tokio::spawn(http::serve(listener, router, std::future::pending()));
        addr
    }
}

/// The `extensions.code` of the first error, if any.
pub fn error_code(response: &Value) -> Option<&str> {
    response["errors"][0]["extensions"]["code"].as_str()
}

impl ServerProcess {
    /// Runs one GraphQL operation over HTTP as `token`'s user.
    pub async fn gql(&self, token: &str, query: &str, variables: Value) -> Value {
        post_graphql(self.addr, token, query, variables).await
    }
}

/// POSTs one GraphQL operation to a real server at `addr`.
pub async fn post_graphql(addr: SocketAddr, token: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// `/metrics` text parsed by a Prometheus text-format parser.
pub fn parse_metrics(text: &str) -> Vec<prometheus_parse::Sample> {
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("/metrics is Prometheus text").samples
}

/// The sum of a counter's or gauge's samples whose labels include `labels`.
pub fn metric_sum(
    samples: &[prometheus_parse::Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v)))
        .filter_map(|sample| match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
        .sum()
}
