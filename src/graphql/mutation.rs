//! Mutations: create, scale and delete deployments. Each answers with the
//! fresh state so a client cache updates from one round trip.

use crate::db::Db;
use async_graphql::{
    Context, ErrorExtensions, ID, InputObject, Object, Result, ResultExt, SimpleObject,
};

use super::{
    deployment::{self, Deployment, parse_id},
    types::Timestamp,
};
use std::sync::Arc;

use crate::{
    db::FileWatch,
    error::{ApiError, StorageFault},
    ids::UserId,
    live::ChangeFeed,
    service::{
        health::ReplicaCounts,
        mutations,
        validation::{NewDeployment, NewResources},
    },
};

/// A new deployment.
#[derive(InputObject, Debug)]
pub struct CreateDeploymentInput {
    /// 1 to 63 lowercase letters, digits or '-', starting with a letter and
    /// not ending with '-'; unique among your live deployments.
    pub name: String,
    /// How many replicas should run, 0 to 100.
    pub target_replicas: i32,
    /// Resources of each replica.
    pub resources: ResourcesInput,
}

/// Resources of each replica.
#[derive(InputObject, Debug)]
pub struct ResourcesInput {
    /// CPU cores, more than 0 and at most 64.
    pub cpu_cores: f64,
    /// Memory in MiB, 16 to 1,048,576.
    pub memory_mb: i32,
    /// Whole GPUs, 0 to 16.
    #[graphql(default = 0)]
    pub gpu_units: i32,
    /// Persistent storage in GB, 0 to 16,384.
    pub storage_gb: i32,
}

impl From<CreateDeploymentInput> for NewDeployment {
    fn from(input: CreateDeploymentInput) -> Self {
        let r = input.resources;
        Self {
            name: input.name,
            target_replicas: input.target_replicas,
            resources: NewResources {
                cpu_cores: r.cpu_cores,
                memory_mb: r.memory_mb,
                gpu_units: r.gpu_units,
                storage_gb: r.storage_gb,
            },
        }
    }
}

/// What remains of a deleted deployment.
#[derive(SimpleObject, Debug)]
pub struct DeletedDeployment {
    /// Id of the deleted deployment.
    pub id: ID,
    /// When it was deleted.
    pub deleted_at: Timestamp,
}

/// The database mutations write to: in every operation of a server that
/// writes, in none of a read-only one's (`READ_ONLY=true`).
#[derive(Clone, Debug)]
pub struct Writes {
    pub db: Db,
    /// A SQLite file's permissions, which may stop writes for a while.
    pub file: Option<Arc<FileWatch>>,
}

/// Where this operation's writes go, or why it may not write.
pub(crate) fn writes<'c>(ctx: &Context<'c>) -> Result<&'c Db> {
    let Some(writes) = ctx.data_opt::<Writes>() else {
        return Err(ApiError::ReadOnlyMode.extend());
    };
    if writes.file.as_ref().is_some_and(|file| file.is_read_only()) {
        return Err(ApiError::NoWrites(StorageFault::ReadOnly).extend());
    }
    Ok(&writes.db)
}

/// Changes to your deployments.
#[derive(Debug, Default)]
pub struct DeploymentMutation;

#[Object]
impl DeploymentMutation {
    /// Creates a deployment in status PENDING with its resources. A name
    /// already used by one of your live deployments is a `CONFLICT`.
    async fn create_deployment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The deployment to create.")] input: CreateDeploymentInput,
    ) -> Result<Deployment> {
        let user = ctx.data::<UserId>()?;
        let db = writes(ctx)?;
        let model = mutations::create(db, *user, &input.into()).await.extend()?;
        ctx.data::<ChangeFeed>()?.mutated(model.id);
        // A new deployment has no replicas yet: no need to count them.
        deployment::payload(ctx, model, Some(ReplicaCounts::default())).await
    }

    /// Sets how many replicas should run (0 to 100); the same count changes nothing.
    async fn scale_deployment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The deployment to scale.")] id: ID,
        #[graphql(desc = "The new target, 0 to 100.")] target_replicas: i32,
    ) -> Result<Deployment> {
        let user = ctx.data::<UserId>()?;
        let db = writes(ctx)?;
        let deployment = parse_id(&id).extend()?;
        let model = mutations::scale(db, *user, deployment, target_replicas).await.extend()?;
        ctx.data::<ChangeFeed>()?.mutated(deployment.0);
        deployment::payload(ctx, model, None).await
    }

    /// Deletes a deployment: it stops, its resources are released and its
    /// replicas are told to stop; it no longer appears in queries.
    async fn delete_deployment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The deployment to delete.")] id: ID,
    ) -> Result<DeletedDeployment> {
        let user = ctx.data::<UserId>()?;
        let db = writes(ctx)?;
        let deployment = parse_id(&id).extend()?;
        let deleted_at = mutations::delete(db, *user, deployment).await.extend()?;
        ctx.data::<ChangeFeed>()?.mutated(deployment.0);
        Ok(DeletedDeployment { id, deleted_at: Timestamp(deleted_at) })
    }
}
