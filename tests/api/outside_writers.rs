//! Rows other programs write into the SQLite file are read as they are
//! written: SQLite's own timestamp forms (`datetime('now')`,
//! `CURRENT_TIMESTAMP`: UTC without an offset) included.

use sea_orm::ConnectionTrait as _;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{NewDeployment, TestApp};

#[tokio::test]
async fn timestamps_written_by_sqlite_itself_are_read_in_lookups_and_pages() {
    let app = TestApp::sqlite().await;
    let user = Uuid::new_v4();
    let replicas = vec![entity::ReplicaStatus::Running; 2];
    let id = app.insert(user, NewDeployment { replicas, ..Default::default() }).await;
    // As a script or the platform's agent would write them.
    app.db
        .execute_unprepared(
            "UPDATE deployment_replicas SET started_at = datetime('now') WHERE rowid IN \
             (SELECT rowid FROM deployment_replicas LIMIT 1); \
             UPDATE deployment_replicas SET started_at = CURRENT_TIMESTAMP WHERE started_at \
             NOT LIKE '____-__-__ __:__:__'",
        )
        .await
        .expect("outside write");
    let lookup = "query($id: ID!) { deployment(id: $id) { replicas { startedAt } } }";
    let found = app.gql(user, lookup, json!({ "id": id })).await;
    assert!(found["errors"].is_null(), "{found}");
    let replicas = found["data"]["deployment"]["replicas"].as_array().expect("replicas");
    assert_eq!(replicas.len(), 2);
    for replica in replicas {
        let started = replica["startedAt"].as_str().expect("startedAt");
        assert!(started.ends_with('Z') && started.len() == 27, "{started}");
    }
    let page =
        app.gql(user, "{ deployments { nodes { replicas { startedAt } } } }", json!({})).await;
    assert!(page["errors"].is_null(), "{page}");
}
