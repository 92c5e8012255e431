//! Demo data for dev mode: one user with healthy, degraded and unhealthy
//! deployments, so a newcomer has something real to query.

use chrono::{Duration, Utc};
use entity::{
    DeploymentStatus, ReplicaStatus, deployment, deployment_replica as replica,
    deployment_resources as resources, deployment_status_history as history,
};
use sea_orm::{ActiveValue::Set, DbErr, EntityTrait, PaginatorTrait};
use uuid::{Uuid, uuid};

use crate::db::Db;

/// The demo user; dev mode prints a token for it.
pub const DEMO_USER: Uuid = uuid!("d3e0d3e0-0000-4000-8000-000000000001");

struct DemoDeployment {
    name: &'static str,
    status: DeploymentStatus,
    target: i32,
    replicas: &'static [ReplicaStatus],
    resources: Option<(f64, i32, i32, i32)>,
}

const DEMO: &[DemoDeployment] = {
    use ReplicaStatus::{Failed, Pending, Running};
    &[
        DemoDeployment {
            name: "web-frontend",
            status: DeploymentStatus::Running,
            target: 3,
            replicas: &[Running, Running, Running],
            resources: Some((0.5, 512, 0, 1)),
        },
        DemoDeployment {
            name: "api-gateway",
            status: DeploymentStatus::Running,
            target: 3,
            replicas: &[Running, Running, Failed],
            resources: Some((1.0, 1024, 0, 2)),
        },
        DemoDeployment {
            name: "ml-inference",
            status: DeploymentStatus::Scheduled,
            target: 4,
            replicas: &[Running, Running, Pending],
            resources: Some((8.0, 32_768, 2, 100)),
        },
        DemoDeployment {
            name: "batch-worker",
            status: DeploymentStatus::Failed,
            target: 2,
            replicas: &[Failed, Failed],
            resources: Some((2.0, 4096, 0, 20)),
        },
        DemoDeployment {
            name: "cron-cleanup",
            status: DeploymentStatus::Pending,
            target: 1,
            replicas: &[],
            resources: None,
        },
    ]
};

/// Inserts the demo data when the database holds no deployment at all;
/// returns whether it did.
pub async fn seed_if_empty(db: &Db) -> Result<bool, DbErr> {
    if deployment::Entity::find().count(db).await? > 0 {
        return Ok(false);
    }
    let txn = db.begin_write().await?;
    let now = Utc::now();
    for (i, demo) in DEMO.iter().enumerate() {
        let id = Uuid::new_v4();
        let created_at = now - Duration::hours(24 * (i as i64 + 1));
        deployment::Entity::insert(deployment::ActiveModel {
            id: Set(id),
            user_id: Set(DEMO_USER),
            name: Set(demo.name.to_owned()),
            status: Set(demo.status),
            target_replicas: Set(demo.target),
            created_at: Set(created_at),
            updated_at: Set(now),
            deleted_at: Set(None),
        })
        .exec(&txn)
        .await?;
        let replicas = demo.replicas.iter().enumerate().map(|(n, status)| replica::ActiveModel {
            id: Set(Uuid::new_v4()),
            deployment_id: Set(id),
            node_id: Set(Some(Uuid::new_v4())),
            status: Set(*status),
            container_id: Set(Some(format!("{}-{n}", demo.name))),
            started_at: Set(Some(created_at + Duration::minutes(n as i64 + 1))),
            stopped_at: Set(None),
        });
        if !demo.replicas.is_empty() {
            replica::Entity::insert_many(replicas).exec(&txn).await?;
        }
        if let Some((cpu_cores, memory_mb, gpu_units, storage_gb)) = demo.resources {
            resources::Entity::insert(resources::ActiveModel {
                id: Set(Uuid::new_v4()),
                deployment_id: Set(id),
                cpu_cores: Set(cpu_cores),
                memory_mb: Set(memory_mb),
                gpu_units: Set(gpu_units),
                storage_gb: Set(storage_gb),
            })
            .exec(&txn)
            .await?;
        }
        history::Entity::insert_many(history_rows(id, demo.status, created_at)).exec(&txn).await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// A plausible path from creation to `last`, one step a minute.
fn history_rows(
    deployment_id: Uuid,
    last: DeploymentStatus,
    created_at: chrono::DateTime<Utc>,
) -> Vec<history::ActiveModel> {
    use DeploymentStatus::{Pending, Running, Scheduled};
    let path: &[DeploymentStatus] = match last {
        Pending => &[Pending],
        Scheduled => &[Pending, Scheduled],
        Running => &[Pending, Scheduled, Running],
        _ => &[Pending, Scheduled, Running, last],
    };
    let mut old = None;
    path.iter()
        .enumerate()
        .map(|(step, status)| {
            let row = history::ActiveModel {
                id: Set(Uuid::new_v4()),
                deployment_id: Set(deployment_id),
                old_status: Set(old),
                new_status: Set(*status),
                changed_at: Set(created_at + Duration::minutes(step as i64)),
                reason: Set(Some(if step == 0 {
                    "Deployment created".to_owned()
                } else {
                    format!("Scheduler moved it to {status:?}")
                })),
            };
            old = Some(*status);
            row
        })
        .collect()
}
