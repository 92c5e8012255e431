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

impl Captured {
    /// Captures this thread's INFO events until the guard drops.
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn line_with(&self, message: &str) -> String {
        let log = String::from_utf8(self.0.lock().expect("log").clone()).expect("utf-8");
        let line = log.lines().find(|l| l.contains(message));
        line.unwrap_or_else(|| panic!("no {message:?} in {log}")).to_owned()
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
    let _guard = captured.install();
    let body =
        app.gql(user, "query($id: ID!) { deployment(id: $id) { id } }", json!({ "id": id })).await;
    assert!(body["errors"].is_null(), "{body}");

    let line = captured.line_with("status lookup");
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

#[tokio::test(flavor = "current_thread")]
async fn mutations_are_logged_with_who_what_before_and_after() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let new = NewDeployment { target: 1, ..Default::default() };
    let id = app.insert(user, new.clone()).await;

    let captured = Captured::default();
    let _guard = captured.install();
    let scale = "mutation($id: ID!) { scaleDeployment(id: $id, targetReplicas: 3) { id } }";
    app.gql(user, scale, json!({ "id": id })).await;
    let line = captured.line_with("deployment scaled");
    for field in [
        format!("user={user}"),
        format!("deployment={}", new.name),
        "before=1".into(),
        "after=3".into(),
    ] {
        assert!(line.contains(&field), "{field} missing in {line}");
    }
    app.gql(user, "mutation($id: ID!) { deleteDeployment(id: $id) { id } }", json!({ "id": id }))
        .await;
    let line = captured.line_with("deployment deleted");
    for field in
        [format!("user={user}"), "status_before=Running".into(), "status_after=Stopped".into()]
    {
        assert!(line.contains(&field), "{field} missing in {line}");
    }
}
