//! Turns a query's look-ahead into a fetch [`Plan`], and primes the
//! per-request loaders with what the plan fetched, so nested resolvers find
//! their data without another query and nothing unselected is fetched.

use async_graphql::{Lookahead, Value};
use uuid::Uuid;

use super::loaders::{CountsOf, HistoryOf, Loaders, ReplicasOf, ResourcesOf};
use crate::{
    error::ApiError,
    service::plan::{Plan, Prefetched},
};

/// The plan for the `Deployment` selections given (e.g. both `nodes` and
/// `edges { node }` of a connection).
pub(crate) fn plan(selections: &[Lookahead<'_>]) -> Plan {
    let mut plan = Plan::default();
    for deployment in selections {
        plan.replicas |= deployment.field("replicas").exists();
        plan.resources |= deployment.field("resources").exists();
        plan.counts |=
            deployment.field("health").exists() || deployment.field("replicaCounts").exists();
        for history in deployment.field("statusHistory").selection_fields() {
            let limit = history
                .arguments()
                .ok()
                .and_then(|args| args.into_iter().find(|(name, _)| name == "limit"))
                .map_or(Some(10), |(_, value)| match value {
                    Value::Number(n) => n.as_u64(),
                    _ => None,
                });
            // Out-of-range limits are refused by the resolver; nothing to fetch.
            if let Some(limit) = limit.filter(|l| (1..=100).contains(l))
                && !plan.history_limits.contains(&limit)
            {
                plan.history_limits.push(limit);
            }
        }
    }
    plan
}

/// Feeds what came with the rows into the loaders, then loads what the plan
/// asked for but the backend left out: one batched `load_many` per relation.
pub(crate) async fn prime(
    loaders: &Loaders,
    plan: &Plan,
    rows: &[(Uuid, &Prefetched)],
) -> Result<(), ApiError> {
    let missing = |has: fn(&Prefetched) -> bool| -> Vec<Uuid> {
        rows.iter().filter(|(_, p)| !has(p)).map(|(id, _)| *id).collect()
    };
    if plan.counts {
        let fed = rows.iter().filter_map(|(id, p)| Some((CountsOf(*id), p.counts?)));
        loaders.feed_many(fed).await;
    }
    if plan.replicas {
        let fed = rows.iter().filter_map(|(id, p)| Some((ReplicasOf(*id), p.replicas.clone()?)));
        loaders.feed_many(fed).await;
    }
    if plan.resources {
        let fed = rows.iter().filter_map(|(id, p)| Some((ResourcesOf(*id), p.resources.clone()?)));
        loaders.feed_many(fed).await;
    }
    for &limit in &plan.history_limits {
        let fed = rows.iter().filter_map(|(id, p)| {
            let mut history = p.history.clone()?;
            history.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            Some((HistoryOf { id: *id, limit }, history))
        });
        loaders.feed_many(fed).await;
    }

    let counts = async {
        let ids = if plan.counts { missing(|p| p.counts.is_some()) } else { Vec::new() };
        load(loaders, ids.into_iter().map(CountsOf)).await
    };
    let replicas = async {
        let ids = if plan.replicas { missing(|p| p.replicas.is_some()) } else { Vec::new() };
        load(loaders, ids.into_iter().map(ReplicasOf)).await
    };
    let resources = async {
        let ids = if plan.resources { missing(|p| p.resources.is_some()) } else { Vec::new() };
        load(loaders, ids.into_iter().map(ResourcesOf)).await
    };
    let history = async {
        let ids = missing(|p| p.history.is_some());
        let keys: Vec<HistoryOf> = plan
            .history_limits
            .iter()
            .flat_map(|&limit| ids.iter().map(move |&id| HistoryOf { id, limit }))
            .collect();
        load(loaders, keys).await
    };
    tokio::try_join!(counts, replicas, resources, history).map(|_| ())
}

async fn load<K>(loaders: &Loaders, keys: impl IntoIterator<Item = K>) -> Result<(), ApiError>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    super::loaders::DeploymentLoader: async_graphql::dataloader::Loader<K, Error = ApiError>,
{
    let keys: Vec<K> = keys.into_iter().collect();
    if !keys.is_empty() {
        loaders.load_many(keys).await?;
    }
    Ok(())
}
