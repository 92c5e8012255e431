//! The GraphQL schema: one module per domain, merged at the root.

pub mod connection;
pub mod deployment;
pub mod loaders;
pub mod mutation;
mod parse_cache;
mod prefetch;
pub mod subscription;
pub mod types;

use async_graphql::{Context, ErrorExtensions, MergedObject, MergedSubscription, Request, Schema};
use sea_orm::DatabaseConnection;

use crate::{auth::AuthUser, error::ApiError, live::ChangeFeed};

/// Deepest selection nesting accepted.
pub const MAX_DEPTH: usize = 12;
/// Largest query cost accepted; list fields cost their page size times their selection.
pub const MAX_COMPLEXITY: usize = 10_000;
/// Most directives accepted on one field.
pub const MAX_DIRECTIVES: usize = 8;

/// Reads: your deployments, one or a page at a time.
#[derive(MergedObject, Default, Debug)]
pub struct Query(deployment::DeploymentQuery);

/// Changes to your deployments.
#[derive(MergedObject, Default, Debug)]
pub struct Mutation(mutation::DeploymentMutation);

/// Live updates of your deployments, over WebSocket at /graphql/ws.
#[derive(MergedSubscription, Default, Debug)]
pub struct Subscription(subscription::DeploymentSubscription);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// The schema with its limits; it holds no data and opens no connection, so
/// `deployql schema` and the drift test need no database.
pub fn build_schema() -> AppSchema {
    Schema::build(Query::default(), Mutation::default(), Subscription::default())
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(32)
        .limit_directives(MAX_DIRECTIVES)
        .extension(parse_cache::ParseCache::default())
        .finish()
}

/// Attaches what resolvers need to one operation: the database, the user,
/// and a loader set that lives only as long as this operation.
pub fn for_user(
    request: Request,
    db: &DatabaseConnection,
    feed: &ChangeFeed,
    user: AuthUser,
) -> Request {
    request.data(db.clone()).data(feed.clone()).data(user).data(loaders::for_request(db.clone()))
}

/// Resolves a nullable field to null when it fails, reporting the error at the
/// field's path. (Returning `Err` would drop the field from `data` instead.)
pub(crate) fn null_on_error<T>(
    ctx: &Context<'_>,
    result: Result<Option<T>, ApiError>,
) -> Option<T> {
    result.unwrap_or_else(|err| {
        ctx.add_error(ctx.set_error_path(err.extend().into_server_error(ctx.item.pos)));
        None
    })
}
