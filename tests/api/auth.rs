//! Every bad-token case gives 401, `WWW-Authenticate: Bearer` and `UNAUTHENTICATED`.

use axum::http::{StatusCode, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{SECRET, TestApp, error_code};

const QUERY: &str = r#"{"query":"{ deployments { totalCount } }"}"#;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(claims: &Value, algorithm: Algorithm, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

fn hs256(claims: &Value) -> String {
    sign(claims, Algorithm::HS256, SECRET)
}

async fn assert_refused(app: &TestApp, authorization: Option<&str>, reason: &str, case: &str) {
    let (status, headers, body) = app.post(authorization, QUERY.into()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer", "{case}");
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{case}: {body}");
    assert_eq!(body["errors"][0]["extensions"]["reason"], reason, "{case}: {body}");
    let message = body["errors"][0]["message"].as_str().expect("a message");
    // Plain sentences, never jsonwebtoken's error names.
    for internal in ["ExpiredSignature", "InvalidSignature", "InvalidToken", "Json(", "Error("] {
        assert!(!message.contains(internal), "{case}: {message}");
    }
}

#[tokio::test]
async fn a_valid_token_is_accepted() {
    let app = TestApp::sqlite().await;
    let token = hs256(&json!({ "sub": Uuid::new_v4().to_string(), "exp": now() + 60 }));
    let (status, _, body) = app.post(Some(&format!("Bearer {token}")), QUERY.into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["deployments"]["totalCount"], 0);
}

#[tokio::test]
async fn missing_or_malformed_authorization_is_refused() {
    let app = TestApp::sqlite().await;
    assert_refused(&app, None, "MISSING", "no header").await;
    assert_refused(&app, Some("Basic dXNlcjpwdw=="), "MALFORMED", "basic auth").await;
    assert_refused(&app, Some("Bearer"), "MALFORMED", "empty bearer").await;
    assert_refused(&app, Some("Bearer not.a.jwt"), "MALFORMED", "garbage").await;
}

#[tokio::test]
async fn expired_token_is_refused_beyond_the_leeway() {
    let app = TestApp::sqlite().await;
    let sub = Uuid::new_v4().to_string();
    let exp = now() - 120;
    let expired = format!("Bearer {}", hs256(&json!({ "sub": sub, "exp": exp })));
    assert_refused(&app, Some(&expired), "EXPIRED", "expired").await;
    let (_, _, body) = app.post(Some(&expired), QUERY.into()).await;
    let at = chrono::DateTime::from_timestamp(exp, 0).expect("time").format("%Y-%m-%dT%H:%M:%SZ");
    assert_eq!(body["errors"][0]["message"], format!("the bearer token expired at {at}"));
    // Within the 60 s leeway it still passes.
    let recent = hs256(&json!({ "sub": sub, "exp": now() - 10 }));
    assert_eq!(app.post(Some(&format!("Bearer {recent}")), QUERY.into()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn wrongly_signed_or_other_algorithm_tokens_are_refused() {
    let app = TestApp::sqlite().await;
    let claims = json!({ "sub": Uuid::new_v4().to_string(), "exp": now() + 60 });
    let other_secret = sign(&claims, Algorithm::HS256, "another-secret-another-secret-another");
    assert_refused(&app, Some(&format!("Bearer {other_secret}")), "INVALID", "other secret").await;
    let hs384 = sign(&claims, Algorithm::HS384, SECRET);
    assert_refused(&app, Some(&format!("Bearer {hs384}")), "INVALID", "HS384").await;
    // alg "none": header and claims, no signature.
    let b64 = |v: &Value| base64_url(v.to_string().as_bytes());
    let unsigned = format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "JWT" })), b64(&claims));
    assert_refused(&app, Some(&format!("Bearer {unsigned}")), "INVALID", "alg none").await;
}

#[tokio::test]
async fn claims_outside_the_contract_are_refused() {
    let app = TestApp::sqlite().await;
    let sub = Uuid::new_v4().to_string();
    let cases = [
        ("sub not a uuid", json!({ "sub": "alice", "exp": now() + 60 })),
        ("no exp", json!({ "sub": sub })),
        ("no sub", json!({ "exp": now() + 60 })),
        ("string exp", json!({ "sub": sub, "exp": (now() + 60).to_string() })),
        ("string nbf", json!({ "sub": sub, "exp": now() + 60, "nbf": now().to_string() })),
        ("nbf in the future", json!({ "sub": sub, "exp": now() + 600, "nbf": now() + 300 })),
    ];
    for (case, claims) in cases {
        assert_refused(&app, Some(&format!("Bearer {}", hs256(&claims))), "INVALID", case).await;
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
