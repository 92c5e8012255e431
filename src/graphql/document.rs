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
    ErrorExtensionValues, Positioned, Request, Response, ServerError, ServerResult,
    ValidationResult, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
        NextPrepareRequest, NextSubscribe, NextValidation,
    },
    futures_util::stream::{BoxStream, StreamExt},
    parser::types::{DocumentOperations, ExecutableDocument, OperationDefinition, OperationType},
    registry::Registry,
};

use super::{bounds, completion::Completion};
use crate::{
    config::Limits,
    error::{codes, echo},
};

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

/// A parsed document and the verdict of [`check`] on it, cached together:
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
                if bounds::too_many_tokens(&request.query, self.limits.tokens) {
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

/// Refuses a document past any of `limits`, with a code saying which.
pub(super) fn check(document: &ExecutableDocument, limits: &Limits) -> Result<(), ServerError> {
    let refuse = |code: &str, message: String| Err(coded(ServerError::new(message, None), code));
    let Some((measured, aliases)) = bounds::measure(document) else {
        return refuse(
            codes::QUERY_TOO_DEEP,
            format!(
                "Query is nested too deep: fragments spread more than {} levels down",
                bounds::MAX_FRAGMENT_NESTING
            ),
        );
    };
    // Messages are built eagerly: a verdict is cached with its document.
    let (m, l) = (&measured, limits);
    let checks = [
        (
            m.depth > l.depth,
            codes::QUERY_TOO_DEEP,
            format!("Query is nested too deep: {} levels, at most {}", m.depth, l.depth),
        ),
        (
            m.depth_any > l.introspection_depth,
            codes::QUERY_TOO_DEEP,
            format!(
                "Introspection is nested too deep: {} levels, at most {}",
                m.depth_any, l.introspection_depth
            ),
        ),
        (
            m.fields > l.fields,
            codes::QUERY_TOO_COMPLEX,
            format!(
                "Query is too complex: {} field selections once fragments are expanded, at most {}",
                m.fields, l.fields
            ),
        ),
        (
            aliases > l.aliases,
            codes::TOO_MANY_ALIASES,
            format!("{aliases} aliases, at most {}", l.aliases),
        ),
        (
            m.top_fields > l.root_fields,
            codes::QUERY_TOO_COMPLEX,
            format!(
                "Query is too complex: {} root fields, at most {}",
                m.top_fields, l.root_fields
            ),
        ),
        (
            m.introspection > l.introspections,
            codes::QUERY_TOO_COMPLEX,
            format!(
                "Query is too complex: {} `__schema`/`__type` selections, at most {} per operation",
                m.introspection, l.introspections
            ),
        ),
        (
            m.statements > l.statements_per_request,
            codes::QUERY_TOO_COMPLEX,
            format!(
                "Query is too complex: it would run {} SQL statements, at most {}",
                m.statements, l.statements_per_request
            ),
        ),
    ];
    match checks.into_iter().find(|(exceeded, ..)| *exceeded) {
        Some((_, code, message)) => refuse(code, message),
        None => Ok(()),
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
            .boxed()
    }
}

/// The operation a request runs, by the GraphQL spec's rules.
pub(super) fn operation<'d>(
    document: &'d ExecutableDocument,
    name: Option<&str>,
) -> Result<&'d Positioned<OperationDefinition>, ServerError> {
    let resolution = |message: String| {
        coded(ServerError::new(message, None), codes::OPERATION_RESOLUTION_FAILURE)
    };
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), None) => Ok(operation),
        (DocumentOperations::Single(_), Some(name)) => Err(resolution(format!(
            "the document has no operation named `{}`: its one operation is anonymous",
            echo(name)
        ))),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).ok_or_else(|| {
                resolution(format!("the document has no operation named `{}`", echo(name)))
            })
        }
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations
            .values()
            .next()
            .ok_or_else(|| resolution("the document has no operation".into())),
        (DocumentOperations::Multiple(operations), None) => Err(resolution(format!(
            "the document has {} operations; say which to run with `operationName`",
            operations.len()
        ))),
    }
}

/// A parse error as one line: what the parser expected, and where.
fn syntax_error(err: ServerError) -> ServerError {
    // The parsers' nesting bounds (`limit_recursive_depth`, the parser's own)
    // are no syntax errors.
    if err.message.contains("recursion") {
        let message = "Query is nested too deep for the parser: at most 32 levels of braces,                        lists and objects";
        return coded(ServerError::new(message, None), codes::QUERY_TOO_DEEP);
    }
    // pest's message is a drawing of the line with a caret; what matters is
    // its last `= ...` line.
    let expected = err
        .message
        .lines()
        .rev()
        .find_map(|line| line.trim_start().strip_prefix("= "))
        .unwrap_or_else(|| err.message.lines().find(|l| !l.trim().is_empty()).unwrap_or(""))
        .trim()
        .to_owned();
    let message = match err.locations.first() {
        Some(at) => format!("Syntax error at {}:{}: {expected}", at.line, at.column),
        None => format!("Syntax error: {expected}"),
    };
    coded(ServerError { message, ..err }, codes::GRAPHQL_PARSE_FAILED)
}

/// A validation error with its code, and where it is in the message too.
fn validation_error(err: ServerError) -> ServerError {
    if has_code(&err) {
        return err;
    }
    // async-graphql's own cost check (list fields cost their page size).
    if err.message == "Query is too complex." {
        let message = format!("Query is too complex: its cost passes {}", super::MAX_COMPLEXITY);
        return coded(ServerError { message, ..err }, codes::QUERY_TOO_COMPLEX);
    }
    let said = bounded_quotes(err.message.trim_end_matches('.'));
    let message = match err.locations.first() {
        Some(at) => format!("{said} at {}:{}", at.line, at.column),
        None => said,
    };
    coded(ServerError { message, ..err }, codes::GRAPHQL_VALIDATION_FAILED)
}

/// async-graphql quotes names and values from the document in `"..."`;
/// each quote keeps at most 64 characters of it.
fn bounded_quotes(message: &str) -> String {
    let mut parts = message.split('"');
    let mut bounded = parts.next().unwrap_or_default().to_owned();
    for (n, part) in parts.enumerate() {
        bounded.push('"');
        bounded.push_str(&if n % 2 == 0 { echo(part) } else { part.to_owned() });
    }
    bounded
}

fn has_code(err: &ServerError) -> bool {
    err.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some())
}

fn coded(mut err: ServerError, code: &str) -> ServerError {
    if !has_code(&err) {
        err.extensions.get_or_insert_with(ErrorExtensionValues::default).set("code", code);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_read_as_one_line() {
        let err = async_graphql::parser::parse_query("{ deployments { ")
            .map(|_| ())
            .map_err(ServerError::from);
        let Err(err) = err else { panic!("a syntax error") };
        let err = syntax_error(err);
        assert!(!err.message.contains('\n'), "{}", err.message);
        assert!(err.message.starts_with("Syntax error at 1:"), "{}", err.message);
        assert!(err.message.contains("expected"), "{}", err.message);
    }

    #[test]
    fn quoted_input_in_messages_is_bounded() {
        let long = "x".repeat(1000);
        let message = bounded_quotes(&format!(r#"Unknown field "{long}" on type "Query""#));
        assert_eq!(message.chars().count(), r#"Unknown field "" on type "Query""#.len() + 65);
        assert!(message.ends_with(r#"…" on type "Query""#), "{message}");
    }

    #[test]
    fn operation_resolution_follows_the_spec() -> Result<(), String> {
        let two = async_graphql::parser::parse_query("query A { a } query B { b }")
            .map_err(|e| e.to_string())?;
        assert!(operation(&two, Some("B")).is_ok());
        assert!(operation(&two, None).is_err());
        assert!(operation(&two, Some("C")).is_err());
        let one = async_graphql::parser::parse_query("query A { a }").map_err(|e| e.to_string())?;
        assert!(operation(&one, None).is_ok());
        Ok(())
    }
}
