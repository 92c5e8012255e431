//! One extension for what happens to a document around execution:
//! - parsed once per distinct text (a frontend sends the same few documents
//!   over and over; parsing was the largest share of a status lookup's CPU);
//! - measured before anything expands it (see `bounds`): depth, with
//!   introspection apart, fields after fragment expansion, aliases, root
//!   fields, introspection and SQL statements;
//! - the operation to run resolved up front, with a clear error when the
//!   request names none or a missing one;
//! - every request error given an `extensions.code` and a one-line message
//!   that says what is wrong and where;
//! - the response's keys put back in selection order.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_graphql::{
    Request, Response, ServerError, ServerResult, ValidationResult, Value, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
        NextPrepareRequest, NextSubscribe, NextValidation,
    },
    futures_util::stream::{BoxStream, StreamExt},
    parser::types::{ExecutableDocument, OperationType},
    registry::Registry,
};

use super::{
    completion::Completion,
    refusals::{check, coded, operation, syntax_error, validation_error},
    tokens,
};
use crate::{config::Limits, error::codes};

/// Distinct documents kept; when full the cache starts over, so hot
/// documents come straight back and junk cannot pin memory.
const CACHE_CAPACITY: usize = 128;
/// Longer documents are parsed every time rather than held in memory.
const MAX_CACHED_QUERY_BYTES: usize = 4096;

/// Creates the per-request [`DocumentExtension`]s; they share one parse cache.
#[derive(Debug)]
pub(super) struct Documents {
    cache: Arc<Mutex<HashMap<String, Arc<Checked>>>>,
    limits: Limits,
}

impl Documents {
    pub(super) fn new(limits: Limits) -> Self {
        Self { cache: Arc::default(), limits }
    }
}

impl ExtensionFactory for Documents {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DocumentExtension {
            cache: self.cache.clone(),
            limits: self.limits,
            request: Arc::default(),
        })
    }
}

/// A parsed document and the verdict of `refusals::check` on it, cached together:
/// a document sent again is neither parsed nor measured again.
#[derive(Debug)]
struct Checked {
    document: ExecutableDocument,
    verdict: Result<(), ServerError>,
}

/// The document and operation name of the request being run.
#[derive(Debug, Default)]
struct RequestDocument {
    document: Option<Arc<Checked>>,
    operation_name: Option<String>,
}

impl RequestDocument {
    /// Puts `response`'s data in selection order and propagates its errors' nulls.
    fn complete(&self, response: &mut Response, registry: &Registry) {
        let Some(checked) = &self.document else { return };
        let document = &checked.document;
        let Ok(operation) = operation(document, self.operation_name.as_deref()) else { return };
        let root = match operation.node.ty {
            OperationType::Query => Some(&registry.query_type),
            OperationType::Mutation => registry.mutation_type.as_ref(),
            OperationType::Subscription => registry.subscription_type.as_ref(),
        };
        let Some(root) = root else { return };
        let completion = Completion::new(registry, &document.fragments, &response.errors);
        let mut data = std::mem::take(&mut response.data);
        completion.complete(&mut data, root, &operation.node.selection_set.node);
        response.data = data;
    }
}

#[derive(Debug)]
struct DocumentExtension {
    cache: Arc<Mutex<HashMap<String, Arc<Checked>>>>,
    limits: Limits,
    request: Arc<Mutex<RequestDocument>>,
}

impl DocumentExtension {
    fn cached(&self, query: &str) -> Option<Arc<Checked>> {
        self.cache.lock().ok()?.get(query).cloned()
    }

    fn cache(&self, query: &str, document: Arc<Checked>) {
        if query.len() <= MAX_CACHED_QUERY_BYTES
            && let Ok(mut cache) = self.cache.lock()
        {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(query.to_owned(), document);
        }
    }

    /// Parses `request` (or takes its document from the cache), bounds it
    /// and resolves its operation, before async-graphql's own checks and
    /// rules, which expand fragments and so must never see a bomb.
    fn prepare(&self, request: &mut Request) -> Result<(), ServerError> {
        let checked = match self.cached(&request.query) {
            Some(checked) => {
                request.set_parsed_query(checked.document.clone());
                checked
            }
            None => {
                if tokens::too_many_tokens(&request.query, self.limits.tokens) {
                    let message =
                        format!("Query is too complex: more than {} tokens", self.limits.tokens);
                    return Err(coded(ServerError::new(message, None), codes::QUERY_TOO_COMPLEX));
                }
                let document = request.parsed_query().map_err(syntax_error)?.clone();
                let verdict = check(&document, &self.limits);
                let checked = Arc::new(Checked { document, verdict });
                self.cache(&request.query, checked.clone());
                checked
            }
        };
        checked.verdict.clone()?;
        let document = &checked.document;
        operation(document, request.operation_name.as_deref())?;
        if let Ok(mut state) = self.request.lock() {
            state.document = Some(checked);
            state.operation_name = request.operation_name.clone();
        }
        Ok(())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for DocumentExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        self.prepare(&mut request)?;
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        // The document is parsed already (see `prepare`); what can fail here
        // is async-graphql's nesting and directive bounds.
        next.run(ctx, query, variables).await.map_err(syntax_error)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| errors.into_iter().map(validation_error).collect())
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        if let Ok(request) = self.request.lock() {
            request.complete(&mut response, &ctx.schema_env.registry);
        }
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let (request, schema) = (self.request.clone(), ctx.schema_env.clone());
        next.run(ctx, stream)
            .map(move |mut response| {
                if let Ok(request) = request.lock() {
                    request.complete(&mut response, &schema.registry);
                }
                response
            })
            // A change whose notification arrives after a refetch already
            // saw it refetches the same state: a subscriber never gets the
            // same result twice in a row.
            .scan(None, |last: &mut Option<(Value, Vec<ServerError>)>, response: Response| {
                let repeated = last.as_ref().is_some_and(|(data, errors)| {
                    *data == response.data && *errors == response.errors
                });
                if !repeated {
                    *last = Some((response.data.clone(), response.errors.clone()));
                }
                std::future::ready(Some((!repeated).then_some(response)))
            })
            .filter_map(std::future::ready)
            .boxed()
    }
}
