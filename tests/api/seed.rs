//! Dev-mode demo data goes only into an empty database.

use deployql::service::demo::{DEMO_USER, seed_if_empty};
use entity::deployment;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{NewDeployment, TestApp};

async fn demo_data_is_inserted_once_and_only_into_an_empty_database(app: &TestApp) {
    assert!(
        seed_if_empty(&app.db.clone().into()).await.expect("seed"),
        "a fresh database gets demo data"
    );
    assert!(!seed_if_empty(&app.db.clone().into()).await.expect("seed again"), "seeds only once");
    let query = "{ deployments { totalCount nodes { health resources { cpuCores } } } }";
    let body = app.gql(DEMO_USER, query, json!({})).await;
    assert_eq!(body["data"]["deployments"]["totalCount"], 5, "{body}");
    let nodes = body["data"]["deployments"]["nodes"].as_array().expect("nodes");
    for health in ["HEALTHY", "DEGRADED", "UNHEALTHY"] {
        assert!(nodes.iter().any(|n| n["health"] == health), "no {health} demo deployment");
    }
}

async fn a_database_with_data_gets_no_demo_data(app: &TestApp) {
    app.insert(Uuid::new_v4(), NewDeployment::default()).await;
    let before = deployment::Entity::find().count(&app.db).await.expect("count");
    assert!(!seed_if_empty(&app.db.clone().into()).await.expect("seed"));
    assert_eq!(deployment::Entity::find().count(&app.db).await.expect("count"), before);
}

backend_tests!(
    demo_data_is_inserted_once_and_only_into_an_empty_database,
    a_database_with_data_gets_no_demo_data,
);
