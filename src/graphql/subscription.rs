//! `deploymentUpdated`: a deployment's state now and after every change.

use std::time::SystemTime;

use async_graphql::{Context, ErrorExtensions, ID, Result, ResultExt, Subscription};
use futures_util::{Stream, StreamExt};
use sea_orm::DatabaseConnection;

use super::{
    deployment::{Deployment, fetch_fresh, parse_id},
    prefetch,
};
use crate::{auth::AuthUser, error::ApiError, live};

/// When the connection's token stops being honoured; its subscriptions end then.
#[derive(Debug, Clone, Copy)]
pub struct SessionExpiry(pub SystemTime);

/// Live updates of your deployments.
#[derive(Debug, Default)]
pub struct DeploymentSubscription;

#[Subscription]
impl DeploymentSubscription {
    /// The deployment's current state, then its state again whenever it, its
    /// replicas, its resources or its status history change (bursts are
    /// coalesced to at most one message per 100 ms; the last state always
    /// arrives). Deleting the deployment ends the subscription with a
    /// `NOT_FOUND` error, and it ends when the connection's token expires.
    async fn deployment_updated(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The deployment to watch.")] id: ID,
    ) -> Result<impl Stream<Item = Result<Deployment>> + use<>> {
        let user = *ctx.data::<AuthUser>()?;
        let db = ctx.data::<DatabaseConnection>()?.clone();
        let feed = ctx.data::<live::ChangeFeed>()?;
        let expiry = ctx.data_opt::<SessionExpiry>().map(|e| e.0);
        let mut plan = prefetch::plan(&[ctx.look_ahead()]);
        plan.counts = true;
        let uuid = parse_id(&id).extend()?;
        // Subscribe before reading, so no change between the two is missed.
        let changes = feed.subscribe();
        let first = fetch_fresh(&db, user, &id, &plan).await.extend()?;
        let updates = live::watch::updates(uuid, first, changes, move || {
            let (db, id, plan) = (db.clone(), id.clone(), plan.clone());
            async move { fetch_fresh(&db, user, &id, &plan).await }
        });
        let ends = until(expiry);
        Ok(updates.map(|state| state.map_err(|err: ApiError| err.extend())).take_until(ends))
    }
}

/// Resolves at `expiry`, or never.
async fn until(expiry: Option<SystemTime>) {
    match expiry {
        Some(at) => {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}
