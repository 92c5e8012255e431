//! Relay's object identification: `node(id:)` and `nodes(ids:)`.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{NewDeployment, TestApp, error_code};

const NODE: &str =
    "query($id: ID!) { node(id: $id) { __typename id ... on Deployment { name health } } }";
const NODES: &str = "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Deployment { name \
    replicas { status } statusHistory(limit: 2) { newStatus } } } }";

async fn node(app: &TestApp, user: Uuid, id: &str) -> Value {
    app.gql(user, NODE, json!({ "id": id })).await
}

async fn node_refetches_an_own_deployment(app: &TestApp) {
    let user = Uuid::new_v4();
    let new = NewDeployment::default();
    let id = app.insert(user, new.clone()).await;
    let body = node(app, user, &id.to_string()).await;
    assert!(body["errors"].is_null(), "{body}");
    let found = &body["data"]["node"];
    assert_eq!(found["__typename"], "Deployment");
    assert_eq!(found["id"], id.to_string());
    assert_eq!(found["name"], new.name);
    assert_eq!(found["health"], "HEALTHY");
}

async fn node_of_a_foreign_deleted_or_malformed_id_is_null_and_not_found(app: &TestApp) {
    let user = Uuid::new_v4();
    let foreign = app.insert(Uuid::new_v4(), NewDeployment::default()).await.to_string();
    let deleted =
        app.insert(user, NewDeployment { deleted: true, ..Default::default() }).await.to_string();
    for id in [foreign.as_str(), deleted.as_str(), "not-a-uuid", &Uuid::new_v4().to_string()] {
        let body = node(app, user, id).await;
        assert_eq!(body["data"], json!({ "node": null }), "{id}: {body}");
        assert_eq!(error_code(&body), Some("NOT_FOUND"), "{id}: {body}");
        assert_eq!(body["errors"][0]["path"], json!(["node"]), "{body}");
        let deployment = app
            .gql(user, "query($id: ID!) { deployment(id: $id) { id } }", json!({ "id": id }))
            .await;
        assert_eq!(
            body["errors"][0]["message"], deployment["errors"][0]["message"],
            "node and deployment say the same"
        );
    }
}

async fn nodes_answers_in_order_in_one_statement(app: &TestApp) {
    let user = Uuid::new_v4();
    let first = app.insert(user, NewDeployment { history: 3, ..Default::default() }).await;
    let second = app.insert(user, NewDeployment::default()).await;
    let foreign = app.insert(Uuid::new_v4(), NewDeployment::default()).await;
    let ids = json!([second, "bad", first, foreign, second]);
    let (body, statements) = app.gql_logged(user, NODES, json!({ "ids": ids })).await;
    assert_eq!(statements.len(), 1, "one statement for every id and relation: {statements:#?}");
    let nodes = body["data"]["nodes"].as_array().expect("a list");
    let found: Vec<&Value> = nodes.iter().map(|n| &n["id"]).collect();
    let (first, second) = (json!(first.to_string()), json!(second.to_string()));
    assert_eq!(found, [&second, &Value::Null, &first, &Value::Null, &second], "{body}");
    assert_eq!(nodes[2]["statusHistory"].as_array().map(Vec::len), Some(2), "{body}");
    let paths: Vec<&Value> =
        body["errors"].as_array().expect("errors").iter().map(|e| &e["path"]).collect();
    assert_eq!(paths, [&json!(["nodes", 1]), &json!(["nodes", 3])], "{body}");
    assert!(
        body["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .all(|e| e["extensions"]["code"] == "NOT_FOUND")
    );
}

async fn nodes_takes_at_most_a_hundred_ids(app: &TestApp) {
    let ids: Vec<String> = (0..101).map(|_| Uuid::new_v4().to_string()).collect();
    let (body, statements) = app.gql_logged(Uuid::new_v4(), NODES, json!({ "ids": ids })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(statements.is_empty(), "{statements:?}");
    let (body, _) = app.gql_logged(Uuid::new_v4(), NODES, json!({ "ids": ids[..100] })).await;
    assert_eq!(body["data"]["nodes"].as_array().map(Vec::len), Some(100), "{body}");
}

backend_tests!(
    node_refetches_an_own_deployment,
    node_of_a_foreign_deleted_or_malformed_id_is_null_and_not_found,
    nodes_answers_in_order_in_one_statement,
    nodes_takes_at_most_a_hundred_ids,
);
