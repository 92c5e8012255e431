//! What happens to a document around execution:
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

use std::sync::{
    Arc, Mutex, OnceLock,
    atomic::{AtomicBool, Ordering},
};

use foldhash::HashMap;

use async_graphql::{
    Request, Response, ServerError, Value,
    futures_util::stream::{BoxStream, StreamExt},
    parser::types::{DocumentOperations, ExecutableDocument, OperationType, Selection},
    registry::Registry,
};

use super::{
    DocumentId,
    completion::Completion,
    direct::Compiled,
    refusals::{check, coded, has_code, operation, syntax_error, validation_error},
    tokens, variables,
};
use crate::{config::Limits, error::codes, graphql::AppSchema};

/// Distinct documents kept; when full the cache starts over, so hot
/// documents come straight back and junk cannot pin memory.
const CACHE_CAPACITY: usize = 128;
/// Longer documents are parsed every time rather than held in memory.
const MAX_CACHED_QUERY_BYTES: usize = 4096;

/// The documents this server has seen (parsed, measured and checked once
/// per distinct text) and the limits they are held to. Not an async-graphql
/// extension: an installed extension puts the resolution of every field of
/// every response through the extension chain, which cost more CPU than the
/// status lookup's SQL; [`super::SessionExecutor`] calls these around
/// execution instead.
pub struct Documents {
    cache: Mutex<HashMap<String, Arc<Checked>>>,
    /// Documents known from the start (see [`Documents::pin`]): never
    /// evicted, so a persisted document is parsed and validated once.
    pinned: OnceLock<HashMap<String, Arc<Checked>>>,
    limits: Limits,
    validated_schema: AppSchema,
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// A parsed document and the verdict of `refusals::check` on it, cached together:
/// a document sent again is neither parsed nor measured again.
#[derive(Debug)]
pub(super) struct Checked {
    document: ExecutableDocument,
    verdict: Result<(), ServerError>,
    /// It has passed all of async-graphql's validation rules once. Only
    /// for a document of one operation, which every request of it runs.
    validated: AtomicBool,
    /// The document compiled for answering directly (see `direct`); used
    /// once it has passed validation.
    compiled: OnceLock<Option<Compiled>>,
}

/// The document and operation of a request about to run: what completes its
/// responses.
#[derive(Debug)]
pub(super) struct Prepared {
    checked: Arc<Checked>,
    /// The request holds the document already (it was parsed from it).
    parsed: bool,
    operation_name: Option<String>,
    document_id: Option<Arc<str>>,
}

impl Documents {
    pub(crate) fn new(limits: Limits, validated_schema: AppSchema) -> Self {
        Self { cache: Mutex::default(), pinned: OnceLock::new(), limits, validated_schema }
    }

    /// Keeps `documents` (text and parse, each checked in full by
    /// [`super::DocumentCheck`]) for the life of the process, as validated:
    /// a request for one never parses or validates it again. Once only;
    /// `false` if documents were pinned before.
    pub fn pin(&self, documents: impl IntoIterator<Item = (String, ExecutableDocument)>) -> bool {
        let pinned = documents
            .into_iter()
            .map(|(text, document)| {
                let verdict = check(&document, &self.limits);
                // As `Prepared::complete` marks it: one operation, which
                // every request of the document runs.
                let single = operation(&document, None).is_ok();
                let checked = Checked {
                    document,
                    verdict,
                    validated: AtomicBool::new(single),
                    compiled: OnceLock::new(),
                };
                (text, Arc::new(checked))
            })
            .collect();
        self.pinned.set(pinned).is_ok()
    }

    /// The schema to run `request` with when it need not be validated in
    /// full: its document passed every rule before, and the verdict of
    /// those rules depends on the document alone, except that of
    /// `ArgumentsOfCorrectType`, which also reads the variables; so its
    /// variables must plainly fit their declared types. Validation was
    /// about 6 % of a status lookup's CPU. `None`: run the full schema.
    pub(super) fn validated_schema(
        &self,
        prepared: &Prepared,
        request: &Request,
        registry: Option<&Registry>,
    ) -> Option<&AppSchema> {
        if !prepared.checked.validated.load(Ordering::Relaxed) {
            return None;
        }
        let operation = operation(&prepared.checked.document, None).ok()?;
        variables::plainly_valid(registry?, &operation.node, &request.variables)
            .then_some(&self.validated_schema)
    }

    /// Whether `request` runs a query, as GET may (a mutation over GET could
    /// be replayed by a link or a crawler). A document that does not parse
    /// or names no operation counts as a query: executing it reports the error.
    pub fn is_query(&self, request: &mut Request) -> bool {
        self.operation_type(request).is_none_or(|ty| ty == OperationType::Query)
    }

    /// Whether `request` runs a subscription (a long-lived stream rather
    /// than one answer).
    pub fn is_subscription(&self, request: &mut Request) -> bool {
        self.operation_type(request) == Some(OperationType::Subscription)
    }

    /// The type of the operation `request` runs, if its document says: from
    /// the cached document when the text was seen before (parsing is the
    /// costly part of a small request), else parsed, within the token bound.
    fn operation_type(&self, request: &mut Request) -> Option<OperationType> {
        let name = request.operation_name.clone();
        let ty = |document: &ExecutableDocument| {
            operation(document, name.as_deref()).ok().map(|operation| operation.node.ty)
        };
        if let Some(checked) = self.cached(&request.query) {
            return ty(&checked.document);
        }
        if tokens::too_many_tokens(&request.query, self.limits.tokens) {
            return None;
        }
        ty(request.parsed_query().ok()?)
    }

    fn cached(&self, query: &str) -> Option<Arc<Checked>> {
        if let Some(pinned) = self.pinned.get().and_then(|pinned| pinned.get(query)) {
            return Some(pinned.clone());
        }
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
    pub(super) fn prepare(&self, request: &mut Request) -> Result<Prepared, ServerError> {
        let (checked, parsed) = match self.cached(&request.query) {
            Some(checked) => (checked, false),
            None => {
                if tokens::too_many_tokens(&request.query, self.limits.tokens) {
                    let message =
                        format!("Query is too complex: more than {} tokens", self.limits.tokens);
                    return Err(coded(ServerError::new(message, None), codes::QUERY_TOO_COMPLEX));
                }
                let document = request.parsed_query().map_err(syntax_error)?.clone();
                let verdict = check(&document, &self.limits);
                let checked = Arc::new(Checked {
                    document,
                    verdict,
                    validated: AtomicBool::new(false),
                    compiled: OnceLock::new(),
                });
                self.cache(&request.query, checked.clone());
                (checked, true)
            }
        };
        checked.verdict.clone()?;
        let operation = operation(&checked.document, request.operation_name.as_deref())?;
        if let Some(missing) = variables::missing(&operation.node, &request.variables) {
            return Err(missing);
        }
        Ok(Prepared {
            checked,
            parsed,
            operation_name: request.operation_name.clone(),
            document_id: DocumentId::of(request).map(|id| id.0.clone()),
        })
    }
}

/// What a request runs, as metrics, log lines and spans name it.
#[derive(Debug, Clone)]
pub(super) struct OperationInfo {
    /// The client's operation name (given, or the document's one name).
    pub(super) name: Option<String>,
    /// `query`, `mutation`, `subscription`, or `unknown` when the document
    /// does not say (it did not parse, or names no operation to run).
    pub(super) kind: &'static str,
    /// `kind.rootField` (the first root field; `.multiple` when several
    /// kinds of root field are selected).
    pub(super) entry_point: String,
    /// The persisted document's id, when the request named it by one.
    pub(super) document_id: Option<Arc<str>>,
}

impl OperationInfo {
    /// A request that failed before its operation was known.
    pub(super) fn unknown(request: &Request) -> Self {
        let document_id = DocumentId::of(request).map(|id| id.0.clone());
        Self::unknown_named(request.operation_name.clone(), document_id)
    }

    fn unknown_named(name: Option<String>, document_id: Option<Arc<str>>) -> Self {
        Self { name, kind: "unknown", entry_point: "unknown".into(), document_id }
    }
}

impl Prepared {
    /// Hands the cached document to `request`, for async-graphql to run
    /// (a copy: a status read answered directly needs none).
    pub(super) fn attach(&self, request: &mut Request) {
        if !self.parsed {
            request.set_parsed_query(self.checked.document.clone());
        }
    }

    /// The document compiled, if it is a read that [`super::direct`]
    /// answers and it passed every validation rule before.
    pub(super) fn compiled(&self) -> Option<&Compiled> {
        if !self.checked.validated.load(Ordering::Relaxed) {
            return None;
        }
        self.compile()
    }

    fn compile(&self) -> Option<&Compiled> {
        self.checked.compiled.get_or_init(|| Compiled::compile(&self.checked.document)).as_ref()
    }

    /// The page size the request asks for with `variables`, if the document
    /// is a list `direct` answers (to [`Self::complete`] with).
    pub(super) fn page_size(&self, variables: &async_graphql::Variables) -> Option<u64> {
        self.compile()?.page_size(variables)
    }

    /// Whether this request runs a mutation.
    pub(super) fn is_mutation(&self) -> bool {
        operation(&self.checked.document, self.operation_name.as_deref())
            .is_ok_and(|operation| operation.node.ty == OperationType::Mutation)
    }

    /// What this request runs.
    pub(super) fn info(&self) -> OperationInfo {
        let document = &self.checked.document;
        let name = self.operation_name.clone().or_else(|| match &document.operations {
            DocumentOperations::Multiple(operations) if operations.len() == 1 => {
                operations.keys().next().map(ToString::to_string)
            }
            _ => None,
        });
        let Ok(operation) = operation(document, self.operation_name.as_deref()) else {
            return OperationInfo::unknown_named(name, self.document_id.clone());
        };
        let kind = match operation.node.ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        };
        let mut fields =
            operation.node.selection_set.node.items.iter().map(|item| match &item.node {
                Selection::Field(field) => field.node.name.node.as_str(),
                Selection::FragmentSpread(_) | Selection::InlineFragment(_) => "fragment",
            });
        let first = fields.next().unwrap_or("none");
        let root = if fields.all(|field| field == first) { first } else { "multiple" };
        OperationInfo {
            name,
            kind,
            entry_point: format!("{kind}.{root}"),
            document_id: self.document_id.clone(),
        }
    }

    /// Codes the request errors async-graphql reported (its parser bounds
    /// and validation), puts the data in selection order and propagates
    /// its errors' nulls. `page_size` is the request's, for a list (see
    /// [`Self::page_size`]): its cost passed validation.
    pub(super) fn complete(
        &self,
        response: &mut Response,
        registry: Option<&Registry>,
        page_size: Option<u64>,
    ) {
        let mut refused = false;
        for error in &mut response.errors {
            // Resolver errors carry a path and a code; what has neither
            // failed before execution.
            if error.path.is_empty() && !has_code(error) {
                refused = true;
                let err = std::mem::replace(error, ServerError::new("", None));
                *error = if err.message.contains("recursion")
                    || err.message.starts_with("The number of directives")
                {
                    syntax_error(err)
                } else {
                    validation_error(err)
                };
            }
        }
        // Named or not, one operation: every request of the document runs it.
        let single = operation(&self.checked.document, None).is_ok();
        if !refused && single {
            if let Some(compiled) = self.compile() {
                compiled.validated(page_size);
            }
            self.checked.validated.store(true, Ordering::Relaxed);
        }
        let Some(registry) = registry else { return };
        let document = &self.checked.document;
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

    /// [`Prepared::complete`] for each response of a subscription; a
    /// subscriber never gets the same result twice in a row (a late
    /// notification of a change a refetch already saw refetches the same state).
    pub(super) fn complete_stream(
        self,
        stream: BoxStream<'static, Response>,
        registry: Option<&'static Registry>,
    ) -> BoxStream<'static, Response> {
        stream
            .map(move |mut response| {
                self.complete(&mut response, registry, None);
                response
            })
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

#[cfg(test)]
mod tests {
    use async_graphql::Variables;
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn a_document_validated_once_skips_the_rules_while_its_variables_plainly_fit() {
        let documents = super::super::documents(Limits::default());
        let registry = super::super::registry().await;
        let query = "query($id: ID!) { deployment(id: $id) { id } }";
        let request = |variables| Request::new(query).variables(Variables::from_json(variables));
        let schema = |request: &mut Request, documents: &Documents| {
            let prepared = documents.prepare(request).expect("prepared");
            let validated = documents.validated_schema(&prepared, request, registry).is_some();
            (prepared, validated)
        };

        let mut first = request(json!({ "id": "a" }));
        let (prepared, validated) = schema(&mut first, &documents);
        assert!(!validated, "validated before any run");
        // A run refused by the rules (here: a variable of the wrong type)
        // marks nothing.
        prepared.complete(
            &mut Response::from_errors(vec![ServerError::new("no", None)]),
            registry,
            None,
        );
        assert!(!schema(&mut request(json!({ "id": "b" })), &documents).1);
        // A run that got past them does.
        prepared.complete(&mut Response::new(Value::Null), registry, None);
        assert!(schema(&mut request(json!({ "id": "b" })), &documents).1);
        assert!(!schema(&mut request(json!({ "id": true })), &documents).1, "a boolean id");
        // A required variable left out is refused before anything runs.
        let refused = documents.prepare(&mut request(json!({}))).err();
        assert!(refused.is_some_and(|err| has_code(&err)), "no id");
    }
}
