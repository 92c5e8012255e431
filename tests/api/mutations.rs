//! createDeployment, scaleDeployment and deleteDeployment: effects on every
//! table, validation bounds, ownership, soft delete and atomicity.

use entity::{
    DeploymentStatus,
    ReplicaStatus::{self, Failed, Pending, Running, Starting, Stopped},
    deployment, deployment_replica, deployment_resources, deployment_status_history,
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{NewDeployment, TestApp, error_code};

pub const CREATE: &str = r"mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) {
    id name status health targetReplicas createdAt updatedAt
    replicaCounts { total }
    resources { cpuCores memoryMb gpuUnits storageGb }
    statusHistory { oldStatus newStatus reason } } }";

const SCALE: &str = r"mutation($id: ID!, $n: Int!) { scaleDeployment(id: $id, targetReplicas: $n) {
    id targetReplicas health updatedAt } }";

const DELETE: &str = r"mutation($id: ID!) { deleteDeployment(id: $id) { id deletedAt } }";

pub fn input(name: &str) -> Value {
    json!({ "name": name, "targetReplicas": 2,
            "resources": { "cpuCores": 0.5, "memoryMb": 256, "storageGb": 1 } })
}

async fn row(app: &TestApp, id: Uuid) -> deployment::Model {
    deployment::Entity::find_by_id(id).one(&app.db).await.expect("query").expect("row exists")
}

async fn history(app: &TestApp, id: Uuid) -> Vec<deployment_status_history::Model> {
    deployment_status_history::Entity::find()
        .filter(deployment_status_history::Column::DeploymentId.eq(id))
        .order_by_desc(deployment_status_history::Column::ChangedAt)
        .all(&app.db)
        .await
        .expect("history")
}

async fn resources_rows(app: &TestApp, id: Uuid) -> u64 {
    deployment_resources::Entity::find()
        .filter(deployment_resources::Column::DeploymentId.eq(id))
        .count(&app.db)
        .await
        .expect("count")
}

pub async fn deployments_of(app: &TestApp, user: Uuid) -> Vec<deployment::Model> {
    deployment::Entity::find()
        .filter(deployment::Column::UserId.eq(user))
        .all(&app.db)
        .await
        .expect("deployments")
}

fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value.as_str().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("not a DateTime: {value}"))
}

fn id_of(body: &Value, field: &str) -> Uuid {
    body["data"][field]["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("{body}"))
}

async fn create_writes_the_deployment_its_resources_and_first_history_row(app: &TestApp) {
    let user = Uuid::new_v4();
    let body = app.gql(user, CREATE, json!({ "input": input("web") })).await;
    assert!(body["errors"].is_null(), "{body}");
    let d = &body["data"]["createDeployment"];
    assert_eq!(d["name"], "web");
    assert_eq!(d["status"], "PENDING");
    assert_eq!(d["health"], "UNHEALTHY", "no replicas yet");
    assert_eq!(d["targetReplicas"], 2);
    assert_eq!(
        d["resources"],
        json!({ "cpuCores": 0.5, "memoryMb": 256, "gpuUnits": 0, "storageGb": 1 })
    );
    assert_eq!(
        d["statusHistory"],
        json!([{ "oldStatus": null, "newStatus": "PENDING", "reason": "Deployment created" }])
    );

    let id = id_of(&body, "createDeployment");
    let stored = row(app, id).await;
    assert_eq!(
        (stored.user_id, stored.status, stored.target_replicas),
        (user, DeploymentStatus::Pending, 2)
    );
    assert_eq!(stored.created_at, stored.updated_at);
    assert!(stored.deleted_at.is_none());
    assert_eq!(time(&d["createdAt"]), stored.created_at, "returned state equals the stored state");
    assert_eq!(resources_rows(app, id).await, 1);
    let changes = history(app, id).await;
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].old_status, changes[0].new_status), (None, DeploymentStatus::Pending));
    // And it reads back like any deployment.
    let read = app
        .gql(user, "query($id: ID!) { deployment(id: $id) { name } }", json!({ "id": id }))
        .await;
    assert_eq!(read["data"]["deployment"]["name"], "web");
}

async fn create_validates_every_bound(app: &TestApp) {
    let user = Uuid::new_v4();
    let with = |field: &str, value: Value| {
        let mut input = input(&format!("ok-{}", Uuid::new_v4().simple()).replace("ok-", "a")[..20]);
        match field {
            "name" | "targetReplicas" => input[field] = value,
            _ => input["resources"][field] = value,
        }
        input
    };
    let inside: &[(&str, Value)] = &[
        ("name", json!("a")),
        ("name", json!(format!("a{}", "b".repeat(62)))),
        ("name", json!("a-1")),
        ("targetReplicas", json!(0)),
        ("targetReplicas", json!(100)),
        ("cpuCores", json!(0.001)),
        ("cpuCores", json!(64)),
        ("memoryMb", json!(16)),
        ("memoryMb", json!(1_048_576)),
        ("gpuUnits", json!(0)),
        ("gpuUnits", json!(16)),
        ("storageGb", json!(0)),
        ("storageGb", json!(16_384)),
    ];
    for (field, value) in inside {
        let body = app.gql(user, CREATE, json!({ "input": with(field, value.clone()) })).await;
        assert!(body["errors"].is_null(), "{field} = {value}: {body}");
    }
    let outside: &[(&str, Value)] = &[
        ("name", json!("")),
        ("name", json!(format!("a{}", "b".repeat(63)))),
        ("name", json!("1abc")),
        ("name", json!("abc-")),
        ("name", json!("Abc")),
        ("name", json!("a_b")),
        ("targetReplicas", json!(-1)),
        ("targetReplicas", json!(101)),
        ("cpuCores", json!(0)),
        ("cpuCores", json!(64.001)),
        ("memoryMb", json!(15)),
        ("memoryMb", json!(1_048_577)),
        ("gpuUnits", json!(-1)),
        ("gpuUnits", json!(17)),
        ("storageGb", json!(-1)),
        ("storageGb", json!(16_385)),
    ];
    for (field, value) in outside {
        let body = app.gql(user, CREATE, json!({ "input": with(field, value.clone()) })).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{field} = {value}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{field}: {message}");
    }
    assert_eq!(deployments_of(app, user).await.len(), inside.len(), "refused inputs write nothing");
}

async fn a_live_name_conflicts_but_other_users_and_deleted_names_do_not(app: &TestApp) {
    let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
    let first = app.gql(user, CREATE, json!({ "input": input("api") })).await;
    let again = app.gql(user, CREATE, json!({ "input": input("api") })).await;
    assert_eq!(error_code(&again), Some("CONFLICT"), "{again}");
    assert!(again["errors"][0]["message"].as_str().unwrap_or_default().contains("name"), "{again}");
    let other_user = app.gql(other, CREATE, json!({ "input": input("api") })).await;
    assert!(other_user["errors"].is_null(), "{other_user}");

    app.gql(user, DELETE, json!({ "id": id_of(&first, "createDeployment") })).await;
    let reused = app.gql(user, CREATE, json!({ "input": input("api") })).await;
    assert!(reused["errors"].is_null(), "a deleted deployment's name is free: {reused}");
    assert_eq!(deployments_of(app, user).await.len(), 2);
}

async fn scale_sets_the_target_and_health_follows(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app
        .insert(
            user,
            NewDeployment { target: 2, replicas: vec![Running, Running], ..Default::default() },
        )
        .await;
    let before = row(app, id).await;
    let body = app.gql(user, SCALE, json!({ "id": id, "n": 3 })).await;
    let d = &body["data"]["scaleDeployment"];
    assert_eq!(d["targetReplicas"], 3, "{body}");
    assert_eq!(d["health"], "DEGRADED");
    let after = row(app, id).await;
    assert_eq!(after.target_replicas, 3);
    assert!(after.updated_at > before.updated_at);
    assert_eq!(time(&d["updatedAt"]), after.updated_at);
    assert_eq!(history(app, id).await.len(), 1, "scaling is no status change");

    let body = app.gql(user, SCALE, json!({ "id": id, "n": 1 })).await;
    assert_eq!(body["data"]["scaleDeployment"]["health"], "HEALTHY");
}

async fn scaling_to_the_same_count_changes_nothing(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { target: 2, ..Default::default() }).await;
    let before = row(app, id).await;
    let body = app.gql(user, SCALE, json!({ "id": id, "n": 2 })).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(row(app, id).await, before);
}

async fn scale_validates_the_target(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    for n in [0, 100] {
        let body = app.gql(user, SCALE, json!({ "id": id, "n": n })).await;
        assert_eq!(body["data"]["scaleDeployment"]["targetReplicas"], n, "{body}");
    }
    for n in [-1, 101] {
        let body = app.gql(user, SCALE, json!({ "id": id, "n": n })).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{n}: {body}");
        assert!(
            body["errors"][0]["message"].as_str().unwrap_or_default().contains("targetReplicas")
        );
    }
    assert_eq!(row(app, id).await.target_replicas, 100);
}

async fn foreign_deleted_and_malformed_ids_change_nothing(app: &TestApp) {
    let (owner, stranger) = (Uuid::new_v4(), Uuid::new_v4());
    let id = app.insert(owner, NewDeployment::default()).await;
    let deleted = app.insert(owner, NewDeployment { deleted: true, ..Default::default() }).await;
    let (before, deleted_before) = (row(app, id).await, row(app, deleted).await);
    for (user, target) in
        [(stranger, id.to_string()), (owner, deleted.to_string()), (owner, "nope".to_owned())]
    {
        let scale = app.gql(user, SCALE, json!({ "id": target, "n": 5 })).await;
        assert_eq!(error_code(&scale), Some("NOT_FOUND"), "{scale}");
        assert_eq!(
            scale["errors"][0]["message"],
            format!("Deployment {target} not found or access denied")
        );
        let delete = app.gql(user, DELETE, json!({ "id": target })).await;
        assert_eq!(error_code(&delete), Some("NOT_FOUND"), "{delete}");
    }
    assert_eq!(row(app, id).await, before);
    assert_eq!(row(app, deleted).await, deleted_before);
    assert_eq!(resources_rows(app, id).await, 1);
}

async fn delete_soft_deletes_stops_replicas_and_frees_resources(app: &TestApp) {
    let user = Uuid::new_v4();
    let replicas = vec![Running, Pending, Stopped, Failed, Starting];
    let id = app.insert(user, NewDeployment { replicas, history: 3, ..Default::default() }).await;
    let body = app.gql(user, DELETE, json!({ "id": id })).await;
    assert_eq!(body["data"]["deleteDeployment"]["id"], id.to_string(), "{body}");

    let stored = row(app, id).await;
    let deleted_at = stored.deleted_at.expect("deleted_at set");
    assert_eq!(time(&body["data"]["deleteDeployment"]["deletedAt"]), deleted_at);
    assert_eq!(stored.updated_at, deleted_at);
    assert_eq!(stored.status, DeploymentStatus::Stopped);
    assert_eq!(resources_rows(app, id).await, 0, "resources row removed");
    let changes = history(app, id).await;
    assert_eq!(changes.len(), 4, "history grew by exactly one row");
    assert_eq!(changes[0].old_status, Some(DeploymentStatus::Running));
    assert_eq!(changes[0].new_status, DeploymentStatus::Stopped);
    assert_eq!(changes[0].reason.as_deref(), Some("Deployment deleted"));
    let mut statuses: Vec<ReplicaStatus> = deployment_replica::Entity::find()
        .filter(deployment_replica::Column::DeploymentId.eq(id))
        .all(&app.db)
        .await
        .expect("replicas")
        .into_iter()
        .map(|r| r.status)
        .collect();
    statuses.sort_by_key(|s| format!("{s:?}"));
    use ReplicaStatus::Stopping;
    assert_eq!(statuses, [Failed, Stopped, Stopping, Stopping, Stopping]);

    let lookup =
        app.gql(user, "query($id: ID!) { deployment(id: $id) { id } }", json!({ "id": id })).await;
    assert_eq!(error_code(&lookup), Some("NOT_FOUND"));
    let list = app.gql(user, "{ deployments { totalCount } }", json!({})).await;
    assert_eq!(list["data"]["deployments"]["totalCount"], 0);
    let again = app.gql(user, DELETE, json!({ "id": id })).await;
    assert_eq!(error_code(&again), Some("NOT_FOUND"), "{again}");
    assert_eq!(history(app, id).await.len(), 4);
}

backend_tests!(
    create_writes_the_deployment_its_resources_and_first_history_row,
    create_validates_every_bound,
    a_live_name_conflicts_but_other_users_and_deleted_names_do_not,
    scale_sets_the_target_and_health_follows,
    scaling_to_the_same_count_changes_nothing,
    scale_validates_the_target,
    foreign_deleted_and_malformed_ids_change_nothing,
    delete_soft_deletes_stops_replicas_and_frees_resources,
);
