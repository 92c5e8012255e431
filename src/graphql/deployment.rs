//! The `Deployment` type and the queries that return deployments.

use std::{collections::HashMap, sync::Arc};

use crate::db::Db;
use async_graphql::{Context, ID, Object, Result, ResultExt};
use entity::deployment;

use super::{
    fields::row_object,
    loaders::{CountsOf, HistoryOf, Loaders, ReplicasOf, ResourcesOf},
    null_on_error, prefetch,
    types::{
        DeploymentStatus, Health, Replica, ReplicaCounts, ReplicaStatus, Resources, StatusChange,
        Timestamp,
    },
};
use crate::{
    config::Limits,
    error::ApiError,
    ids::{DeploymentId, UserId},
    service::{
        deployments, health,
        plan::{self, Plan},
    },
    telemetry::Scope,
};

const MAX_HISTORY: i32 = Limits::MAX_HISTORY;

/// A deployment of the authenticated user. Nested fields resolve lazily.
#[derive(Clone)]
pub struct Deployment {
    model: deployment::Model,
    /// Counts fetched together with the row, when they were.
    counts: Option<health::ReplicaCounts>,
    /// Loaders of this state alone (a subscription message); otherwise the request's.
    loaders: Option<Arc<Loaders>>,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment").field("model", &self.model).finish_non_exhaustive()
    }
}

impl Deployment {
    pub fn new(model: deployment::Model) -> Self {
        Self { model, counts: None, loaders: None }
    }

    /// A deployment whose replica counts are already known.
    pub fn with_counts(model: deployment::Model, counts: health::ReplicaCounts) -> Self {
        Self { model, counts: Some(counts), loaders: None }
    }

    /// Resolves nested fields through `loaders` instead of the request's.
    fn with_loaders(mut self, loaders: Arc<Loaders>) -> Self {
        self.loaders = Some(loaders);
        self
    }

    fn loaders<'a>(&'a self, ctx: &'a Context<'_>) -> Result<&'a Loaders> {
        match &self.loaders {
            Some(loaders) => Ok(loaders),
            None => ctx.data::<Loaders>(),
        }
    }

    async fn counts(&self, ctx: &Context<'_>) -> Result<health::ReplicaCounts> {
        if let Some(counts) = self.counts {
            return Ok(counts);
        }
        let loaders = self.loaders(ctx)?;
        Ok(loaders.load_one(CountsOf(self.model.id)).await.extend()?.unwrap_or_default())
    }
}

/// A deployment's own columns, flattened into `Deployment` (the type is
/// not in the schema).
#[derive(Debug)]
pub(crate) struct DeploymentColumns<'a>(&'a deployment::Model);

row_object! {
    #[Object(visible = false)]
    impl DeploymentColumns<'_>, over deployment::Model {
        /// Deployment id (a UUID).
        "id" id(d) -> ID = ID(d.id.to_string());
        /// Name, unique among the user's live deployments.
        "name" name(d) -> &str = &d.name;
        /// Lifecycle state.
        "status" status(d) -> DeploymentStatus = d.status.into();
        /// How many replicas should run.
        "targetReplicas" target_replicas(d) -> i32 = d.target_replicas;
        /// When it was created.
        "createdAt" created_at(d) -> Timestamp = Timestamp(d.created_at);
        /// When it last changed.
        "updatedAt" updated_at(d) -> Timestamp = Timestamp(d.updated_at);
    }
}

impl Deployment {
    /// The id, as the `Node` interface asks for it.
    pub async fn id(&self, ctx: &Context<'_>) -> Result<ID> {
        DeploymentColumns(&self.model).id(ctx).await
    }
}

/// A deployment of the authenticated user: a set of identical replicas
/// with their resources, status history and a health verdict.
#[Object]
impl Deployment {
    /// Its own columns: id, name, status, target, timestamps.
    #[graphql(flatten)]
    async fn columns(&self) -> DeploymentColumns<'_> {
        DeploymentColumns(&self.model)
    }
    /// Health verdict from the replicas' states and the target count.
    async fn health(&self, ctx: &Context<'_>) -> Result<Health> {
        Ok(self.counts(ctx).await?.health(self.model.target_replicas).into())
    }
    /// The replicas, oldest start first; optionally only those in `status`.
    #[graphql(complexity = "10 * child_complexity")]
    async fn replicas(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only replicas in this status.")] status: Option<ReplicaStatus>,
    ) -> Result<Vec<Replica>> {
        let loaders = self.loaders(ctx)?;
        let replicas = loaders.load_one(ReplicasOf(self.model.id)).await.extend()?;
        let wanted = status.map(entity::ReplicaStatus::from);
        Ok(replicas
            .unwrap_or_default()
            .into_iter()
            .filter(|r| wanted.is_none_or(|s| r.status == s))
            .map(Replica)
            .collect())
    }
    /// Replica counts, total and per status (no replica rows are loaded).
    async fn replica_counts(&self, ctx: &Context<'_>) -> Result<ReplicaCounts> {
        Ok(ReplicaCounts(self.counts(ctx).await?))
    }
    /// Allocated resources; null when the deployment has none.
    async fn resources(&self, ctx: &Context<'_>) -> Result<Option<Resources>> {
        let loaders = self.loaders(ctx)?;
        let resources = loaders.load_one(ResourcesOf(self.model.id)).await;
        Ok(null_on_error(ctx, resources.map(|found| found.flatten())).map(Resources))
    }
    /// Status changes, newest first.
    #[graphql(complexity = "limit.clamp(1, MAX_HISTORY) as usize * child_complexity")]
    async fn status_history(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Limits::DEFAULT_HISTORY", desc = "How many changes, 1 to 100.")]
        limit: i32,
    ) -> Result<Vec<StatusChange>> {
        if !(1..=MAX_HISTORY).contains(&limit) {
            return Err(ApiError::bad_input(format!(
                "`limit` must be between 1 and {MAX_HISTORY}, got {limit}"
            )))
            .extend();
        }
        let key = HistoryOf { id: self.model.id, limit: limit.unsigned_abs().into() };
        let loaders = self.loaders(ctx)?;
        let changes = loaders.load_one(key).await.extend()?.unwrap_or_default();
        Ok(changes.into_iter().map(StatusChange).collect())
    }
}

/// A deployment id as a UUID; a malformed one is simply not found.
pub fn parse_id(id: &ID) -> Result<DeploymentId, ApiError> {
    id.parse().map(DeploymentId).map_err(|_| ApiError::not_found(id))
}

/// The current state of a live deployment of `user` with fresh loaders of
/// its own, for a subscription message.
pub(crate) async fn fetch_fresh(
    db: &Db,
    user: UserId,
    id: &ID,
    plan: &Plan,
) -> Result<Deployment, ApiError> {
    let scope = Scope::current().unwrap_or_else(|| Scope::new("subscription.refetch"));
    let loaders = Arc::new(super::loaders::for_request(db.clone(), scope));
    let found = lookup(db, &loaders, user, std::slice::from_ref(id), plan).await?;
    Ok(one(found, id)?.with_loaders(loaders))
}

/// The deployments of the operation's user with these ids, planned from the
/// field's selection, in one statement: one result per id, in order. The
/// outer error is the operation's (context or database), an inner one an id's.
pub(crate) async fn lookup_each(
    ctx: &Context<'_>,
    ids: &[ID],
) -> Result<Result<Vec<Result<Deployment, ApiError>>, ApiError>> {
    let user = *ctx.data::<UserId>()?;
    let db = ctx.data::<Db>()?;
    let loaders = ctx.data::<Loaders>()?;
    let mut plan = prefetch::plan(&[ctx.look_ahead()]);
    // The lookup log reports health, so the counts always come along.
    plan.counts = true;
    Ok(lookup(db, loaders, user, ids, &plan).await)
}

/// A mutation's answer: the deployment `model` as just written, with what
/// the payload's selection asks for in one planned statement (none when it
/// asks only for the row's own fields). `counts` are given when the caller
/// knows them (a new deployment has no replicas).
pub(crate) async fn payload(
    ctx: &Context<'_>,
    model: deployment::Model,
    counts: Option<health::ReplicaCounts>,
) -> Result<Deployment> {
    let mut plan = prefetch::plan(&[ctx.look_ahead()]);
    plan.counts &= counts.is_none();
    let mut counts = counts;
    if !plan.is_empty() {
        let db = ctx.data::<Db>()?;
        let found = plan::relations_of(db, &plan, &[DeploymentId(model.id)]).await.extend()?;
        let fed: Vec<_> = found.iter().map(|(id, prefetched)| (*id, prefetched)).collect();
        prefetch::prime(ctx.data::<Loaders>()?, &plan, &fed).await;
        counts = counts.or_else(|| found.first().and_then(|(_, prefetched)| prefetched.counts));
    }
    Ok(Deployment { model, counts, loaders: None })
}

/// The first of `found`, or not found.
pub(crate) fn one(
    mut found: Vec<Result<Deployment, ApiError>>,
    id: &ID,
) -> Result<Deployment, ApiError> {
    found.pop().unwrap_or_else(|| Err(ApiError::not_found(id)))
}

/// Finds live deployments of `user` by id with what `plan` asks for, in one
/// statement; primes the loaders and logs each status lookup. One result
/// per id, in order: `NOT_FOUND` where an id is missing, foreign, deleted or
/// malformed.
async fn lookup(
    db: &Db,
    loaders: &Loaders,
    user: UserId,
    ids: &[ID],
    plan: &Plan,
) -> Result<Vec<Result<Deployment, ApiError>>, ApiError> {
    let parsed: Vec<Option<DeploymentId>> = ids.iter().map(|id| parse_id(id).ok()).collect();
    let wanted: Vec<DeploymentId> = parsed.iter().flatten().copied().collect();
    let rows = deployments::find_each(db, user, &wanted, plan).await?;
    let fed: Vec<_> = rows.iter().map(|(model, prefetched)| (model.id, prefetched)).collect();
    prefetch::prime(loaders, plan, &fed).await;
    let found: HashMap<uuid::Uuid, Deployment> = rows
        .into_iter()
        .map(|(model, prefetched)| {
            let counts = prefetched.counts.unwrap_or_default();
            log_lookup(user, &model, counts);
            (model.id, Deployment::with_counts(model, counts))
        })
        .collect();
    Ok(ids
        .iter()
        .zip(parsed)
        .map(|(id, parsed)| {
            parsed
                .and_then(|parsed| found.get(&parsed.0).cloned())
                .ok_or_else(|| ApiError::not_found(id))
        })
        .collect())
}

/// The line each status lookup logs.
pub(crate) fn log_lookup(user: UserId, model: &deployment::Model, counts: health::ReplicaCounts) {
    // The message as a plain `&str` field (see `executor::reported`).
    tracing::info!(
        message = "status lookup",
        deployment = %model.name,
        user = %user,
        status = ?model.status,
        health = ?counts.health(model.target_replicas),
        replicas_running = counts.running,
        replicas_target = model.target_replicas,
    );
}

/// Read queries on deployments.
#[derive(Debug, Default)]
pub struct DeploymentQuery;

#[Object]
impl DeploymentQuery {
    /// One of your deployments by id. A missing, foreign, deleted or malformed
    /// id gives null and a `NOT_FOUND` error.
    #[graphql(complexity = "10 + child_complexity")]
    async fn deployment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The deployment's id.")] id: ID,
    ) -> Result<Option<Deployment>> {
        let found = lookup_each(ctx, std::slice::from_ref(&id)).await?;
        Ok(null_on_error(ctx, found.and_then(|found| one(found, &id)).map(Some)))
    }
}
