//! Concurrent writers and a failure between two writes of one transaction.

use futures_util::future::join_all;
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait};
use serde_json::json;
use uuid::Uuid;

use crate::{
    helpers::{NewDeployment, TestApp, error_code},
    mutations::{CREATE, deployments_of, input},
};

async fn fifty_concurrent_scales_leave_one_requested_value(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = app.insert(user, NewDeployment { target: 0, ..Default::default() }).await;
    let before =
        entity::deployment::Entity::find_by_id(id).one(&app.db).await.expect("q").expect("row");
    let scale = "mutation($id: ID!, $n: Int!) { scaleDeployment(id: $id, targetReplicas: $n) { targetReplicas } }";
    let responses =
        join_all((1..=50).map(|n| app.gql(user, scale, json!({ "id": id, "n": n })))).await;
    for body in &responses {
        assert!(body["errors"].is_null(), "{body}");
    }
    let after =
        entity::deployment::Entity::find_by_id(id).one(&app.db).await.expect("q").expect("row");
    assert!((1..=50).contains(&after.target_replicas), "{}", after.target_replicas);
    assert!(after.updated_at > before.updated_at);
}

async fn fifty_concurrent_creates_of_one_name_give_one_success(app: &TestApp) {
    let user = Uuid::new_v4();
    let responses =
        join_all((0..50).map(|_| app.gql(user, CREATE, json!({ "input": input("race") })))).await;
    let created = responses.iter().filter(|body| body["errors"].is_null()).count();
    let conflicts = responses.iter().filter(|body| error_code(body) == Some("CONFLICT")).count();
    assert_eq!((created, conflicts), (1, 49), "{responses:#?}");
    assert_eq!(deployments_of(app, user).await.len(), 1);
}

/// Makes every status-history insert for `user`'s deployments fail, like a
/// database dying between two writes of one transaction.
async fn fail_history_writes_of(app: &TestApp, user: Uuid) -> String {
    let name = format!("fail_history_{}", user.simple());
    let sql = match app.db.get_database_backend() {
        DbBackend::Sqlite => vec![format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON deployment_status_history \
             WHEN (SELECT user_id FROM deployments WHERE id = NEW.deployment_id) = X'{}' \
             BEGIN SELECT RAISE(ABORT, 'forced failure'); END",
            user.simple()
        )],
        _ => vec![
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF (SELECT user_id FROM deployments WHERE id = NEW.deployment_id) = '{user}' \
                 THEN RAISE EXCEPTION 'forced failure'; END IF; RETURN NEW; END $$"
            ),
            format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON deployment_status_history \
                 FOR EACH ROW EXECUTE FUNCTION {name}()"
            ),
        ],
    };
    for statement in sql {
        app.db.execute_unprepared(&statement).await.expect("install failing trigger");
    }
    name
}

async fn remove_trigger(app: &TestApp, name: &str) {
    let sql = match app.db.get_database_backend() {
        DbBackend::Sqlite => format!("DROP TRIGGER {name}"),
        _ => format!("DROP TRIGGER {name} ON deployment_status_history; DROP FUNCTION {name}()"),
    };
    app.db.execute_unprepared(&sql).await.expect("drop trigger");
}

async fn a_failure_between_writes_leaves_nothing_half_written(app: &TestApp) {
    let user = Uuid::new_v4();
    let existing = app
        .insert(
            user,
            NewDeployment {
                replicas: vec![entity::ReplicaStatus::Running],
                history: 2,
                ..Default::default()
            },
        )
        .await;
    let snapshot = |app: &TestApp| {
        let db = app.db.clone();
        async move {
            (
                entity::deployment::Entity::find()
                    .all(&db)
                    .await
                    .expect("deployments")
                    .into_iter()
                    .filter(|d| d.user_id == user)
                    .collect::<Vec<_>>(),
                entity::deployment_resources::Entity::find()
                    .all(&db)
                    .await
                    .expect("resources")
                    .into_iter()
                    .filter(|r| r.deployment_id == existing)
                    .count(),
                entity::deployment_replica::Entity::find()
                    .all(&db)
                    .await
                    .expect("replicas")
                    .into_iter()
                    .filter(|r| r.deployment_id == existing)
                    .collect::<Vec<_>>(),
                entity::deployment_status_history::Entity::find()
                    .all(&db)
                    .await
                    .expect("history")
                    .into_iter()
                    .filter(|h| h.deployment_id == existing)
                    .count(),
            )
        }
    };
    let before = snapshot(app).await;
    let trigger = fail_history_writes_of(app, user).await;

    let create = app.gql(user, CREATE, json!({ "input": input("doomed") })).await;
    let delete = app
        .gql(
            user,
            "mutation($id: ID!) { deleteDeployment(id: $id) { id } }",
            json!({ "id": existing }),
        )
        .await;
    let after = snapshot(app).await;
    remove_trigger(app, &trigger).await;

    for body in [&create, &delete] {
        assert_eq!(error_code(body), Some("INTERNAL_SERVER_ERROR"), "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(!message.contains("forced failure"), "the cause stays in the log: {message}");
    }
    assert_eq!(after, before, "neither mutation left a trace");
}

backend_tests!(
    fifty_concurrent_scales_leave_one_requested_value,
    fifty_concurrent_creates_of_one_name_give_one_success,
    a_failure_between_writes_leaves_nothing_half_written,
);
