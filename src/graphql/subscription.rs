//! `deploymentUpdated`: a deployment's state now and after every change.

use crate::db::Reads;
use async_graphql::{Context, ErrorExtensions, ID, Result, ResultExt, Subscription};
use futures_util::{Stream, StreamExt};

use super::{
    deployment::{Deployment, fetch_fresh, parse_id},
    prefetch,
};
use crate::{error::ApiError, ids::UserId, live};

/// Live updates of your deployments.
#[derive(Debug, Default)]
pub struct DeploymentSubscription;

#[Subscription]
impl DeploymentSubscription {
    /// The deployment's current state, then its state again whenever it, its
    /// replicas, its resources or its status history change (bursts are
    /// coalesced to at most one message per 100 ms; the last state always
    /// arrives). Deleting the deployment ends the subscription with a
    /// `NOT_FOUND` error; when the connection's token expires the server
    /// closes the socket (4403).
    async fn deployment_updated(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The deployment to watch.")] id: ID,
    ) -> Result<impl Stream<Item = Result<Deployment>> + use<>> {
        let user = *ctx.data::<UserId>()?;
        let reads = ctx.data::<Reads>()?.clone();
        let feed = ctx.data::<live::ChangeFeed>()?;
        let mut plan = prefetch::plan(&[ctx.look_ahead()]);
        plan.counts = true;
        let uuid = parse_id(&id).extend()?;
        // Subscriptions of this user to this deployment with this plan share
        // one refetch per change (see `live::watch`).
        let key = live::GroupKey { user, deployment: uuid.0, selection: format!("{plan:?}") };
        // A refetch reads a replica only if it holds the change that woke it.
        let refetch = {
            let (reads, id, plan) = (reads.clone(), id.clone(), plan.clone());
            move |changed: std::time::Instant| {
                let (reads, id, plan) = (reads.clone(), id.clone(), plan.clone());
                async move {
                    let db = reads.after(user.0, changed);
                    let fresh = fetch_fresh(&db, user, &id, &plan).await;
                    reads.served(&db);
                    fresh
                }
            }
        };
        // Join before reading, so no change between the two is missed.
        let watching = feed.router().watch(key, refetch).extend()?;
        let db = reads.for_user(user.0);
        let first = fetch_fresh(&db, user, &id, &plan).await;
        reads.served(&db);
        let first = first.extend()?;
        Ok(watching.updates(first).map(|state| state.map_err(|err: ApiError| err.extend())))
    }
}
