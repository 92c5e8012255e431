//! Executing documents against the schema (`graphql`): parsing and
//! caching them, bounding and validating them, the compiled status read,
//! completing responses, and running one session's operations. It depends
//! on the schema; the schema knows nothing of it.
//!
//! A request's path, top to bottom: `executor::SessionExecutor::answer`
//! takes the request; `document::Documents::prepare` parses it (or finds
//! it cached), checks its `bounds` and `refusals`, coerces its `variables`
//! and, once the document validated in full, compiles it (`direct`); then
//! either `direct` answers it straight from the planned statement's row, or
//! async-graphql executes it and `completion` puts the response in
//! selection order with GraphQL's null propagation.

mod bounds;
mod completion;
mod direct;
mod document;
mod executor;
mod gated;
mod known;
mod refusals;
mod tokens;
mod variables;

use std::sync::Arc;

use async_graphql::{Request, SchemaEnv, ValidationMode, registry::Registry};

pub use self::{
    document::Documents,
    executor::{Answer, SessionExecutor},
    known::DocumentCheck,
};
use crate::{config::Limits, graphql::schema_builder};

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
            let twin = schema_builder(Limits::default())
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

/// The id a request named its persisted document by, put in the request's
/// data by whatever resolved it to text: its log line, span and metrics
/// name the document by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentId(pub Arc<str>);

impl DocumentId {
    /// The id `request`'s document was named by, if any.
    pub fn of(request: &Request) -> Option<&Self> {
        request.data.get(&std::any::TypeId::of::<Self>())?.downcast_ref()
    }
}

/// Whether every operation of `request`'s document selects introspection
/// fields only (`__schema`, `__type`, `__typename`): what GraphiQL and
/// schema tools send. A document over the token bound, or that does not
/// parse, does not.
pub fn reads_only_introspection(request: &mut Request, limits: &Limits) -> bool {
    use async_graphql::parser::types::Selection;
    if tokens::too_many_tokens(&request.query, limits.tokens) {
        return false;
    }
    let Ok(document) = request.parsed_query() else { return false };
    document.operations.iter().all(|(_, operation)| {
        operation.node.selection_set.node.items.iter().all(|item| match &item.node {
            Selection::Field(field) => {
                let name = field.node.name.node.as_str();
                name == "__typename" || bounds::INTROSPECTION_ROOTS.contains(&name)
            }
            Selection::FragmentSpread(_) | Selection::InlineFragment(_) => false,
        })
    })
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
