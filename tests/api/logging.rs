//! Status lookups are logged at info with structured fields.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use entity::ReplicaStatus::{Failed, Running};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{NewDeployment, TestApp};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread, so the thread-local subscriber sees the resolver's events.
#[tokio::test(flavor = "current_thread")]
async fn status_lookup_is_logged_with_name_user_status_health_and_replicas() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let new = NewDeployment { target: 2, replicas: vec![Running, Failed], ..Default::default() };
    let id = app.insert(user, new.clone()).await;

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let body =
        app.gql(user, "query($id: ID!) { deployment(id: $id) { id } }", json!({ "id": id })).await;
    assert!(body["errors"].is_null(), "{body}");

    let log = String::from_utf8(captured.0.lock().expect("log").clone()).expect("utf-8");
    let line = log
        .lines()
        .find(|l| l.contains("status lookup"))
        .unwrap_or_else(|| panic!("no lookup logged: {log}"));
    for field in [
        format!("deployment={}", new.name),
        format!("user={user}"),
        "status=Running".to_owned(),
        "health=Degraded".to_owned(),
        "replicas_running=1".to_owned(),
        "replicas_target=2".to_owned(),
    ] {
        assert!(line.contains(&field), "{field} missing in {line}");
    }
    assert!(line.contains("INFO"), "{line}");
}
