//! The GraphQL schema, what the API is: its types and their resolvers,
//! the loaders behind them, one module per domain, merged at the root.
//! How documents are executed against it is `engine`'s.

pub mod connection;
pub mod deployment;
pub(crate) mod fields;
pub mod loaders;
pub mod mutation;
pub mod node;
mod prefetch;
pub mod subscription;
pub mod types;
pub mod webhook;

use async_graphql::{
    Context, ErrorExtensions, MergedObject, MergedSubscription, SDLExportOptions, Schema,
    SchemaBuilder, ServerError,
};

pub use self::mutation::Writes;
use crate::{config::Limits, error::ApiError};

/// Reads: your deployments, one or a page at a time, Relay's `node`, and
/// your webhook endpoints.
#[derive(MergedObject, Default, Debug)]
pub struct Query(
    deployment::DeploymentQuery,
    connection::ListQuery,
    node::NodeQuery,
    webhook::WebhookQuery,
);

/// Changes to your deployments and webhook endpoints.
#[derive(MergedObject, Default, Debug)]
pub struct Mutation(mutation::DeploymentMutation, webhook::WebhookMutation);

/// Live updates of your deployments, over WebSocket at /graphql/ws.
#[derive(MergedSubscription, Default, Debug)]
pub struct Subscription(subscription::DeploymentSubscription);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// The schema with the default limits; it holds no data and opens no
/// connection, so `deployql schema` and the drift test need no database.
pub fn build_schema() -> AppSchema {
    build_schema_with(Limits::default())
}

/// The schema with `limits`.
pub fn build_schema_with(limits: Limits) -> AppSchema {
    schema_builder(limits).finish()
}

pub(crate) fn schema_builder(limits: Limits) -> SchemaBuilder<Query, Mutation, Subscription> {
    // Depth is bounded by `document`, which measures introspection apart
    // (async-graphql's own limit would refuse every standard tool's query).
    Schema::build(Query::default(), Mutation::default(), Subscription::default())
        .limit_complexity(limits.complexity)
        .limit_recursive_depth(32)
        .limit_directives(limits.directives)
}

/// The schema's SDL as served by introspection, `@specifiedBy` included:
/// what `deployql schema` prints and `schema.graphql` holds.
pub fn sdl() -> String {
    build_schema().sdl_with_options(SDLExportOptions::new().include_specified_by())
}

/// Resolves a nullable field to null when it fails, reporting the error at the
/// field's path. (Returning `Err` would drop the field from `data` instead.)
pub(crate) fn null_on_error<T>(
    ctx: &Context<'_>,
    result: Result<Option<T>, ApiError>,
) -> Option<T> {
    result.unwrap_or_else(|err| {
        report(ctx, &err, None);
        None
    })
}

/// Reports `err` at the current field's path, or at item `index` of its list.
pub(crate) fn report(ctx: &Context<'_>, err: &ApiError, index: Option<usize>) {
    let mut error: ServerError = ctx.set_error_path(err.extend().into_server_error(ctx.item.pos));
    if let Some(index) = index {
        error.path.push(async_graphql::PathSegment::Index(index));
    }
    ctx.add_error(error);
}
