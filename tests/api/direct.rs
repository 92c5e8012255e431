//! Reads answered directly (`engine::direct`): a `deployment(id:)` or
//! `deployments(...)` document is answered by async-graphql the first time,
//! and straight from the planned statements' rows once validated. Both
//! answers must be the same, byte for byte, and run the same statements.

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use entity::{DeploymentStatus, ReplicaStatus, deployment_replica};
use http_body_util::BodyExt;
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use crate::helpers::{NewDeployment, TestApp};

/// Fields of every type a status read selects, with aliases, named and
/// inline fragments, repeated keys to merge, `__typename` at each level and
/// two history limits. (Every field, whatever the schema holds, is in the
/// document [`every_field_in_the_schema`] writes.)
const EVERY_FIELD: &str = "query Status($id: ID!) {
  status: deployment(id: $id) {
    __typename id name ...Summary status health targetReplicas createdAt updatedAt
    replicaCounts { total pending starting running stopping stopped failed __typename }
    replicas { __typename id nodeId status containerId startedAt stoppedAt }
    ... on Deployment { resources { __typename cpuCores memoryMb gpuUnits storageGb } }
    ... { recent: statusHistory(limit: 2) { newStatus changedAt } }
    statusHistory { __typename oldStatus newStatus changedAt reason }
    again: replicaCounts { running }
  }
}
fragment Summary on Deployment { name health replicas { status id } }";

const DOCUMENTS: [&str; 7] = [
    EVERY_FIELD,
    "query($id: ID!) { deployment(id: $id) { health } }",
    "query($id: ID!) { deployment(id: $id) { id resources { cpuCores } statusHistory(limit: 100) { reason } } }",
    "{ deployment(id: \"ID\") { id name status } }",
    "query($id: ID!) { node(id: $id) { __typename id ... on Deployment { name health replicas { id status } } } }",
    "query($id: ID!) { n: node(id: $id) { ...N ...D } } fragment N on Node { id } fragment D on Deployment { status }",
    "{ node(id: \"ID\") { id } }",
];

/// A status read of every field of `Deployment` and of each object below it,
/// as the schema declares them today (fields with a required argument
/// aside): a field added to the schema is compared here with no edit.
async fn every_field_in_the_schema() -> String {
    format!(
        "query($id: ID!) {{ deployment(id: $id) {{ {} }} }}",
        every_field_of("Deployment").await
    )
}

/// A selection of every field of the object type `name` and of each object
/// below it, from the schema's introspection (fields with a required
/// argument aside).
async fn every_field_of(name: &str) -> String {
    const TYPES: &str = "{ __schema { types { name fields { name args { type { kind } } \
        type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }";
    let response = deployql::graphql::build_schema().execute(TYPES).await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    let data = response.data.into_json().expect("JSON");
    let types = data["__schema"]["types"].as_array().expect("types").clone();
    fn selection(types: &[Value], name: &str) -> String {
        let ty = types.iter().find(|ty| ty["name"] == name).expect("a type");
        let mut parts = vec!["__typename".to_owned()];
        for field in ty["fields"].as_array().expect("an object's fields") {
            let required = field["args"]
                .as_array()
                .is_some_and(|args| args.iter().any(|arg| arg["type"]["kind"] == "NON_NULL"));
            if required {
                continue;
            }
            let mut inner = &field["type"];
            while inner["name"].is_null() {
                inner = &inner["ofType"];
            }
            let name = field["name"].as_str().expect("a name");
            parts.push(match inner["kind"].as_str() {
                Some("OBJECT") => {
                    format!(
                        "{name} {{ {} }}",
                        selection(types, inner["name"].as_str().expect("name"))
                    )
                }
                _ => name.to_owned(),
            });
        }
        parts.join(" ")
    }
    selection(&types, name)
}

/// The status and body of one POST as `user`, with a fixed request id so
/// that answers can be compared byte for byte.
async fn post(app: &TestApp, user: Uuid, body: &Value) -> (StatusCode, String) {
    let request = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token(user)))
        .header("x-request-id", "fixed")
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("router");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn direct_reads(app: &TestApp) -> u64 {
    app.scrape()
        .await
        .lines()
        .find_map(|line| line.strip_prefix("deployql_graphql_direct_reads_total "))
        .map_or(0, |count| count.trim().parse().expect("a count"))
}

/// Inserts a deployment of `user` whose optional columns are null where
/// they can be, and whose name needs escaping.
async fn sparse(app: &TestApp, user: Uuid) -> Uuid {
    let new = NewDeployment {
        name: "quote \" backslash \\ tab \t é \u{1}".to_owned(),
        replicas: Vec::new(),
        resources: false,
        history: 1,
        ..NewDeployment::default()
    };
    let id = app.insert(user, new).await;
    deployment_replica::Entity::insert(deployment_replica::ActiveModel {
        id: Set(Uuid::new_v4()),
        deployment_id: Set(id),
        node_id: Set(None),
        status: Set(ReplicaStatus::Pending),
        container_id: Set(None),
        started_at: Set(None),
        stopped_at: Set(None),
    })
    .exec(&app.db)
    .await
    .expect("insert replica");
    id
}

/// Sends `body` (a document text not sent before) twice: async-graphql
/// answers the first, the compiled path the second; both answers must be
/// the same byte for byte, after the same statements (at most `statements`).
async fn answered_alike_by_both_paths(app: &TestApp, user: Uuid, body: &Value, statements: usize) {
    let before = app.statements.lock().expect("log").len();
    let (status, expected) = post(app, user, body).await;
    let between = app.statements.lock().expect("log").len();
    let reads = direct_reads(app).await;
    let (direct_status, direct) = post(app, user, body).await;
    let after = app.statements.lock().expect("log").len();
    assert_eq!(direct_reads(app).await, reads + 1, "not answered directly: {body}");
    assert_eq!((direct_status, &direct), (status, &expected), "{body}");
    assert_eq!(after - between, between - before, "statements: {body}");
    assert!(after - between <= statements, "{statements} statements at most: {body}");
}

async fn a_status_read_answered_directly_is_the_same_answer_byte_for_byte(app: &TestApp) {
    let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
    let full = NewDeployment {
        replicas: vec![ReplicaStatus::Running, ReplicaStatus::Failed, ReplicaStatus::Starting],
        history: 4,
        target: 3,
        ..NewDeployment::default()
    };
    let ids = [
        app.insert(user, full).await.to_string(),
        sparse(app, user).await.to_string(),
        app.insert(other, NewDeployment::default()).await.to_string(),
        Uuid::new_v4().to_string(),
        "not-a-uuid \"quoted\"".to_owned(),
    ];
    let every_field = every_field_in_the_schema().await;
    assert!(every_field.contains("replicas { __typename id"), "{every_field}");
    let documents = DOCUMENTS.iter().copied().chain([every_field.as_str()]);
    for (n, document) in documents.enumerate() {
        for (m, id) in ids.iter().enumerate() {
            // A document text of its own for each id: the first request of
            // a text is validated and answered by async-graphql, the next
            // ones directly.
            let query =
                format!("{}\n# {n}.{m}", document.replace("\"ID\"", &json!(id).to_string()));
            let body = json!({ "query": query, "variables": { "id": id } });
            answered_alike_by_both_paths(app, user, &body, 1).await;
        }
    }
    // The answers compared are the real thing, not two empty ones.
    let body = json!({ "query": EVERY_FIELD, "variables": { "id": ids[0] } });
    let (_, answer) = post(app, user, &body).await;
    let answer: Value = serde_json::from_str(&answer).expect("JSON");
    let status = &answer["data"]["status"];
    assert_eq!(status["replicas"].as_array().map(Vec::len), Some(3), "{answer}");
    assert_eq!(status["recent"].as_array().map(Vec::len), Some(2), "{answer}");
    assert_eq!(status["statusHistory"].as_array().map(Vec::len), Some(4), "{answer}");
    assert_eq!(status["health"], "DEGRADED", "{answer}");
    assert_eq!(status["resources"]["cpuCores"], 1.5, "{answer}");
}

/// The list documents compared: every field of the connection (whatever
/// the schema holds), and a frontend's usual shapes.
async fn list_documents() -> Vec<String> {
    const ARGUMENTS: &str = "$first: Int, $after: String, $status: DeploymentStatus, \
        $health: Health";
    let every_field = every_field_of("DeploymentConnection").await;
    assert!(every_field.contains("edges { __typename cursor node {"), "{every_field}");
    assert!(every_field.contains("pageInfo {"), "{every_field}");
    vec![
        format!(
            "query List({ARGUMENTS}) {{ deployments(first: $first, after: $after, \
             status: $status, health: $health) {{ {every_field} }} }}"
        ),
        format!(
            "query Page({ARGUMENTS}) {{ list: deployments(first: $first, after: $after, \
             status: $status, health: $health) {{ totalCount \
             nodes {{ ...Row }} pageInfo {{ hasNextPage endCursor }} }} }} \
             fragment Row on Deployment {{ id name status health replicaCounts {{ running total }} }}"
        ),
        "{ deployments(first: 2, health: DEGRADED) { edges { cursor } \
         ... on DeploymentConnection { pageInfo { startCursor } } } }"
            .to_owned(),
    ]
}

async fn a_list_answered_directly_is_the_same_answer_byte_for_byte(app: &TestApp) {
    let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
    let start = chrono::Utc::now() - chrono::Duration::hours(2);
    for n in 0..5_i64 {
        let new = NewDeployment {
            replicas: vec![ReplicaStatus::Running, ReplicaStatus::Failed],
            target: if n % 2 == 0 { 2 } else { 1 },
            status: if n == 3 { DeploymentStatus::Failed } else { DeploymentStatus::Running },
            resources: n != 1,
            history: 3,
            // Two with the same instant: the cursor's id breaks the tie.
            created_at: start + chrono::Duration::minutes(n.min(3)),
            ..NewDeployment::default()
        };
        app.insert(user, new).await;
    }
    sparse(app, user).await;
    app.insert(other, NewDeployment::default()).await;
    // A cursor into the middle of the list.
    let body = json!({ "query": "{ deployments(first: 2) { pageInfo { endCursor } } }" });
    let (_, page) = post(app, user, &body).await;
    let page: Value = serde_json::from_str(&page).expect("JSON");
    let cursor = page["data"]["deployments"]["pageInfo"]["endCursor"].clone();
    assert!(cursor.is_string(), "{page}");
    let variables = [
        json!({}),
        json!({ "first": 2 }),
        json!({ "first": 2, "after": cursor }),
        json!({ "first": null, "status": "RUNNING" }),
        json!({ "health": "DEGRADED", "first": 10 }),
        json!({ "status": "STOPPED" }),
    ];
    for (n, document) in list_documents().await.iter().enumerate() {
        for (m, variables) in variables.iter().enumerate() {
            let query = format!("{document}\n# {n}.{m}");
            let body = json!({ "query": query, "variables": variables });
            answered_alike_by_both_paths(app, user, &body, 2).await;
        }
    }
    // The answers compared are the real thing, not two empty ones.
    let documents = list_documents().await;
    let body = json!({ "query": documents[0], "variables": { "first": 2, "after": cursor } });
    let (_, answer) = post(app, user, &body).await;
    let answer: Value = serde_json::from_str(&answer).expect("JSON");
    let list = &answer["data"]["deployments"];
    assert_eq!(list["totalCount"], 6, "{answer}");
    assert_eq!(list["nodes"].as_array().map(Vec::len), Some(2), "{answer}");
    assert_eq!(list["pageInfo"]["hasPreviousPage"], true, "{answer}");
    assert_eq!(list["pageInfo"]["hasNextPage"], true, "{answer}");
    assert_eq!(list["edges"][0]["node"]["replicas"].as_array().map(Vec::len), Some(2), "{answer}");
}

/// A page larger than any the document was validated with is measured
/// again (its cost grows with the page), and arguments the resolver
/// refuses get the resolver's error, from async-graphql.
async fn a_list_with_a_larger_page_or_bad_arguments_goes_to_async_graphql(app: &TestApp) {
    let user = Uuid::new_v4();
    app.insert(user, NewDeployment::default()).await;
    let query = "query($first: Int, $after: String) { deployments(first: $first, after: $after) \
        { nodes { statusHistory(limit: 100) { reason changedAt newStatus oldStatus } } } }";
    let ask = |variables: Value| json!({ "query": query, "variables": variables });
    let reads = direct_reads(app).await;
    assert_eq!(post(app, user, &ask(json!({ "first": 1 }))).await.0, StatusCode::OK);
    assert_eq!(post(app, user, &ask(json!({ "first": 1 }))).await.0, StatusCode::OK);
    assert_eq!(direct_reads(app).await, reads + 1);
    // 100 rows of 100 history rows of 5 fields: over the complexity bound.
    let (_, answer) = post(app, user, &ask(json!({ "first": 100 }))).await;
    let answer: Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(answer["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX", "{answer}");
    let refusals = [
        (json!({ "first": 0 }), "BAD_USER_INPUT"),
        (json!({ "first": 1, "after": "not a cursor" }), "BAD_USER_INPUT"),
        (json!({ "first": "1" }), "GRAPHQL_VALIDATION_FAILED"),
    ];
    for (variables, code) in refusals {
        for _ in 0..2 {
            let (_, answer) = post(app, user, &ask(variables.clone())).await;
            let answer: Value = serde_json::from_str(&answer).expect("JSON");
            assert_eq!(answer["errors"][0]["extensions"]["code"], code, "{variables}: {answer}");
        }
    }
    assert_eq!(direct_reads(app).await, reads + 1, "none of these answered directly");
}

async fn documents_the_direct_path_does_not_know_are_answered_as_before(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment::default()).await;
    let documents = [
        "query($id: ID!, $on: Boolean!) { deployment(id: $id) { id name @include(if: $on) } }",
        "query($id: ID!) { deployment(id: $id) { ... on Node { id } } }",
        "query($id: ID!) { deployment(id: $id) { replicas(status: RUNNING) { status } } }",
        "query($id: ID!) { deployment(id: $id) { statusHistory(limit: 0) { reason } } }",
    ];
    let reads = direct_reads(app).await;
    for query in documents {
        let body = json!({ "query": query, "variables": { "id": id, "on": true } });
        let (status, first) = post(app, user, &body).await;
        assert_eq!(
            (status, &first),
            (post(app, user, &body).await.0, &post(app, user, &body).await.1)
        );
        assert_eq!(status, StatusCode::OK, "{first}");
    }
    assert_eq!(direct_reads(app).await, reads, "none of these is a status read it answers");
    // Variables of the wrong type are still refused as before, however
    // often the document came.
    let query = "query($id: ID!) { deployment(id: $id) { id } }";
    let good = json!({ "query": query, "variables": { "id": id } });
    assert_eq!(post(app, user, &good).await.0, StatusCode::OK);
    for variables in [json!({ "id": true }), json!({}), json!({ "id": null }), json!({ "id": [1] })]
    {
        let body = json!({ "query": query, "variables": variables });
        let (_, answer) = post(app, user, &body).await;
        let answer: Value = serde_json::from_str(&answer).expect("JSON");
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
            "{answer}"
        );
        assert!(answer.get("data").is_none() || answer["data"].is_null(), "{answer}");
    }
}

backend_tests!(
    a_status_read_answered_directly_is_the_same_answer_byte_for_byte,
    a_list_answered_directly_is_the_same_answer_byte_for_byte,
    a_list_with_a_larger_page_or_bad_arguments_goes_to_async_graphql,
    documents_the_direct_path_does_not_know_are_answered_as_before,
);
