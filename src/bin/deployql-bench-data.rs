//! Bulk-loads a synthetic dataset for the benchmark and writes the targets
//! file the load scripts read: one `<bearer token> <deployment id>` per line.
//!
//! `deployql-bench-data --database-url postgres://... --jwt-secret ... --users 100 --per-user 100`

use std::{io::Write, time::Instant};

use chrono::{Duration, Utc};
use clap::Parser;
use deployql::{auth::JwtKeys, config::JwtSecret, db};
use entity::{
    DeploymentStatus, ReplicaStatus, deployment, deployment_replica as replica,
    deployment_resources as resources, deployment_status_history as history,
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, TransactionTrait};
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, env)]
    database_url: String,
    #[arg(long, env, value_parser = JwtSecret::parse)]
    jwt_secret: JwtSecret,
    /// Users owning the deployments.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Deployments per user.
    #[arg(long, default_value_t = 100)]
    per_user: usize,
    /// Replicas per deployment.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Status-history rows per deployment.
    #[arg(long, default_value_t = 20)]
    history: usize,
    /// Where to write the targets file.
    #[arg(long, default_value = "bench/out/targets.txt")]
    targets: std::path::PathBuf,
}

/// Bind parameters per INSERT, under both backends' limits.
const MAX_BIND_PARAMETERS: usize = 30_000;

/// Small deterministic generator: the same arguments give the same shapes.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn insert_all<A>(
    txn: &impl sea_orm::ConnectionTrait,
    rows: Vec<A>,
    columns: usize,
) -> Result<(), sea_orm::DbErr>
where
    A: ActiveModelTrait + Send,
{
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(MAX_BIND_PARAMETERS / columns).collect();
        <A::Entity as EntityTrait>::insert_many(chunk).exec_without_returning(txn).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let started = Instant::now();
    let db = db::connect(&args.database_url, 2).await?;
    db::migrate(&db).await?;
    let keys = JwtKeys::new(&args.jwt_secret);
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    let now = Utc::now();
    let (mut deployments, mut replicas, mut resource_rows, mut changes) =
        (vec![], vec![], vec![], vec![]);
    let mut targets = Vec::new();
    for _ in 0..args.users {
        let user = Uuid::new_v4();
        let token = keys.mint(user, std::time::Duration::from_secs(6 * 3600))?;
        for n in 0..args.per_user {
            let id = Uuid::new_v4();
            let created_at = now - Duration::minutes(random.below(30 * 24 * 60) as i64 + 60);
            deployments.push(deployment::ActiveModel {
                id: Set(id),
                user_id: Set(user),
                name: Set(format!("service-{n}")),
                status: Set(DeploymentStatus::Running),
                target_replicas: Set(args.replicas as i32),
                created_at: Set(created_at),
                updated_at: Set(created_at),
                deleted_at: Set(None),
            });
            // Mostly healthy, some degraded, a few down.
            let failing = match random.below(20) {
                0 => args.replicas,
                1..=3 => 1,
                _ => 0,
            };
            for r in 0..args.replicas {
                let status =
                    if r < failing { ReplicaStatus::Failed } else { ReplicaStatus::Running };
                replicas.push(replica::ActiveModel {
                    id: Set(Uuid::new_v4()),
                    deployment_id: Set(id),
                    node_id: Set(Some(Uuid::new_v4())),
                    status: Set(status),
                    container_id: Set(Some(format!("ctr-{}", Uuid::new_v4().simple()))),
                    started_at: Set(Some(created_at + Duration::seconds(r as i64))),
                    stopped_at: Set(None),
                });
            }
            resource_rows.push(resources::ActiveModel {
                id: Set(Uuid::new_v4()),
                deployment_id: Set(id),
                cpu_cores: Set(0.25 * (1 + random.below(16)) as f64),
                memory_mb: Set(256 * (1 + random.below(32)) as i32),
                gpu_units: Set(0),
                storage_gb: Set(random.below(100) as i32),
            });
            for h in 0..args.history {
                let (old, new) = if h == 0 {
                    (None, DeploymentStatus::Pending)
                } else {
                    (Some(DeploymentStatus::Running), DeploymentStatus::Running)
                };
                changes.push(history::ActiveModel {
                    id: Set(Uuid::new_v4()),
                    deployment_id: Set(id),
                    old_status: Set(old),
                    new_status: Set(new),
                    changed_at: Set(created_at + Duration::seconds(h as i64)),
                    reason: Set(Some(format!("change {h}"))),
                });
            }
            targets.push(format!("{token} {id}"));
        }
    }
    let built = started.elapsed();
    let txn = db.begin().await?;
    insert_all(&txn, deployments, 8).await?;
    insert_all(&txn, replicas, 7).await?;
    insert_all(&txn, resource_rows, 6).await?;
    insert_all(&txn, changes, 6).await?;
    txn.commit().await?;
    if let Some(dir) = args.targets.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(&args.targets)?);
    for line in &targets {
        writeln!(file, "{line}")?;
    }
    file.flush()?;
    println!(
        "loaded {} deployments ({} users, {} replicas and {} history rows each) in {:.1} s (generating {:.1} s)",
        targets.len(),
        args.users,
        args.replicas,
        args.history,
        started.elapsed().as_secs_f64(),
        built.as_secs_f64()
    );
    Ok(())
}
