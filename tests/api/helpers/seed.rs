//! Seeding: deployments, replicas, resources and history written straight
//! into the tables, as another service would.

use chrono::{DateTime, Utc};
use entity::{
    DeploymentStatus, ReplicaStatus, deployment, deployment_replica, deployment_resources,
    deployment_status_history,
};
use sea_orm::{ActiveValue::Set, EntityTrait};
use uuid::Uuid;

use super::TestApp;

impl TestApp {
    /// Inserts a deployment as another service would, straight into the tables.
    pub async fn insert(&self, user: Uuid, new: NewDeployment) -> Uuid {
        let id = Uuid::new_v4();
        deployment::Entity::insert(deployment::ActiveModel {
            id: Set(id),
            user_id: Set(user),
            name: Set(new.name.clone()),
            status: Set(new.status),
            target_replicas: Set(new.target),
            created_at: Set(new.created_at),
            updated_at: Set(new.created_at),
            deleted_at: Set(new.deleted.then_some(new.created_at)),
        })
        .exec(&self.db)
        .await
        .expect("insert deployment");
        for (n, status) in new.replicas.iter().enumerate() {
            deployment_replica::Entity::insert(deployment_replica::ActiveModel {
                id: Set(Uuid::new_v4()),
                deployment_id: Set(id),
                node_id: Set(Some(Uuid::new_v4())),
                status: Set(*status),
                container_id: Set(Some(format!("c-{n}"))),
                started_at: Set(Some(new.created_at + chrono::Duration::seconds(n as i64))),
                stopped_at: Set(None),
            })
            .exec(&self.db)
            .await
            .expect("insert replica");
        }
        if new.resources {
            deployment_resources::Entity::insert(deployment_resources::ActiveModel {
                id: Set(Uuid::new_v4()),
                deployment_id: Set(id),
                cpu_cores: Set(1.5),
                memory_mb: Set(2048),
                gpu_units: Set(1),
                storage_gb: Set(10),
            })
            .exec(&self.db)
            .await
            .expect("insert resources");
        }
        for n in 0..new.history {
            deployment_status_history::Entity::insert(deployment_status_history::ActiveModel {
                id: Set(Uuid::new_v4()),
                deployment_id: Set(id),
                old_status: Set((n > 0).then_some(DeploymentStatus::Pending)),
                new_status: Set(DeploymentStatus::Running),
                changed_at: Set(new.created_at + chrono::Duration::minutes(n as i64)),
                reason: Set(Some(format!("change {n}"))),
            })
            .exec(&self.db)
            .await
            .expect("insert history");
        }
        id
    }
}

/// What `TestApp::insert` writes; `Default` is a healthy deployment of one replica.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub name: String,
    pub status: DeploymentStatus,
    pub target: i32,
    pub replicas: Vec<ReplicaStatus>,
    pub resources: bool,
    pub history: usize,
    pub created_at: DateTime<Utc>,
    pub deleted: bool,
}

impl Default for NewDeployment {
    fn default() -> Self {
        Self {
            name: format!("app-{}", &Uuid::new_v4().simple().to_string()[..8]),
            status: DeploymentStatus::Running,
            target: 1,
            replicas: vec![ReplicaStatus::Running],
            resources: true,
            history: 1,
            // An hour ago, so seeded history (a minute a row) lies in the past.
            created_at: micros(Utc::now() - chrono::Duration::hours(1)),
            deleted: false,
        }
    }
}

/// Postgres keeps microseconds; seeding with them keeps comparisons exact on both backends.
pub fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).expect("in range")
}
