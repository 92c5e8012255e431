//! `deployment(id)`: health, history, resources, replicas and ownership.

use entity::ReplicaStatus::{self, Failed, Pending, Running, Stopped};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{NewDeployment, TestApp, error_code};

const STATUS: &str = r"query($id: ID!) { deployment(id: $id) {
    id name status health targetReplicas
    replicaCounts { total pending starting running stopping stopped failed }
    resources { cpuCores memoryMb gpuUnits storageGb }
    replicas { id nodeId status containerId startedAt stoppedAt }
    statusHistory { oldStatus newStatus changedAt reason }
    createdAt updatedAt } }";

async fn status(app: &TestApp, user: Uuid, id: impl ToString) -> Value {
    app.gql(user, STATUS, json!({ "id": id.to_string() })).await
}

async fn health_of(app: &TestApp, target: i32, replicas: &[ReplicaStatus]) -> Value {
    let user = Uuid::new_v4();
    let id = app
        .insert(user, NewDeployment { target, replicas: replicas.to_vec(), ..Default::default() })
        .await;
    status(app, user, id).await["data"]["deployment"]["health"].clone()
}

async fn health_follows_the_platform_rules(app: &TestApp) {
    let cases: &[(&str, i32, &[ReplicaStatus], &str)] = &[
        ("no replicas", 3, &[], "UNHEALTHY"),
        ("no replicas, target 0", 0, &[], "UNHEALTHY"),
        ("all running at target", 3, &[Running, Running, Running], "HEALTHY"),
        ("target 0 with one running", 0, &[Running], "HEALTHY"),
        ("below target, no failure", 3, &[Running, Running, Pending], "DEGRADED"),
        ("failure with enough running", 2, &[Running, Running, Failed], "DEGRADED"),
        ("every replica failed", 2, &[Failed, Failed], "UNHEALTHY"),
        ("none running", 2, &[Pending, Stopped], "UNHEALTHY"),
    ];
    for (case, target, replicas, expected) in cases {
        assert_eq!(health_of(app, *target, replicas).await, *expected, "{case}");
    }
}

async fn status_lookup_returns_every_field(app: &TestApp) {
    let user = Uuid::new_v4();
    let new = NewDeployment {
        target: 3,
        replicas: vec![Running, Failed, Pending],
        history: 2,
        ..Default::default()
    };
    let id = app.insert(user, new.clone()).await;
    let body = status(app, user, id).await;
    let d = &body["data"]["deployment"];
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(d["id"], id.to_string());
    assert_eq!(d["name"], new.name);
    assert_eq!(d["status"], "RUNNING");
    assert_eq!(d["health"], "DEGRADED");
    assert_eq!(d["targetReplicas"], 3);
    assert_eq!(
        d["replicaCounts"],
        json!({ "total": 3, "pending": 1, "starting": 0, "running": 1, "stopping": 0, "stopped": 0, "failed": 1 })
    );
    assert_eq!(
        d["resources"],
        json!({ "cpuCores": 1.5, "memoryMb": 2048, "gpuUnits": 1, "storageGb": 10 })
    );
    let statuses: Vec<&str> =
        d["replicas"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["RUNNING", "FAILED", "PENDING"], "oldest start first");
    assert_eq!(d["statusHistory"].as_array().unwrap().len(), 2);
}

async fn replicas_can_be_filtered_by_status(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app
        .insert(
            user,
            NewDeployment { replicas: vec![Running, Failed, Running], ..Default::default() },
        )
        .await;
    let query = r"query($id: ID!) { deployment(id: $id) { replicas(status: RUNNING) { status } } }";
    let body = app.gql(user, query, json!({ "id": id })).await;
    assert_eq!(
        body["data"]["deployment"]["replicas"],
        json!([{ "status": "RUNNING" }, { "status": "RUNNING" }])
    );
}

async fn resources_are_null_when_absent(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { resources: false, ..Default::default() }).await;
    let body = status(app, user, id).await;
    assert!(body["errors"].is_null(), "{body}");
    assert!(body["data"]["deployment"]["resources"].is_null(), "{body}");
}

async fn history_is_newest_first_ten_by_default_and_limited(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { history: 15, ..Default::default() }).await;
    let query = r"query($id: ID!, $limit: Int!) { deployment(id: $id) { statusHistory(limit: $limit) { reason } } }";
    let reasons = |body: &Value| -> Vec<String> {
        body["data"]["deployment"]["statusHistory"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|c| c["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let default = status(app, user, id).await;
    let history = default["data"]["deployment"]["statusHistory"].as_array().unwrap().clone();
    assert_eq!(history.len(), 10);
    let times: Vec<&str> = history.iter().map(|c| c["changedAt"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "newest first: {times:?}");
    assert_eq!(history[0]["reason"], "change 14");

    let three = app.gql(user, query, json!({ "id": id, "limit": 3 })).await;
    assert_eq!(reasons(&three), ["change 14", "change 13", "change 12"]);
    let all = app.gql(user, query, json!({ "id": id, "limit": 100 })).await;
    assert_eq!(reasons(&all).len(), 15);
    for limit in [0, -1, 101] {
        let body = app.gql(user, query, json!({ "id": id, "limit": limit })).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "limit {limit}: {body}");
    }
}

async fn assert_not_found(app: &TestApp, user: Uuid, id: &str) {
    let body = status(app, user, id).await;
    assert_eq!(body["data"], json!({ "deployment": null }), "{id}: {body}");
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{id}: {body}");
    assert_eq!(body["errors"][0]["message"], format!("Deployment {id} not found or access denied"));
}

async fn foreign_deployment_is_not_found(app: &TestApp) {
    let owner = Uuid::new_v4();
    let id = app.insert(owner, NewDeployment::default()).await;
    assert_not_found(app, Uuid::new_v4(), &id.to_string()).await;
    assert_eq!(status(app, owner, id).await["data"]["deployment"]["id"], id.to_string());
}

async fn deleted_deployment_is_not_found(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { deleted: true, ..Default::default() }).await;
    assert_not_found(app, user, &id.to_string()).await;
}

async fn unknown_and_malformed_ids_are_not_found(app: &TestApp) {
    let user = Uuid::new_v4();
    assert_not_found(app, user, &Uuid::new_v4().to_string()).await;
    assert_not_found(app, user, "not-a-uuid").await;
    assert_not_found(app, user, "").await;
}

backend_tests!(
    health_follows_the_platform_rules,
    status_lookup_returns_every_field,
    replicas_can_be_filtered_by_status,
    resources_are_null_when_absent,
    history_is_newest_first_ten_by_default_and_limited,
    foreign_deployment_is_not_found,
    deleted_deployment_is_not_found,
    unknown_and_malformed_ids_are_not_found,
);
