//! Responses shaped as the GraphQL spec says: keys in selection order, and a
//! failed non-null field nulls its parent, up to the nearest nullable one.

use axum::{
    body::Body,
    http::{Request, header},
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, TestApp, error_code},
    mutations::input,
};

/// The raw response text, whose key order serde_json's map would lose.
async fn raw(app: &TestApp, user: Uuid, query: &str, variables: Value) -> String {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let request = Request::post("/graphql")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token(user)))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request");
    let response = tower::ServiceExt::oneshot(app.router.clone(), request).await.expect("router");
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

/// The keys of the first object after `"field":` in `text`, in order.
fn keys_after(text: &str, field: &str) -> Vec<String> {
    let start = text.find(&format!("\"{field}\":{{")).expect("field present") + field.len() + 4;
    let (mut depth, mut keys, mut in_string, mut key, mut chars) =
        (1, Vec::new(), false, String::new(), text[start..].chars());
    let mut expecting_key = true;
    while depth > 0 {
        let Some(c) = chars.next() else { break };
        match (in_string, c) {
            (true, '"') => {
                in_string = false;
                if depth == 1 && expecting_key {
                    keys.push(std::mem::take(&mut key));
                    expecting_key = false;
                }
            }
            (true, '\\') => {
                chars.next();
            }
            (true, c) => key.push(c),
            (false, '"') => {
                in_string = true;
                key.clear();
            }
            (false, '{' | '[') => depth += 1,
            (false, '}' | ']') => depth -= 1,
            (false, ',') if depth == 1 => expecting_key = true,
            _ => {}
        }
    }
    keys
}

async fn connection_keys_follow_the_selection(app: &TestApp) {
    let user = Uuid::new_v4();
    app.insert(user, NewDeployment::default()).await;
    let query = "{ deployments { totalCount pageInfo { hasNextPage endCursor } \
                 nodes { updatedAt health name id replicaCounts { total } } } }";
    let text = raw(app, user, query, json!({})).await;
    assert_eq!(keys_after(&text, "deployments"), ["totalCount", "pageInfo", "nodes"], "{text}");
    assert_eq!(keys_after(&text, "pageInfo"), ["hasNextPage", "endCursor"], "{text}");
    let node_start = text.find("\"nodes\":[").expect("nodes") + "\"nodes\":[".len() - 1;
    let node = format!("\"node\":{}", &text[node_start + 1..]);
    assert_eq!(
        keys_after(&node, "node"),
        ["updatedAt", "health", "name", "id", "replicaCounts"],
        "{text}"
    );
}

async fn mutation_payload_keys_follow_the_selection(app: &TestApp) {
    let query = "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { \
                 statusHistory { reason } health name resources { storageGb cpuCores } id } }";
    let text = raw(app, Uuid::new_v4(), query, json!({ "input": input("ordered") })).await;
    assert_eq!(
        keys_after(&text, "createDeployment"),
        ["statusHistory", "health", "name", "resources", "id"],
        "{text}"
    );
    assert_eq!(keys_after(&text, "resources"), ["storageGb", "cpuCores"], "{text}");
}

async fn a_failed_non_null_field_nulls_its_non_null_parents(app: &TestApp) {
    let user = Uuid::new_v4();
    let query = "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { \
                 id statusHistory(limit: 1000) { newStatus } } }";
    let body = app.gql(user, query, json!({ "input": input("propagated") })).await;
    // statusHistory: [StatusChange!]! failed, createDeployment: Deployment! too: data is null.
    assert_eq!(body["data"], Value::Null, "{body}");
    assert!(body.as_object().expect("object").contains_key("data"), "execution began: {body}");
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["createDeployment", "statusHistory"]));
}

async fn a_failed_field_under_a_nullable_parent_nulls_only_that_parent(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let query = "query($id: ID!) { deployment(id: $id) { id statusHistory(limit: 0) { newStatus } } \
                 deployments { totalCount } }";
    let body = app.gql(user, query, json!({ "id": id })).await;
    assert_eq!(body["data"]["deployment"], Value::Null, "{body}");
    assert_eq!(body["data"]["deployments"]["totalCount"], 1, "siblings survive: {body}");
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
}

backend_tests!(
    connection_keys_follow_the_selection,
    mutation_payload_keys_follow_the_selection,
    a_failed_non_null_field_nulls_its_non_null_parents,
    a_failed_field_under_a_nullable_parent_nulls_only_that_parent,
);
