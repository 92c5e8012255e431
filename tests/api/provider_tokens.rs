//! Tokens from an identity provider, against the real binary: keys from a
//! JWKS served by the test (or a PEM file), issuer and audience pinned,
//! rotation, outages, and the attacks a public-key mode invites.

use std::{path::PathBuf, time::Duration};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{JwksServer, ProviderKey, ServerProcess},
    live::WATCH,
    ws_client::{Event, TRANSPORT_WS, WsClient},
};

const ISSUER: &str = "https://idp.test/";
const AUDIENCE: &str = "https://deployql.test/api";
const COUNT: &str = "{ deployments { totalCount } }";
const CREATE: &str = "mutation { createDeployment(input: { name: \"web\", targetReplicas: 1, \
    resources: { cpuCores: 1, memoryMb: 64, storageGb: 1 } }) { id } }";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("deployql-provider-{}-{name}", Uuid::new_v4()))
}

fn sqlite_url() -> String {
    format!("sqlite://{}?mode=rwc", temp("db.sqlite").display())
}

/// Claims a provider issues to deployql's audience for `user`.
fn claims(user: Uuid) -> Value {
    json!({ "sub": user.to_string(), "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600 })
}

/// A server verifying tokens with `jwks`, plus `extra` settings; its log in `log`.
async fn serve(jwks: &JwksServer, extra: &[(&str, &str)]) -> (ServerProcess, PathBuf) {
    let url = jwks.url();
    let env =
        [&[("JWKS_URL", url.as_str()), ("JWT_ISSUER", ISSUER), ("JWT_AUDIENCE", AUDIENCE)], extra]
            .concat();
    let log = temp("log");
    let server = ServerProcess::spawn_with_log(&sqlite_url(), &env, &log);
    server.wait_ready().await;
    (server, log)
}

/// POSTs `query` with `token`; the status and the body.
async fn post(server: &ServerProcess, token: &str, query: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/graphql", server.addr))
        .bearer_auth(token)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("request");
    (response.status(), response.json().await.unwrap_or_default())
}

/// Asserts `token` is refused with 401 and `reason`.
async fn assert_refused(server: &ServerProcess, token: &str, reason: &str, case: &str) {
    let (status, body) = post(server, token, COUNT).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{case}: {body}");
    assert_eq!(body["errors"][0]["extensions"]["reason"], reason, "{case}: {body}");
}

async fn total_count(server: &ServerProcess, token: &str) -> Value {
    let (status, body) = post(server, token, COUNT).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["deployments"]["totalCount"].clone()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_are_accepted_as_their_user() {
    let (rsa, ec, ed) =
        (ProviderKey::rsa("rsa-1"), ProviderKey::ec("ec-1"), ProviderKey::ed("ed-1"));
    let jwks = JwksServer::start(&[&rsa, &ec, &ed]).await;
    let (server, _) = serve(&jwks, &[]).await;
    let user = Uuid::new_v4();
    let (status, body) = post(&server, &rsa.sign(&claims(user)), CREATE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["createDeployment"]["id"].is_string(), "{body}");
    for key in [&rsa, &ec, &ed] {
        assert_eq!(total_count(&server, &key.sign(&claims(user))).await, 1, "{:?}", key.alg);
        // Another user of the same provider sees nothing of it.
        assert_eq!(total_count(&server, &key.sign(&claims(Uuid::new_v4()))).await, 0);
    }
    // An audience list that holds ours is accepted too.
    let mut listed = claims(user);
    listed["aud"] = json!(["https://other.test", AUDIENCE]);
    assert_eq!(total_count(&server, &ec.sign(&listed)).await, 1);
}

#[tokio::test]
async fn other_algorithms_and_the_key_confusion_attack_are_refused() {
    let (rsa, ec) = (ProviderKey::rsa("rsa-1"), ProviderKey::ec("ec-1"));
    let jwks = JwksServer::start(&[&rsa, &ec]).await;
    let (server, _) = serve(&jwks, &[]).await;
    let claims = claims(Uuid::new_v4());
    // HS256 signed with the RSA public key's PEM as the secret, naming the RSA key.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(rsa.kid.clone());
    let secret = EncodingKey::from_secret(rsa.public_pem.as_bytes());
    let confused = jsonwebtoken::encode(&header, &claims, &secret).expect("sign");
    assert_refused(&server, &confused, "INVALID", "HS256 with the public key as secret").await;
    let secret = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
    let hs256 =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &secret).expect("sign");
    assert_refused(&server, &hs256, "INVALID", "HS256 without kid").await;
    // Signed by the EC key but naming the RSA key, and the other way round.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(rsa.kid.clone());
    assert_refused(&server, &ec.sign_with(&header, &claims), "INVALID", "ES256 naming an RSA key")
        .await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(ec.kid.clone());
    assert_refused(&server, &rsa.sign_with(&header, &claims), "INVALID", "RS256 naming an EC key")
        .await;
    // alg `none`, naming a real key.
    let none = format!(
        "{}.{}.",
        b64(json!({ "alg": "none", "kid": rsa.kid }).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    assert_refused(&server, &none, "INVALID", "alg none").await;
    // The real key still works.
    assert_eq!(total_count(&server, &rsa.sign(&claims)).await, 0);
}

#[tokio::test]
async fn a_shared_secret_server_refuses_provider_tokens() {
    let rsa = ProviderKey::rsa("rsa-1");
    let server = ServerProcess::start_with(&sqlite_url(), &[]).await;
    let claims = claims(Uuid::new_v4());
    assert_refused(&server, &rsa.sign(&claims), "INVALID", "RS256 in the secret mode").await;
}

#[tokio::test]
async fn a_public_key_file_verifies_its_own_algorithm_only() {
    let (ec, rsa) = (ProviderKey::ec("any"), ProviderKey::rsa("any"));
    let pem = temp("key.pem");
    std::fs::write(&pem, &ec.public_pem).expect("write pem");
    let env = [
        ("JWT_PUBLIC_KEY_FILE", pem.to_str().expect("path")),
        ("JWT_ISSUER", ISSUER),
        ("JWT_AUDIENCE", AUDIENCE),
    ];
    let server = ServerProcess::spawn_with_log(&sqlite_url(), &env, &temp("log"));
    server.wait_ready().await;
    let claims = claims(Uuid::new_v4());
    assert_eq!(total_count(&server, &ec.sign(&claims)).await, 0);
    assert_refused(&server, &rsa.sign(&claims), "INVALID", "another key").await;
    let secret = EncodingKey::from_secret(ec.public_pem.as_bytes());
    let confused =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &secret).expect("sign");
    assert_refused(&server, &confused, "INVALID", "HS256 with the PEM as secret").await;
}

#[tokio::test]
async fn issuer_audience_and_validity_are_checked() {
    let ed = ProviderKey::ed("ed-1");
    let jwks = JwksServer::start(&[&ed]).await;
    let (server, _) = serve(&jwks, &[]).await;
    let user = Uuid::new_v4();
    let with = |key: &str, value: Value| {
        let mut claims = claims(user);
        claims[key] = value;
        claims
    };
    let without = |key: &str| {
        let mut claims = claims(user);
        claims.as_object_mut().expect("object").remove(key);
        claims
    };
    let cases = [
        ("wrong issuer", with("iss", json!("https://evil.test/")), "INVALID"),
        ("wrong audience", with("aud", json!("https://other.test")), "INVALID"),
        ("no issuer", without("iss"), "INVALID"),
        ("no audience", without("aud"), "INVALID"),
        ("expired", with("exp", json!(now() - 300)), "EXPIRED"),
        ("not yet valid", with("nbf", json!(now() + 300)), "INVALID"),
        ("sub not a uuid", with("sub", json!("auth0|5f7c8ec7c33c6c004bbafe82")), "INVALID"),
    ];
    for (case, claims, reason) in cases {
        assert_refused(&server, &ed.sign(&claims), reason, case).await;
    }
    assert_eq!(total_count(&server, &ed.sign(&claims(user))).await, 0);
}

#[tokio::test]
async fn keys_named_by_the_token_itself_are_never_fetched() {
    let (real, decoy) = (ProviderKey::rsa("real"), ProviderKey::rsa("decoy"));
    let jwks = JwksServer::start(&[&real]).await;
    let decoy_jwks = JwksServer::start(&[&decoy]).await;
    let (server, _) = serve(&jwks, &[]).await;
    let claims = claims(Uuid::new_v4());
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(decoy.kid.clone());
    header.jku = Some(decoy_jwks.url());
    header.x5u = Some(decoy_jwks.url());
    assert_refused(&server, &decoy.sign_with(&header, &claims), "INVALID", "jku/x5u").await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(decoy.kid.clone());
    header.jwk = Some(serde_json::from_value(decoy.jwk.clone()).expect("jwk"));
    assert_refused(&server, &decoy.sign_with(&header, &claims), "INVALID", "embedded jwk").await;
    assert_eq!(decoy_jwks.requests(), 0, "nothing may be fetched from a token's headers");
}

#[tokio::test]
async fn a_rotated_key_is_followed_without_a_restart() {
    let (old, new) = (ProviderKey::rsa("2026-11"), ProviderKey::rsa("2026-12"));
    let jwks = JwksServer::start(&[&old]).await;
    let (server, _) = serve(&jwks, &[]).await;
    let user = Uuid::new_v4();
    // The same token before and after: a verification remembered from
    // before the rotation must not outlive the key.
    let old_token = old.sign(&claims(user));
    assert_eq!(total_count(&server, &old_token).await, 0);
    jwks.publish(&[&new]);
    assert_eq!(total_count(&server, &new.sign(&claims(user))).await, 0, "the new key, at once");
    assert_refused(&server, &old_token, "INVALID", "the old key, once gone").await;
}

#[tokio::test]
async fn random_unknown_kids_cause_a_handful_of_fetches() {
    let key = ProviderKey::ec("ec-1");
    let jwks = JwksServer::start(&[&key]).await;
    let (server, _) = serve(&jwks, &[]).await;
    let claims = claims(Uuid::new_v4());
    let tokens: Vec<String> = (0..1_000)
        .map(|_| {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(Uuid::new_v4().to_string());
            key.sign_with(&header, &claims)
        })
        .collect();
    let client = reqwest::Client::new();
    for batch in tokens.chunks(50) {
        let requests = batch.iter().map(|token| {
            client
                .post(format!("http://{}/graphql", server.addr))
                .bearer_auth(token)
                .json(&json!({ "query": COUNT }))
                .send()
        });
        for response in futures_util::future::join_all(requests).await {
            assert_eq!(response.expect("response").status(), StatusCode::UNAUTHORIZED);
        }
    }
    // One at start, one for the first unknown kid, none for the other 999.
    assert!(jwks.requests() <= 3, "{} JWKS fetches", jwks.requests());
}

#[tokio::test]
async fn the_server_is_not_ready_until_the_jwks_loads() {
    let key = ProviderKey::rsa("rsa-1");
    let jwks = JwksServer::start(&[&key]).await;
    jwks.set_down(true);
    let url = jwks.url();
    let env = [("JWKS_URL", url.as_str()), ("JWT_ISSUER", ISSUER), ("JWT_AUDIENCE", AUDIENCE)];
    let log = temp("log");
    let server = ServerProcess::spawn_with_log(&sqlite_url(), &env, &log);
    assert!(!server.ready_within(Duration::from_secs(2)).await, "ready without keys");
    let (status, body) = post(&server, &key.sign(&claims(Uuid::new_v4())), COUNT).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "SERVICE_UNAVAILABLE", "{body}");
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("cannot load the identity provider's signing keys"), "{logged}");
    assert!(logged.contains(&url), "the log names the JWKS URL: {logged}");
    jwks.set_down(false);
    assert!(server.ready_within(Duration::from_secs(10)).await, "ready once the keys load");
    assert_eq!(total_count(&server, &key.sign(&claims(Uuid::new_v4()))).await, 0);
}

#[tokio::test]
async fn a_jwks_outage_later_keeps_the_last_good_keys() {
    let key = ProviderKey::ed("ed-1");
    let jwks = JwksServer::start(&[&key]).await;
    let (server, _) = serve(&jwks, &[]).await;
    jwks.set_down(true);
    // An unknown kid makes the server try the provider, which fails.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("unknown".into());
    let claims = claims(Uuid::new_v4());
    assert_refused(&server, &key.sign_with(&header, &claims), "INVALID", "unknown kid").await;
    assert!(server.metric("deployql_jwks_fetch_failures_total").await >= 1);
    assert_eq!(
        total_count(&server, &key.sign(&claims)).await,
        0,
        "the last good keys still verify"
    );
}

#[tokio::test]
async fn the_user_claim_can_be_namespaced_or_nested() {
    let key = ProviderKey::rsa("rsa-1");
    let jwks = JwksServer::start(&[&key]).await;
    let user = Uuid::new_v4();
    let mut namespaced = claims(user);
    namespaced["sub"] = json!("auth0|5f7c8ec7c33c6c004bbafe82");
    namespaced["https://platform.example/user_id"] = json!(user.to_string());
    let mut nested = claims(user);
    nested["sub"] = json!("f:2c1e:alice");
    nested["https://platform.example/claims"] = json!({ "user_id": user.to_string() });

    let (server, _) = serve(&jwks, &[("JWT_USER_CLAIM", "https://platform.example/user_id")]).await;
    let (status, body) = post(&server, &key.sign(&namespaced), CREATE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(total_count(&server, &key.sign(&namespaced)).await, 1);
    assert_refused(&server, &key.sign(&nested), "INVALID", "claim missing").await;
    namespaced["https://platform.example/user_id"] = json!("alice");
    assert_refused(&server, &key.sign(&namespaced), "INVALID", "not a UUID").await;

    let pointer = "/https:~1~1platform.example~1claims/user_id";
    let (server, _) = serve(&jwks, &[("JWT_USER_CLAIM", pointer)]).await;
    assert_eq!(total_count(&server, &key.sign(&nested)).await, 0);
    let (status, body) = post(&server, &key.sign(&nested), CREATE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(total_count(&server, &key.sign(&nested)).await, 1);
    nested["https://platform.example/claims"]["user_id"] = json!(42);
    assert_refused(&server, &key.sign(&nested), "INVALID", "nested not a UUID").await;
}

#[tokio::test]
async fn a_subscription_opened_with_a_provider_token_ends_at_its_exp() {
    let key = ProviderKey::ec("ec-1");
    let jwks = JwksServer::start(&[&key]).await;
    let (server, _) = serve(&jwks, &[("JWT_LEEWAY_SECS", "0")]).await;
    let user = Uuid::new_v4();
    let (_, body) = post(&server, &key.sign(&claims(user)), CREATE).await;
    let id = body["data"]["createDeployment"]["id"].as_str().expect("id").to_owned();
    let mut short = claims(user);
    short["exp"] = json!(now() + 2);
    let mut socket = WsClient::connect(server.addr, TRANSPORT_WS).await;
    socket.init_with_token(&key.sign(&short)).await;
    socket.subscribe("w", WATCH, json!({ "id": id })).await;
    socket.next_payload(Duration::from_secs(2)).await;
    assert_eq!(socket.recv(Duration::from_secs(5)).await, Event::Closed(Some(4403)));
}

/// Runs `deployql` with `env` (no JWT_SECRET unless given) and `args`.
fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_deployql"))
        .args(args)
        .env_remove("JWT_SECRET")
        .env("DATABASE_URL", sqlite_url())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .expect("run deployql")
}

#[test]
fn a_provider_mode_needs_its_issuer_and_audience_and_only_one_mode() {
    let jwks = ("JWKS_URL", "http://127.0.0.1:9/jwks.json");
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[jwks, ("JWT_AUDIENCE", AUDIENCE)], "JWT_ISSUER is required"),
        (&[jwks, ("JWT_ISSUER", ISSUER)], "JWT_AUDIENCE is required"),
        (&[jwks, ("JWT_SECRET", "0123456789abcdef0123456789abcdef")], "cannot be used with"),
        (&[("JWKS_URL", "http://idp.example.com/jwks")], "must use https://"),
    ];
    for (env, expected) in cases {
        let output = run(&["serve"], env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{env:?} started");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
    }
}

#[test]
fn token_explains_that_a_provider_mints_the_tokens() {
    let env = [
        ("JWKS_URL", "https://idp.test/jwks.json"),
        ("JWT_ISSUER", ISSUER),
        ("JWT_AUDIENCE", AUDIENCE),
    ];
    let output = run(&["token", "--user", &Uuid::new_v4().to_string()], &env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("tokens come from the identity provider"), "{stderr}");
}
