//! `deployments`: pagination, ordering, filters and scoping.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use entity::{
    DeploymentStatus,
    ReplicaStatus::{Failed, Pending, Running},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{NewDeployment, TestApp, error_code, micros};

const PAGE: &str = r"query($first: Int, $after: String, $health: Health, $status: DeploymentStatus) {
    deployments(first: $first, after: $after, health: $health, status: $status) {
        totalCount
        edges { cursor node { id } }
        nodes { id name health status createdAt }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

fn ids(page: &Value) -> Vec<String> {
    page["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_owned()).collect()
}

async fn pagination_walks_every_row_exactly_once(app: &TestApp) {
    let user = Uuid::new_v4();
    let base = micros(Utc::now());
    let mut inserted = Vec::new();
    for n in 0..23 {
        // Groups of three share a timestamp, so the id tie-break matters.
        let created_at = base - Duration::seconds(n / 3);
        inserted.push(
            app.insert(user, NewDeployment { created_at, ..Default::default() }).await.to_string(),
        );
    }
    app.insert(Uuid::new_v4(), NewDeployment::default()).await;
    app.insert(user, NewDeployment { deleted: true, ..Default::default() }).await;

    let (mut seen, mut after, mut pages) = (Vec::new(), Value::Null, 0);
    loop {
        let body = app.gql(user, PAGE, json!({ "first": 5, "after": after })).await;
        let page = &body["data"]["deployments"];
        assert!(body["errors"].is_null(), "{body}");
        assert_eq!(page["totalCount"], 23);
        assert_eq!(page["pageInfo"]["hasPreviousPage"], pages > 0);
        let edge_ids: Vec<&str> = page["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(edge_ids, ids(page));
        assert_eq!(
            page["pageInfo"]["endCursor"],
            page["edges"].as_array().unwrap().last().unwrap()["cursor"]
        );
        seen.extend(ids(page));
        pages += 1;
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 23);
    assert_eq!(seen.iter().collect::<HashSet<_>>(), inserted.iter().collect::<HashSet<_>>());
    // Newest first, then id descending.
    let all = app.gql(user, PAGE, json!({ "first": 100 })).await;
    assert_eq!(ids(&all["data"]["deployments"]), seen);
    let created: Vec<&str> = all["data"]["deployments"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["createdAt"].as_str().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");
}

async fn list_defaults_to_twenty(app: &TestApp) {
    let user = Uuid::new_v4();
    for _ in 0..21 {
        app.insert(user, NewDeployment::default()).await;
    }
    let body =
        app.gql(user, "{ deployments { nodes { id } pageInfo { hasNextPage } } }", json!({})).await;
    assert_eq!(body["data"]["deployments"]["nodes"].as_array().unwrap().len(), 20);
    assert_eq!(body["data"]["deployments"]["pageInfo"]["hasNextPage"], true);
}

async fn health_filter_runs_in_sql_and_agrees_with_resolved_health(app: &TestApp) {
    let user = Uuid::new_v4();
    let shapes = [
        (3, vec![Running, Running, Running]),
        (3, vec![Running, Failed, Running]),
        (3, vec![Running, Pending]),
        (1, vec![]),
        (2, vec![Failed, Failed]),
        (0, vec![Running]),
    ];
    for (target, replicas) in shapes {
        app.insert(user, NewDeployment { target, replicas, ..Default::default() }).await;
    }
    let all = app.gql(user, PAGE, json!({ "first": 100 })).await;
    let nodes = all["data"]["deployments"]["nodes"].as_array().unwrap().clone();
    for health in ["HEALTHY", "DEGRADED", "UNHEALTHY"] {
        let expected: Vec<&str> = nodes
            .iter()
            .filter(|n| n["health"] == health)
            .map(|n| n["id"].as_str().unwrap())
            .collect();
        let body = app.gql(user, PAGE, json!({ "first": 100, "health": health })).await;
        assert_eq!(ids(&body["data"]["deployments"]), expected, "{health}");
        assert_eq!(body["data"]["deployments"]["totalCount"], expected.len(), "{health}");
    }
    let expected_counts = [("HEALTHY", 2), ("DEGRADED", 2), ("UNHEALTHY", 2)];
    for (health, n) in expected_counts {
        assert_eq!(nodes.iter().filter(|d| d["health"] == health).count(), n, "{health}");
    }
}

async fn status_filter_selects_matching_deployments(app: &TestApp) {
    let user = Uuid::new_v4();
    app.insert(user, NewDeployment { status: DeploymentStatus::Failed, ..Default::default() })
        .await;
    app.insert(user, NewDeployment::default()).await;
    let body = app.gql(user, PAGE, json!({ "status": "FAILED" })).await;
    let nodes = body["data"]["deployments"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["status"], "FAILED");
    assert_eq!(body["data"]["deployments"]["totalCount"], 1);
}

async fn users_see_only_their_own_live_deployments(app: &TestApp) {
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let mine = app.insert(alice, NewDeployment::default()).await;
    app.insert(alice, NewDeployment { deleted: true, ..Default::default() }).await;
    app.insert(bob, NewDeployment::default()).await;
    let body = app.gql(alice, PAGE, json!({})).await;
    assert_eq!(ids(&body["data"]["deployments"]), [mine.to_string()]);
    assert_eq!(body["data"]["deployments"]["totalCount"], 1);
}

async fn out_of_range_page_arguments_are_bad_input(app: &TestApp) {
    let user = Uuid::new_v4();
    for first in [0, -5, 101] {
        let body = app.gql(user, PAGE, json!({ "first": first })).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "first {first}: {body}");
    }
    let body = app.gql(user, PAGE, json!({ "after": "bm90LWEtY3Vyc29y" })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
}

async fn nested_fields_in_a_list_match_the_status_lookup(app: &TestApp) {
    let user = Uuid::new_v4();
    let shapes = [(vec![Running, Failed], true, 7), (vec![], false, 0), (vec![Pending], true, 3)];
    for (replicas, resources, history) in shapes {
        app.insert(user, NewDeployment { replicas, resources, history, ..Default::default() })
            .await;
    }
    let fields = "id health replicaCounts { total failed } replicas { id status startedAt } \
        resources { cpuCores } recent: statusHistory(limit: 2) { reason changedAt } \
        older: statusHistory(limit: 5) { reason }";
    let list = app
        .gql(
            user,
            &format!(
                "{{ deployments {{ nodes {{ {fields} }} edges {{ node {{ {fields} }} }} }} }}"
            ),
            json!({}),
        )
        .await;
    assert!(list["errors"].is_null(), "{list}");
    let nodes = list["data"]["deployments"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for (n, node) in nodes.iter().enumerate() {
        assert_eq!(&list["data"]["deployments"]["edges"][n]["node"], node);
        let one = app
            .gql(
                user,
                &format!("query($id: ID!) {{ deployment(id: $id) {{ {fields} }} }}"),
                json!({ "id": node["id"] }),
            )
            .await;
        assert_eq!(&one["data"]["deployment"], node);
        let (recent, older) =
            (node["recent"].as_array().unwrap().len(), node["older"].as_array().unwrap().len());
        assert!(recent <= 2 && older <= 5 && recent <= older, "{node}");
    }
}

backend_tests!(
    nested_fields_in_a_list_match_the_status_lookup,
    pagination_walks_every_row_exactly_once,
    list_defaults_to_twenty,
    health_filter_runs_in_sql_and_agrees_with_resolved_health,
    status_filter_selects_matching_deployments,
    users_see_only_their_own_live_deployments,
    out_of_range_page_arguments_are_bad_input,
);
