//! Every column of every relation's entity reads back unchanged through both
//! read paths (the planner's one statement and the loaders' batched fetch),
//! on both backends: the columns are generated from the entities, so this
//! holds for a column added later too.

use chrono::{Duration, Utc};
use deployql::{
    ids::{DeploymentId, UserId},
    service::{deployments, plan},
};
use entity::{
    DeploymentStatus, ReplicaStatus, deployment, deployment_replica as replica,
    deployment_resources as resources, deployment_status_history as history,
};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::helpers::{TestApp, micros};

/// Inserts a deployment whose related rows set every column, nulls none.
async fn full_rows(app: &TestApp, user: Uuid) -> Uuid {
    let at = micros(Utc::now());
    let id = Uuid::new_v4();
    deployment::ActiveModel::from(deployment::Model {
        id,
        user_id: user,
        name: "full".to_owned(),
        status: DeploymentStatus::Running,
        target_replicas: 2,
        created_at: at,
        updated_at: at,
        deleted_at: None,
    })
    .insert(&app.db)
    .await
    .expect("deployment");
    for (n, status) in [ReplicaStatus::Running, ReplicaStatus::Stopped].into_iter().enumerate() {
        replica::ActiveModel::from(replica::Model {
            id: Uuid::new_v4(),
            deployment_id: id,
            node_id: Some(Uuid::new_v4()),
            status,
            container_id: Some(format!("container-{n}")),
            started_at: Some(at - Duration::minutes(10 - n as i64)),
            stopped_at: Some(at),
        })
        .insert(&app.db)
        .await
        .expect("replica");
    }
    resources::ActiveModel::from(resources::Model {
        id: Uuid::new_v4(),
        deployment_id: id,
        cpu_cores: 1.5,
        memory_mb: 2048,
        gpu_units: 1,
        storage_gb: 20,
    })
    .insert(&app.db)
    .await
    .expect("resources");
    for n in 0..3 {
        history::ActiveModel::from(history::Model {
            id: Uuid::new_v4(),
            deployment_id: id,
            old_status: Some(DeploymentStatus::Pending),
            new_status: DeploymentStatus::Running,
            changed_at: at - Duration::seconds(n),
            reason: Some(format!("reason {n}")),
        })
        .insert(&app.db)
        .await
        .expect("history");
    }
    id
}

async fn every_column_reads_back_through_the_planner_and_the_loaders(app: &TestApp) {
    let user = Uuid::new_v4();
    let id = full_rows(app, user).await;
    // What sea-orm itself reads, column by column, in the relations' orders.
    let replicas = replica::Entity::find()
        .filter(replica::Column::DeploymentId.eq(id))
        .order_by_asc(replica::Column::StartedAt)
        .all(&app.db)
        .await
        .expect("replicas");
    let resources =
        resources::Entity::find().filter(resources::Column::DeploymentId.eq(id)).one(&app.db).await;
    let history = history::Entity::find()
        .filter(history::Column::DeploymentId.eq(id))
        .order_by_desc(history::Column::ChangedAt)
        .all(&app.db)
        .await
        .expect("history");

    let everything =
        plan::Plan { counts: true, replicas: true, resources: true, history_limits: vec![10] };
    let planned =
        deployments::find_each(&app.db, UserId(user), &[DeploymentId(id)], &everything).await;
    let (_, planned) = planned.expect("planner").pop().expect("the deployment");
    let loaded = plan::relations_of(&app.db, &everything, &[DeploymentId(id)]).await;
    let (_, loaded) = loaded.expect("loaders").pop().expect("the deployment");
    for (path, fetched) in [("planner", planned), ("loaders", loaded)] {
        assert_eq!(fetched.replicas.as_ref(), Some(&replicas), "{path}");
        assert_eq!(fetched.resources, Some(resources.clone().expect("resources")), "{path}");
        assert_eq!(fetched.history.as_ref(), Some(&history), "{path}");
        let counts = fetched.counts.expect("counts");
        assert_eq!((counts.running, counts.stopped, counts.total()), (1, 1, 2), "{path}");
    }
}

backend_tests!(every_column_reads_back_through_the_planner_and_the_loaders);
