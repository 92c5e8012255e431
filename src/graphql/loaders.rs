//! Per-request DataLoaders. A loader lives for one request only: its cache
//! holds one user's rows and must never serve another request.

use std::{collections::HashMap, hash::Hash, sync::Arc, time::Duration};

use crate::db::Db;
use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use entity::{
    deployment_replica as replica, deployment_resources as resources,
    deployment_status_history as history,
};
use uuid::Uuid;

use crate::{
    error::ApiError,
    ids::DeploymentId,
    service::{
        health::ReplicaCounts,
        plan::{self, Plan, Prefetched},
    },
    telemetry::{CarriedRequest, Scope},
};

/// Every replica of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplicasOf(pub Uuid);

/// A deployment's resource allocation, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourcesOf(pub Uuid);

/// A deployment's replica counts per status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CountsOf(pub Uuid);

/// A deployment's newest `limit` status changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HistoryOf {
    pub id: Uuid,
    pub limit: u64,
}

/// Batches each key type into one SQL statement per request tick.
#[derive(Debug)]
pub struct DeploymentLoader {
    db: Db,
}

pub type Loaders = DataLoader<DeploymentLoader, HashMapCache>;

/// A fresh loader set for one request.
pub fn for_request(db: Db, scope: Arc<Scope>) -> Loaders {
    // The cache lets the look-ahead prefetch serve the nested resolvers. The
    // prefetch hands each relation's keys over in one `load_many`, so waiting
    // for more keys (the default 1 ms) would only add latency; keys that
    // sibling resolvers register in the same poll still share a batch.
    // Loads run in tasks of their own, in the operation's scope, so their
    // statements count as the operation's, and as the request's, so their
    // log lines and spans name it.
    let spawn = move |load| tokio::spawn(CarriedRequest::current().run(scope.clone().run(load)));
    DataLoader::with_cache(DeploymentLoader { db }, spawn, HashMapCache::default())
        .delay(Duration::ZERO)
}

impl DeploymentLoader {
    /// What `plan` asks for of the deployments in `keys`, by id: the
    /// planner's statement on just these rows. Every key gets an entry
    /// (`pick` sees `None` for a deployment with nothing found), so a
    /// deployment without replicas, say, is cached too.
    async fn load_each<K: Copy + Eq + Hash, V>(
        &self,
        keys: &[K],
        id: impl Fn(K) -> Uuid,
        plan: Plan,
        pick: impl Fn(K, Option<&Prefetched>) -> V,
    ) -> Result<HashMap<K, V>, ApiError> {
        let mut ids: Vec<DeploymentId> = keys.iter().map(|k| DeploymentId(id(*k))).collect();
        ids.sort_unstable();
        ids.dedup();
        let found: HashMap<Uuid, Prefetched> =
            plan::relations_of(&self.db, &plan, &ids).await?.into_iter().collect();
        Ok(keys.iter().map(|&k| (k, pick(k, found.get(&id(k))))).collect())
    }
}

impl Loader<ReplicasOf> for DeploymentLoader {
    type Value = Vec<replica::Model>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[ReplicasOf],
    ) -> Result<HashMap<ReplicasOf, Self::Value>, ApiError> {
        let plan = Plan { replicas: true, ..Plan::default() };
        self.load_each(
            keys,
            |k| k.0,
            plan,
            |_, found| found.and_then(|p| p.replicas.clone()).unwrap_or_default(),
        )
        .await
    }
}

impl Loader<ResourcesOf> for DeploymentLoader {
    /// `None` (cached like any value) when the deployment has no resources row.
    type Value = Option<resources::Model>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[ResourcesOf],
    ) -> Result<HashMap<ResourcesOf, Self::Value>, ApiError> {
        let plan = Plan { resources: true, ..Plan::default() };
        self.load_each(keys, |k| k.0, plan, |_, found| found.and_then(|p| p.resources.clone()?))
            .await
    }
}

impl Loader<CountsOf> for DeploymentLoader {
    type Value = ReplicaCounts;
    type Error = ApiError;

    async fn load(&self, keys: &[CountsOf]) -> Result<HashMap<CountsOf, Self::Value>, ApiError> {
        let plan = Plan { counts: true, ..Plan::default() };
        // Deployments without replicas get zero counts.
        self.load_each(
            keys,
            |k| k.0,
            plan,
            |_, found| found.and_then(|p| p.counts).unwrap_or_default(),
        )
        .await
    }
}

impl Loader<HistoryOf> for DeploymentLoader {
    type Value = Vec<history::Model>;
    type Error = ApiError;

    async fn load(&self, keys: &[HistoryOf]) -> Result<HashMap<HistoryOf, Self::Value>, ApiError> {
        // One statement at the largest limit asked for; smaller limits take a prefix.
        let max = keys.iter().map(|k| k.limit).max().unwrap_or(0);
        let plan = Plan { history_limits: vec![max], ..Plan::default() };
        self.load_each(
            keys,
            |k| k.id,
            plan,
            |key, found| {
                let mut changes = found.and_then(|p| p.history.clone()).unwrap_or_default();
                changes.truncate(usize::try_from(key.limit).unwrap_or(usize::MAX));
                changes
            },
        )
        .await
    }
}
