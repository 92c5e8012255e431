//! Dev-mode demo data goes only into an empty database.

use deployql::service::demo::{DEMO_USER, seed_if_empty};
use entity::deployment;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{NewDeployment, TestApp};

async fn demo_data_is_inserted_once_and_only_into_an_empty_database(app: &TestApp) {
    // The Postgres database is shared by the whole run, so only SQLite starts empty.
    let empty = deployment::Entity::find().count(&app.db).await.expect("count") == 0;
    assert_eq!(seed_if_empty(&app.db).await.expect("seed"), empty);
    assert!(!seed_if_empty(&app.db).await.expect("seed again"), "seeds only once");
    if empty {
        let body = app
            .gql(DEMO_USER, "{ deployments { totalCount nodes { health resources { cpuCores } statusHistory { newStatus } } } }", json!({}))
            .await;
        assert_eq!(body["data"]["deployments"]["totalCount"], 5, "{body}");
    }
}

async fn a_database_with_data_gets_no_demo_data(app: &TestApp) {
    app.insert(Uuid::new_v4(), NewDeployment::default()).await;
    let before = deployment::Entity::find().count(&app.db).await.expect("count");
    assert!(!seed_if_empty(&app.db).await.expect("seed"));
    assert_eq!(deployment::Entity::find().count(&app.db).await.expect("count"), before);
}

backend_tests!(
    demo_data_is_inserted_once_and_only_into_an_empty_database,
    a_database_with_data_gets_no_demo_data,
);
