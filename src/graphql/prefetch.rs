//! Turns a query's look-ahead into a fetch [`Plan`], and primes the
//! per-request loaders with what the plan fetched, so nested resolvers find
//! their data without another query and nothing unselected is fetched.

use async_graphql::{Lookahead, Value};
use uuid::Uuid;

use super::loaders::{CountsOf, HistoryOf, Loaders, ReplicasOf, ResourcesOf};
use crate::{
    config::Limits,
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
                .map_or(Some(Limits::DEFAULT_HISTORY.unsigned_abs().into()), |(_, value)| {
                    match value {
                        Value::Number(n) => n.as_u64(),
                        _ => None,
                    }
                });
            // Out-of-range limits are refused by the resolver; nothing to fetch.
            if let Some(limit) =
                limit.filter(|l| (1..=Limits::MAX_HISTORY.unsigned_abs().into()).contains(l))
                && !plan.history_limits.contains(&limit)
            {
                plan.history_limits.push(limit);
            }
        }
    }
    plan
}

/// Feeds what came with the rows into the loaders, so nested resolvers find
/// it cached. The planner fetches every relation it plans on both backends,
/// so nothing is left to load here.
pub(crate) async fn prime(loaders: &Loaders, plan: &Plan, rows: &[(Uuid, &Prefetched)]) {
    let fed = rows.iter().filter_map(|(id, p)| Some((CountsOf(*id), p.counts?)));
    loaders.feed_many(fed).await;
    let fed = rows.iter().filter_map(|(id, p)| Some((ReplicasOf(*id), p.replicas.clone()?)));
    loaders.feed_many(fed).await;
    let fed = rows.iter().filter_map(|(id, p)| Some((ResourcesOf(*id), p.resources.clone()?)));
    loaders.feed_many(fed).await;
    for &limit in &plan.history_limits {
        let fed = rows.iter().filter_map(|(id, p)| {
            let mut history = p.history.clone()?;
            history.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            Some((HistoryOf { id: *id, limit }, history))
        });
        loaders.feed_many(fed).await;
    }
}
