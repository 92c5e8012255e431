//! Statement budgets: batching keeps a request's SQL count constant.

use entity::ReplicaStatus::{Failed, Running};
use serde_json::{Value, json};
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

const RICH_PAYLOAD: &str = "id health replicaCounts { total } resources { cpuCores }
    replicas { id } statusHistory(limit: 5) { newStatus }";

/// How many of `statements` are planned reads (the JSON columns are named `plan_*`).
fn planned(statements: &[String]) -> usize {
    statements.iter().filter(|sql| sql.contains("plan_")).count()
}

async fn a_mutation_payload_reads_its_relations_in_one_statement(app: &TestApp) {
    let user = Uuid::new_v4();
    let create = |selection: &str| {
        format!(
            r#"mutation($name: String!) {{ createDeployment(input: {{ name: $name, targetReplicas: 2,
            resources: {{ cpuCores: 1, memoryMb: 512, storageGb: 1 }} }}) {{ {selection} }} }}"#
        )
    };
    let (body, plain) =
        app.gql_logged(user, &create("id health"), json!({ "name": "plain" })).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(planned(&plain), 0, "a new deployment's counts are known: {plain:#?}");
    let (body, rich) = app.gql_logged(user, &create(RICH_PAYLOAD), json!({ "name": "rich" })).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(body["data"]["createDeployment"]["statusHistory"][0]["newStatus"], "PENDING");
    assert_eq!(body["data"]["createDeployment"]["resources"]["cpuCores"], 1.0);
    // The writes, then one planned read for every selected relation.
    assert_eq!(rich.len(), plain.len() + 1, "{rich:#?}");
    assert_eq!(planned(&rich), 1, "{rich:#?}");

    let id =
        app.insert(user, NewDeployment { replicas: vec![Running], ..Default::default() }).await;
    let scale = format!(
        "mutation($id: ID!) {{ scaleDeployment(id: $id, targetReplicas: 3) {{ {RICH_PAYLOAD} }} }}"
    );
    let (body, statements) = app.gql_logged(user, &scale, json!({ "id": id })).await;
    assert_eq!(body["data"]["scaleDeployment"]["health"], "DEGRADED", "{body}");
    assert_eq!(body["data"]["scaleDeployment"]["replicas"].as_array().map(Vec::len), Some(1));
    assert_eq!(planned(&statements), 1, "{statements:#?}");
}

async fn node_reads_in_one_statement(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { history: 3, ..Default::default() }).await;
    let query =
        format!("query($id: ID!) {{ node(id: $id) {{ ... on Deployment {{ {RICH_PAYLOAD} }} }} }}");
    let (body, statements) = app.gql_logged(user, &query, json!({ "id": id })).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(body["data"]["node"]["statusHistory"].as_array().map(Vec::len), Some(3));
    assert_eq!(statements.len(), 1, "{statements:#?}");
}

/// Within the engine's estimates (`bounds::WEBHOOK_MUTATION_STATEMENTS`,
/// 10, and 2 for `webhookDeliveries`), which MAX_STATEMENTS_PER_REQUEST reads.
async fn webhook_fields_stay_within_their_statement_estimates(app: &TestApp) {
    let user = Uuid::new_v4();
    // A public address, so no resolver is needed (a test has no internet).
    let create = "mutation { createWebhookEndpoint(input: { url: \"https://93.184.215.14/hook\", \
        events: [DEPLOYMENT_CREATED] }) { endpoint { id } secret } }";
    let (body, statements) = app.gql_logged(user, create, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    assert!(statements.len() <= 10, "{statements:#?}");
    let id = json!({ "id": body["data"]["createWebhookEndpoint"]["endpoint"]["id"] });
    let test = "mutation($id: ID!) { sendTestWebhook(id: $id) { id } }";
    let (body, statements) = app.gql_logged(user, test, id.clone()).await;
    assert!(statements.len() <= 10, "{statements:#?}");
    let delivery = json!({ "id": body["data"]["sendTestWebhook"]["id"] });
    let within = |budget: usize, query: &'static str, variables: Value| async move {
        let (body, statements) = app.gql_logged(user, query, variables).await;
        assert!(body["errors"].is_null(), "{query}: {body}");
        assert!(statements.len() <= budget, "{query}: {statements:#?}");
    };
    within(1, "{ webhookEndpoints { id url events enabled } }", json!({})).await;
    let deliveries =
        "query($id: ID!) { webhookDeliveries(endpointId: $id) { nodes { id state } } }";
    within(2, deliveries, id.clone()).await;
    let redeliver = "mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { id } }";
    within(10, redeliver, delivery).await;
    let rotate = "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret } }";
    within(5, rotate, id.clone()).await;
    let update =
        "mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: { enabled: false }) { id } }";
    within(5, update, id.clone()).await;
    let delete = "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { id } }";
    within(5, delete, id).await;
}

backend_tests!(
    webhook_fields_stay_within_their_statement_estimates,
    a_mutation_payload_reads_its_relations_in_one_statement,
    node_reads_in_one_statement,
    status_lookup_runs_one_statement,
    list_runs_a_constant_number_of_statements_whatever_the_page_size,
    health_alone_aggregates_without_loading_replica_rows,
    unselected_fields_are_not_fetched,
);
