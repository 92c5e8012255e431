//! The GraphQL schema: one module per domain, merged at the root.

mod bounds;
mod completion;
pub mod connection;
pub mod deployment;
mod direct;
mod document;
mod executor;
mod fields;
mod gated;
pub mod loaders;
pub mod mutation;
pub mod node;
mod prefetch;
mod refusals;
pub mod subscription;
mod tokens;
pub mod types;
mod variables;

use std::sync::Arc;

use async_graphql::{
    Context, ErrorExtensions, MergedObject, MergedSubscription, Request, SDLExportOptions, Schema,
    SchemaBuilder, SchemaEnv, ServerError, ValidationMode, registry::Registry,
};

pub use self::{
    document::Documents,
    executor::{Answer, SessionExecutor},
    mutation::Writes,
};
use crate::{config::Limits, error::ApiError};

/// Reads: your deployments, one or a page at a time, and Relay's `node`.
#[derive(MergedObject, Default, Debug)]
pub struct Query(deployment::DeploymentQuery, connection::ListQuery, node::NodeQuery);

/// Changes to your deployments.
#[derive(MergedObject, Default, Debug)]
pub struct Mutation(mutation::DeploymentMutation);

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

fn schema_builder(limits: Limits) -> SchemaBuilder<Query, Mutation, Subscription> {
    // Depth is bounded by `document`, which measures introspection apart
    // (async-graphql's own limit would refuse every standard tool's query).
    Schema::build(Query::default(), Mutation::default(), Subscription::default())
        .limit_complexity(limits.complexity)
        .limit_recursive_depth(32)
        .limit_directives(limits.directives)
}

/// What checks and completes documents around execution, for `limits`. It
/// holds a twin of the schema that runs only async-graphql's cost
/// measurements, not its validation rules, for documents validated in full
/// before (see [`Documents::validated_schema`]).
pub fn documents(limits: Limits) -> Arc<Documents> {
    let validated = schema_builder(limits).validation_mode(ValidationMode::Fast).finish();
    Arc::new(Documents::new(limits, validated))
}

/// The schema's type registry, which response completion reads. async-graphql
/// hands it only to extensions, and installing one would put every field's
/// resolution through the extension chain; so it is taken, once, from a twin
/// of the schema (the same types, hence the same registry) whose only
/// extension looks at it. `None` only if async-graphql stopped calling the
/// `request` hook: responses then keep async-graphql's own key order.
async fn registry() -> Option<&'static Registry> {
    static REGISTRY: tokio::sync::OnceCell<Option<SchemaEnv>> = tokio::sync::OnceCell::const_new();
    let env = REGISTRY
        .get_or_init(|| async {
            let seen = Arc::new(std::sync::Mutex::new(None));
            let twin =
                Schema::build(Query::default(), Mutation::default(), Subscription::default())
                    .extension(registry_capture::Capture(seen.clone()))
                    .finish();
            twin.execute("{ __typename }").await;
            seen.lock().ok().and_then(|mut seen| seen.take())
        })
        .await;
    env.as_ref().map(|env| &env.registry)
}

/// Refuses to serve without the schema's registry (see [`registry`]):
/// responses would lose their key order, null propagation and fast
/// validation without a word.
pub async fn require_registry() -> Result<(), String> {
    match registry().await {
        Some(_) => Ok(()),
        None => Err("cannot read the schema's registry (async-graphql no longer calls an \
                     extension's request hook): responses could not be completed, so this \
                     build does not serve"
            .to_owned()),
    }
}

mod registry_capture {
    use std::sync::{Arc, Mutex};

    use async_graphql::{
        Response, SchemaEnv,
        extensions::{Extension, ExtensionContext, ExtensionFactory, NextRequest},
    };

    pub(super) struct Capture(pub(super) Arc<Mutex<Option<SchemaEnv>>>);

    impl ExtensionFactory for Capture {
        fn create(&self) -> Arc<dyn Extension> {
            Arc::new(Capture(self.0.clone()))
        }
    }

    #[async_graphql::async_trait::async_trait]
    impl Extension for Capture {
        async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
            if let Ok(mut seen) = self.0.lock() {
                *seen = Some(ctx.schema_env.clone());
            }
            next.run(ctx).await
        }
    }
}

/// What a request will cost, measured before it runs (see `bounds`); a
/// document that does not parse costs nothing here: executing it reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// SQL statements it would run.
    pub statements: u64,
    /// Whether it reads `__schema` or `__type`.
    pub introspects: bool,
}

/// The cost of `request`, parsing it once (execution reuses the parse).
pub fn cost(request: &mut Request) -> Cost {
    match request.parsed_query() {
        Ok(document) => bounds::measure(document).map_or_else(Cost::default, |(measured, _)| {
            Cost { statements: measured.statements, introspects: measured.introspection > 0 }
        }),
        Err(_) => Cost::default(),
    }
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
