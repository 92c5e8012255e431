//! The `deployql` binary as an operator runs it.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use deployql::{auth::JwtKeys, config::JwtSecret, service::demo::DEMO_USER};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{KillOnDrop, SECRET, post_graphql};

fn deployql() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deployql"));
    command.env_remove("JWT_SECRET").env_remove("DATABASE_URL").env_remove("LISTEN_ADDR");
    command
}

fn temp_sqlite_url() -> (String, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("deployql-cli-{}.db", Uuid::new_v4()));
    (format!("sqlite://{}?mode=rwc", path.display()), path)
}

#[tokio::test]
async fn token_mints_a_verifiable_token_for_the_user() {
    let user = Uuid::new_v4();
    let output = deployql()
        .args(["token", "--user", &user.to_string(), "--ttl", "2h"])
        .env("JWT_SECRET", SECRET)
        .output()
        .expect("run deployql token");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let keys = JwtKeys::new(&JwtSecret::parse(SECRET).expect("secret"));
    assert_eq!(keys.verify(token.trim()).await.expect("valid token").0, user);
}

#[test]
fn a_short_jwt_secret_is_refused_with_a_clear_message() {
    let output = deployql().arg("serve").env("JWT_SECRET", "too-short").output().expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
}

#[test]
fn schema_prints_the_sdl_without_a_database() {
    let output = deployql()
        .arg("schema")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .expect("run");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), deployql::graphql::sdl());
}

#[test]
fn dev_mode_serves_demo_data_with_a_printed_token() {
    let (url, path) = temp_sqlite_url();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut server = KillOnDrop(
        deployql()
            .arg("--dev")
            .env("DATABASE_URL", &url)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start deployql"),
    );
    let stdout = BufReader::new(server.0.stdout.take().expect("stdout"));
    let started = Instant::now();
    let mut token = None;
    for line in stdout.lines() {
        let line = line.expect("line");
        if let Some(rest) = line.strip_prefix("export TOKEN=") {
            token = Some(rest.to_owned());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no token printed");
    }
    let token = token.expect("a printed demo token");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let addr = ([127, 0, 0, 1], port).into();
    let query = "{ deployments { totalCount nodes { name health } } }";
    let body: Value = runtime.block_on(post_graphql(addr, &token, query, json!({})));
    let nodes = body["data"]["deployments"]["nodes"].as_array().expect("nodes").clone();
    for health in ["HEALTHY", "DEGRADED", "UNHEALTHY"] {
        assert!(nodes.iter().any(|n| n["health"] == health), "no {health} demo deployment: {body}");
    }
    let keys_user = JwtKeys::new(&JwtSecret::parse(SECRET).expect("secret"));
    assert!(
        runtime.block_on(keys_user.verify(&token)).is_err(),
        "dev mode must not use a fixed secret"
    );

    // GraphiQL shows the token in its Headers tab; a local frontend may call the API.
    let client = reqwest::Client::new();
    let page = runtime.block_on(async {
        client
            .get(format!("http://{addr}/graphql"))
            .header("accept", "text/html")
            .send()
            .await
            .expect("graphiql")
            .text()
            .await
            .expect("html")
    });
    assert!(page.contains(&format!(r#"\"Authorization\": \"Bearer {token}\""#)), "{page}");
    let preflight = runtime.block_on(async {
        client
            .request(reqwest::Method::OPTIONS, format!("http://{addr}/graphql"))
            .header("origin", "http://localhost:5173")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
            .await
            .expect("preflight")
    });
    assert_eq!(preflight.headers()["access-control-allow-origin"], "http://localhost:5173");
    assert!(!DEMO_USER.is_nil());
    drop(server);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[test]
fn configuration_traps_are_refused_at_start_with_a_clear_message() {
    let refused = |envs: &[(&str, &str)], expected: &str| {
        let output = deployql().arg("serve").envs(envs.iter().copied()).output().expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{envs:?} started");
        assert_ne!(output.status.code(), Some(101), "{envs:?} panicked: {stderr}");
        assert!(stderr.contains(expected), "{envs:?}: {stderr}");
    };
    // Dev mode never lands on a shared database by accident.
    refused(&[("DATABASE_URL", "postgres://app@127.0.0.1:1/prod")], "--dev");
    refused(&[("DB_MAX_CONNECTIONS", "0")], "db-max-connections");
    refused(&[("JWT_SECRET", &" ".repeat(40))], "must be random");
    refused(&[("JWT_SECRET", &"a".repeat(40))], "must be random");
    refused(&[("MAX_IN_FLIGHT", "0")], "max-in-flight");
    refused(&[("CORS_ALLOWED_ORIGINS", "https://app.example.com/")], "not an origin");
    refused(&[("QUEUE_TIMEOUT", "soon")], "queue-timeout");
}
