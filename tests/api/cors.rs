//! CORS on /graphql: listed origins only, preflights answered before any work.

use axum::{
    body::Body,
    http::{HeaderMap, Method, Request, StatusCode, header},
};
use uuid::Uuid;

use crate::helpers::TestApp;

const APP: &str = "https://app.example.com";

fn preflight(origin: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/graphql")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type,apollo-require-preflight,x-apollo-operation-name",
        )
        .body(Body::empty())
        .expect("request")
}

fn post_from(app: &TestApp, origin: &str) -> Request<Body> {
    Request::post("/graphql")
        .header(header::ORIGIN, origin)
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token(Uuid::new_v4())))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"query":"{ __typename }"}"#))
        .expect("request")
}

fn allowed(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_listed_origin_gets_preflight_and_response_headers() {
    let mut app = TestApp::sqlite().await;
    app.reconfigure(|state| state.with_cors(&[APP.to_owned()], false));
    let (status, headers, _) = app.send(preflight(APP)).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(allowed(&headers), Some(APP));
    let methods = headers[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().expect("ascii");
    assert!(methods.contains("GET") && methods.contains("POST"), "{methods}");
    let allowed_headers =
        headers[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().expect("ascii").to_lowercase();
    for name in
        ["authorization", "content-type", "apollo-require-preflight", "x-apollo-operation-name"]
    {
        assert!(allowed_headers.contains(name), "{name} in {allowed_headers}");
    }
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());

    let (status, headers, body) = app.send(post_from(&app, APP)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(allowed(&headers), Some(APP));
}

#[tokio::test]
async fn an_unlisted_origin_gets_no_cors_headers() {
    let mut app = TestApp::sqlite().await;
    app.reconfigure(|state| state.with_cors(&[APP.to_owned()], false));
    let (_, headers, _) = app.send(preflight("https://evil.example.com")).await;
    assert_eq!(allowed(&headers), None);
    let (_, headers, _) = app.send(post_from(&app, "https://evil.example.com")).await;
    assert_eq!(allowed(&headers), None);
    // Dev mode's loopback origins are not allowed outside dev mode.
    let (_, headers, _) = app.send(preflight("http://localhost:5173")).await;
    assert_eq!(allowed(&headers), None);
}

#[tokio::test]
async fn no_configured_origin_means_no_cors_at_all() {
    let app = TestApp::sqlite().await;
    let (status, headers, _) = app.send(preflight(APP)).await;
    assert_eq!(allowed(&headers), None);
    assert!(!status.is_success(), "{status}");
    let (_, headers, _) = app.send(post_from(&app, APP)).await;
    assert_eq!(allowed(&headers), None);
}

#[tokio::test]
async fn dev_mode_allows_loopback_origins_and_star_allows_any() {
    let mut app = TestApp::sqlite().await;
    app.reconfigure(|state| state.with_cors(&[], true));
    for origin in ["http://localhost:5173", "http://127.0.0.1:3000"] {
        let (_, headers, _) = app.send(preflight(origin)).await;
        assert_eq!(allowed(&headers), Some(origin));
    }
    let (_, headers, _) = app.send(preflight("http://localhost.evil.com")).await;
    assert_eq!(allowed(&headers), None);

    app.reconfigure(|state| state.with_cors(&["*".to_owned()], false));
    let (_, headers, _) = app.send(preflight("https://anywhere.example")).await;
    assert_eq!(allowed(&headers), Some("*"));
}
