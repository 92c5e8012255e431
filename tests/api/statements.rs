//! Statement budgets: batching keeps a request's SQL count constant.

use entity::ReplicaStatus::{Failed, Running};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{NewDeployment, TestApp};

const FULL_STATUS: &str = r"query($id: ID!) { deployment(id: $id) {
    id name status health targetReplicas
    replicaCounts { total running failed }
    resources { cpuCores memoryMb }
    replicas { id status }
    statusHistory(limit: 10) { newStatus changedAt }
    createdAt updatedAt } }";

const LIST_EVERYTHING: &str = r"query($first: Int) { deployments(first: $first) {
    totalCount
    nodes { id name health replicaCounts { total } resources { cpuCores }
            replicas { status } statusHistory(limit: 5) { newStatus } } } }";

async fn seed(app: &TestApp, user: Uuid, n: usize) {
    for _ in 0..n {
        let new = NewDeployment {
            target: 2,
            replicas: vec![Running, Failed],
            history: 3,
            ..Default::default()
        };
        app.insert(user, new).await;
    }
}

async fn status_lookup_runs_one_statement(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { history: 12, ..Default::default() }).await;
    let (body, statements) = app.gql_logged(user, FULL_STATUS, json!({ "id": id })).await;
    assert!(body["errors"].is_null(), "{body}");
    // One statement carries the row and every selected relation.
    assert_eq!(statements.len(), 1, "{statements:#?}");
}

async fn list_runs_a_constant_number_of_statements_whatever_the_page_size(app: &TestApp) {
    let user = Uuid::new_v4();
    seed(app, user, 50).await;
    let mut counts = Vec::new();
    for first in [1, 10, 50] {
        let (body, statements) =
            app.gql_logged(user, LIST_EVERYTHING, json!({ "first": first })).await;
        assert!(body["errors"].is_null(), "{body}");
        assert_eq!(body["data"]["deployments"]["nodes"].as_array().unwrap().len(), first);
        // The page with all its nested data, and the count.
        assert_eq!(statements.len(), 2, "{statements:#?}");
        counts.push(statements.len());
    }
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
}

async fn health_alone_aggregates_without_loading_replica_rows(app: &TestApp) {
    let user = Uuid::new_v4();
    seed(app, user, 20).await;
    let query = "{ deployments(first: 20) { nodes { health replicaCounts { total failed } } } }";
    let (body, statements) = app.gql_logged(user, query, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(body["data"]["deployments"]["nodes"][0]["health"], "DEGRADED");
    // One statement: the page with its counts aggregated in SQL.
    assert_eq!(statements.len(), 1, "{statements:#?}");
    assert!(statements[0].contains("plan_counts"), "{statements:#?}");
    assert!(!statements[0].contains("plan_replicas"), "no replica rows: {statements:#?}");
}

async fn unselected_fields_are_not_fetched(app: &TestApp) {
    let user = Uuid::new_v4();
    seed(app, user, 3).await;
    let (_, statements) =
        app.gql_logged(user, "{ deployments { nodes { id name } } }", json!({})).await;
    assert_eq!(statements.len(), 1, "no totalCount, no nested fields: {statements:#?}");
    let (_, statements) = app.gql_logged(user, "{ deployments { totalCount } }", json!({})).await;
    assert_eq!(statements.len(), 2, "{statements:#?}");
}

backend_tests!(
    status_lookup_runs_one_statement,
    list_runs_a_constant_number_of_statements_whatever_the_page_size,
    health_alone_aggregates_without_loading_replica_rows,
    unselected_fields_are_not_fetched,
);
