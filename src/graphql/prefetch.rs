//! Look-ahead prefetch for a page of deployments: each relation the selection
//! asks for is loaded for the whole page with one `load_many`, so batching
//! does not depend on how the nested resolvers happen to be polled, and
//! nothing the query did not select is fetched.

use async_graphql::{Context, Lookahead, Value};
use uuid::Uuid;

use super::loaders::{CountsOf, HistoryOf, Loaders, ReplicasOf, ResourcesOf};
use crate::error::ApiError;

/// What a selection of `Deployment` fields needs loaded.
#[derive(Debug, Default, PartialEq, Eq)]
struct Wanted {
    replicas: bool,
    resources: bool,
    counts: bool,
    history_limits: Vec<u64>,
}

impl Wanted {
    fn add(&mut self, deployment: &Lookahead<'_>) {
        self.replicas |= deployment.field("replicas").exists();
        self.resources |= deployment.field("resources").exists();
        self.counts |=
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
            // Out-of-range limits are refused by the resolver; nothing to load.
            if let Some(limit) = limit.filter(|l| (1..=100).contains(l)) {
                self.history_limits.push(limit);
            }
        }
    }
}

/// Prefetches what `nodes` and `edges { node }` of a connection select.
pub(crate) async fn page(ctx: &Context<'_>, ids: &[Uuid]) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Ok(());
    }
    let selection = ctx.look_ahead();
    let mut wanted = Wanted::default();
    wanted.add(&selection.field("nodes"));
    wanted.add(&selection.field("edges").field("node"));
    let Ok(loaders) = ctx.data::<Loaders>() else {
        return Ok(());
    };
    load(loaders, ids, &wanted).await
}

async fn load(loaders: &Loaders, ids: &[Uuid], wanted: &Wanted) -> Result<(), ApiError> {
    let replicas = async {
        if wanted.replicas {
            loaders.load_many(ids.iter().copied().map(ReplicasOf)).await?;
        }
        Ok::<_, ApiError>(())
    };
    let resources = async {
        if wanted.resources {
            loaders.load_many(ids.iter().copied().map(ResourcesOf)).await?;
        }
        Ok(())
    };
    let counts = async {
        if wanted.counts {
            loaders.load_many(ids.iter().copied().map(CountsOf)).await?;
        }
        Ok(())
    };
    let history = async {
        if !wanted.history_limits.is_empty() {
            let mut history_keys = Vec::with_capacity(ids.len() * wanted.history_limits.len());
            for &limit in &wanted.history_limits {
                history_keys.extend(ids.iter().map(|&id| HistoryOf { id, limit }));
            }
            loaders.load_many(history_keys).await?;
        }
        Ok(())
    };
    tokio::try_join!(replicas, resources, counts, history).map(|_| ())
}
