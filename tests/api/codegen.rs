//! A typed client generated from the checked-in schema.graphql compiles and
//! runs the status query against a real server.

use entity::ReplicaStatus::{Failed, Running};
use graphql_client::{GraphQLQuery, Response};
use uuid::Uuid;

use crate::helpers::{NewDeployment, TestApp};

type DateTime = String;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "schema.graphql",
    query_path = "tests/api/status_query.graphql",
    response_derives = "Debug, PartialEq"
)]
struct StatusQuery;

async fn generated_client_runs_the_status_query(app: &TestApp) {
    let user = Uuid::new_v4();
    let new = NewDeployment {
        target: 2,
        replicas: vec![Running, Failed],
        history: 2,
        ..Default::default()
    };
    let id = app.insert(user, new.clone()).await;
    let addr = app.serve().await;

    let body = StatusQuery::build_query(status_query::Variables { id: id.to_string() });
    let response: Response<status_query::ResponseData> = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(app.token(user))
        .json(&body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("typed response");
    assert!(response.errors.is_none(), "{:?}", response.errors);
    let deployment = response.data.and_then(|d| d.deployment).expect("the deployment");
    assert_eq!(deployment.name, new.name);
    assert_eq!(deployment.health, status_query::Health::DEGRADED);
    assert_eq!(deployment.status, status_query::DeploymentStatus::RUNNING);
    assert_eq!(deployment.replica_counts.total, 2);
    assert_eq!(deployment.replicas.len(), 2);
    assert_eq!(deployment.status_history.len(), 2);
    assert!(deployment.resources.is_some());
}

backend_tests!(generated_client_runs_the_status_query);
