//! Runs the operations of one authenticated session, whichever transport
//! carried them, and reports each: its metrics, one log line, its span,
//! and the request id in the `extensions` of every error it answers with.

mod once;

use std::{sync::Arc, time::Instant};

use crate::db::{Db, Reads, Target};
use async_graphql::{
    ErrorExtensions, Executor, ID, Name, PathSegment, Pos, Request, Response, ServerError, Value,
    futures_util::stream::{self, BoxStream, StreamExt},
    registry::Registry,
};
use tracing::Instrument;

use self::once::Once;
use super::{
    Documents,
    direct::{Compiled, ListPage, ListRead, StatusRead},
    document::{OperationInfo, Prepared},
    gated, registry,
};
use crate::graphql::{AppSchema, connection::ListRequest, deployment, loaders, mutation};
use crate::{
    auth::Session,
    error::{ApiError, codes},
    idempotency::{self, IdempotencyKey, IdempotencyKeys},
    live::ChangeFeed,
    service::deployments,
    telemetry::{Metrics, OperationOutcome, Refusal, RequestId, Scope},
    webhooks::Webhooks,
};

/// Each operation gets the database, the change feed, the user and a
/// loader set of its own, and none runs once the token expired. A query
/// reads where `reads` sends the user's reads (a replica within the bound,
/// or the primary); a mutation reads and writes the primary.
#[derive(Clone)]
pub struct SessionExecutor {
    schema: AppSchema,
    documents: Arc<Documents>,
    reads: Reads,
    feed: ChangeFeed,
    metrics: Metrics,
    session: Session,
    timeout: Option<std::time::Duration>,
    /// When the request was admitted: its timeout counts from here (the
    /// wait for a slot included); none, from when the operation runs.
    admitted: Option<Instant>,
    /// Where mutations write; none on a read-only server.
    writes: Option<mutation::Writes>,
    /// The answers of mutations sent with an idempotency key.
    idempotency: Arc<IdempotencyKeys>,
    /// Webhook settings; none where no one configured them (the tests'
    /// executors), and the webhook fields then fail.
    webhooks: Option<Arc<Webhooks>>,
}

impl std::fmt::Debug for SessionExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionExecutor").field("session", &self.session).finish_non_exhaustive()
    }
}

impl SessionExecutor {
    pub fn new(
        schema: AppSchema,
        documents: Arc<Documents>,
        reads: Reads,
        feed: ChangeFeed,
        metrics: Metrics,
        session: Session,
    ) -> Self {
        let writes = Some(mutation::Writes { db: reads.primary().clone(), file: None });
        Self {
            schema,
            documents,
            reads,
            feed,
            metrics,
            session,
            timeout: None,
            admitted: None,
            writes,
            idempotency: Arc::default(),
            webhooks: None,
        }
    }

    /// Records and replays mutations sent with an idempotency key in `keys`.
    #[must_use]
    pub fn with_idempotency(mut self, keys: Arc<IdempotencyKeys>) -> Self {
        self.idempotency = keys;
        self
    }

    /// Webhook settings for the webhook fields.
    #[must_use]
    pub fn with_webhooks(mut self, webhooks: Arc<Webhooks>) -> Self {
        self.webhooks = Some(webhooks);
        self
    }

    /// Bounds each query or mutation (`REQUEST_TIMEOUT`): past it the
    /// client gets `SERVICE_UNAVAILABLE` (a database that stopped
    /// answering), not a hang.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same executor for a request admitted at `at` (before it waited
    /// for a slot): one deadline covers the slot, the connection and the
    /// statements.
    #[must_use]
    pub fn admitted_at(mut self, at: Instant) -> Self {
        self.admitted = Some(at);
        self
    }

    /// Where mutations write (`None`: they answer `READ_ONLY_MODE`).
    #[must_use]
    pub fn with_writes(mut self, writes: Option<mutation::Writes>) -> Self {
        self.writes = writes;
        self
    }

    /// Attaches what resolvers need to one operation, reading through `db`;
    /// the loaders live only as long as this operation, so their cache
    /// never serves another.
    fn prepare(&self, request: Request, scope: &Arc<Scope>, db: &Db) -> Request {
        let request = match &self.writes {
            Some(writes) => request.data(writes.clone()),
            None => request,
        };
        let request = match &self.webhooks {
            Some(webhooks) => request.data(webhooks.clone()),
            None => request,
        };
        request
            .data(db.clone())
            .data(self.reads.clone())
            .data(self.feed.clone())
            .data(self.session.user)
            .data(loaders::for_request(db.clone(), scope.clone()))
    }

    /// Where an operation of `kind` reads: a mutation on the primary (its
    /// payload shows what it wrote), anything else where the user's reads go.
    fn reading_for(&self, kind: &str) -> Db {
        match kind {
            "mutation" => self.reads.primary().clone(),
            _ => self.reads.for_user(self.session.user.0),
        }
    }

    /// After an operation of `kind` ran `statements` through `db`: counts
    /// the read, remembers a mutation (so the user's next reads here see
    /// it), and says where it read.
    fn finished(&self, kind: &str, db: &Db, statements: u64) -> Option<Target> {
        if kind == "mutation" {
            self.reads.wrote(self.session.user.0);
        }
        (statements > 0).then(|| self.reads.served(db))
    }

    fn expired(&self) -> Option<Response> {
        self.session.is_expired().then(|| {
            let err = ApiError::Unauthenticated {
                refusal: crate::auth::TokenRefusal::Expired,
                message: "the connection's bearer token expired".to_owned(),
            };
            Response::from_errors(vec![coded_error(&err)])
        })
    }

    /// Runs one query or mutation within the operation timeout, validated in
    /// full unless its document already was (see `Documents::validated_schema`).
    async fn run(
        &self,
        request: Request,
        prepared: &Prepared,
        registry: Option<&Registry>,
        scope: &Arc<Scope>,
        db: &Db,
    ) -> Response {
        let schema =
            self.documents.validated_schema(prepared, &request, registry).unwrap_or(&self.schema);
        let run = scope.clone().run(schema.execute(self.prepare(request, scope, db)));
        self.within_timeout(run).await.unwrap_or_else(|timed_out| timed_out)
    }

    /// `work`'s output, or past the operation timeout the answer saying so.
    async fn within_timeout<T>(&self, work: impl Future<Output = T>) -> Result<T, Response> {
        let Some(timeout) = self.timeout else { return Ok(work.await) };
        let spent = self.admitted.map_or(std::time::Duration::ZERO, |at| at.elapsed());
        tokio::time::timeout(timeout.saturating_sub(spent), work).await.map_err(|_| {
            self.metrics.refused(Refusal::OperationTimeout);
            let err = ApiError::Unavailable(Arc::new(sea_orm::DbErr::Custom(format!(
                "the request took longer than its {timeout:?} (REQUEST_TIMEOUT)"
            ))));
            Response::from_errors(vec![coded_error(&err)])
        })
    }

    /// Answers a compiled status read (see `direct`): its planned statement,
    /// then the response written from the row, or the response holding the
    /// error (not found, the database's) as the resolver reports it.
    async fn read_status(&self, read: &StatusRead, id: &ID, scope: &Arc<Scope>, db: &Db) -> Answer {
        let user = self.session.user;
        let fetch = async {
            let Ok(parsed) = deployment::parse_id(id) else { return Ok(Vec::new()) };
            deployments::find_each(db, user, &[parsed], read.plan()).await
        };
        let found = match self.within_timeout(scope.clone().run(fetch)).await {
            Ok(found) => found,
            Err(timed_out) => return Answer::Response(timed_out),
        };
        // `deployment` and `node` are nullable: the error nulls the field.
        let failed = |err: ApiError| {
            let root = read.root();
            let data = Value::Object([(Name::new(&root.key), Value::Null)].into_iter().collect());
            failed(data, &err, &[root.key.as_str()], root.position)
        };
        let (model, prefetched) = match found.map(|rows| rows.into_iter().next()) {
            Ok(Some(row)) => row,
            Ok(None) => return failed(ApiError::not_found(id)),
            Err(err) => return failed(err),
        };
        deployment::log_lookup(user, &model, prefetched.counts.unwrap_or_default());
        written(read.write(&model, &prefetched), failed)
    }

    /// Answers a compiled list read (see `direct`): the page's statement and,
    /// when selected, the count's, then the response written from the rows;
    /// an error nulls the whole (non-null) connection, hence the data.
    async fn read_list(
        &self,
        read: &ListRead,
        request: ListRequest,
        scope: &Arc<Scope>,
        db: &Db,
    ) -> Answer {
        let ListRequest { filter, first, after } = request;
        let root = read.root();
        let fetch = async {
            let page = deployments::list_page(db, &filter, first, after, read.plan())
                .await
                .map_err(|err| (err, None))?;
            let total_count = match read.total_count() {
                Some(position) => Some(
                    deployments::count(db, &filter).await.map_err(|err| (err, Some(position)))?,
                ),
                None => None,
            };
            Ok(ListPage { page, has_previous_page: after.is_some(), total_count })
        };
        let read_page = match self.within_timeout(scope.clone().run(fetch)).await {
            Ok(Ok(page)) => page,
            Ok(Err((err, None))) => return failed(Value::Null, &err, &[&root.key], root.position),
            Ok(Err((err, Some(position)))) => {
                return failed(Value::Null, &err, &[&root.key, "totalCount"], position);
            }
            Err(timed_out) => return Answer::Response(timed_out),
        };
        written(read.write(&read_page), |err| {
            failed(Value::Null, &err, &[&root.key], root.position)
        })
    }

    /// Reports an answered operation: metrics, the log line, the request id
    /// in its errors.
    fn answered(
        &self,
        info: OperationInfo,
        response: &mut Response,
        started: Instant,
        statements: u64,
        target: Option<Target>,
    ) {
        self.reported(info, outcome(response), started, statements, target);
        tag_errors(response, RequestId::current().as_ref());
    }

    /// Counts an operation's outcome in the metrics and logs its line
    /// (with the server its statements ran on, if any ran).
    fn reported(
        &self,
        info: OperationInfo,
        outcome: String,
        started: Instant,
        statements: u64,
        target: Option<Target>,
    ) {
        if let Some(refusal) = refusal(&outcome) {
            self.metrics.refused(refusal);
        }
        let duration = started.elapsed();
        let request_id = RequestId::current();
        // The message as a plain `&str` field: a literal message is otherwise
        // written through `core::fmt`, which costs more than the line's rest.
        tracing::info!(
            message = "graphql operation",
            request_id = request_id.as_ref().map(RequestId::as_str),
            user = %self.session.user.0,
            operation_name = info.name.as_deref().unwrap_or("anonymous"),
            operation_type = info.kind,
            document_id = info.document_id.as_deref(),
            duration_ms = duration.as_secs_f64() * 1e3,
            statements,
            db = target.map(Target::as_str),
            outcome = outcome.as_str(),
        );
        self.metrics.operation(OperationOutcome {
            name: info.name,
            document_id: info.document_id,
            kind: info.kind,
            outcome,
            duration,
        });
    }
}

impl SessionExecutor {
    /// The request's document prepared, or the answer refusing it (an
    /// expired session, a document over the bounds or unparsable), already
    /// reported.
    fn prepare_or_refuse(
        &self,
        request: &mut Request,
        started: Instant,
    ) -> Result<Prepared, Box<Response>> {
        let mut refusal = match self.expired() {
            Some(refusal) => refusal,
            None => match self.documents.prepare(request) {
                Ok(prepared) => return Ok(prepared),
                Err(refusal) => Response::from_errors(vec![refusal]),
            },
        };
        self.answered(OperationInfo::unknown(request), &mut refusal, started, 0, None);
        Err(Box::new(refusal))
    }

    /// Runs a prepared query or mutation through async-graphql.
    async fn execute_prepared(
        &self,
        mut request: Request,
        prepared: &Prepared,
        started: Instant,
    ) -> Response {
        let info = prepared.info();
        let scope = Scope::new(info.entry_point.clone());
        let span = operation_span(&info);
        prepared.attach(&mut request);
        let page_size = prepared.page_size(&request.variables);
        let registry = registry().await;
        let db = self.reading_for(info.kind);
        let mut response =
            self.run(request, prepared, registry, &scope, &db).instrument(span).await;
        prepared.complete(&mut response, registry, page_size);
        let target = self.finished(info.kind, &db, scope.statements());
        self.answered(info, &mut response, started, scope.statements(), target);
        response
    }

    /// Answers a compiled read without async-graphql (see `direct`).
    async fn answer_directly(
        &self,
        read: Direct<'_>,
        prepared: &Prepared,
        started: Instant,
    ) -> Answer {
        let info = prepared.info();
        let scope = Scope::new(info.entry_point.clone());
        let span = operation_span(&info);
        let db = self.reading_for(info.kind);
        self.metrics.direct_read();
        let answer = async {
            match read {
                Direct::Status(read, id) => self.read_status(read, &id, &scope, &db).await,
                Direct::List(read, request) => self.read_list(read, request, &scope, &db).await,
            }
        };
        let answer = answer.instrument(span).await;
        let target = self.finished(info.kind, &db, scope.statements());
        match answer {
            Answer::Written(written) | Answer::Replayed(written) => {
                self.reported(info, "ok".to_owned(), started, scope.statements(), target);
                Answer::Written(written)
            }
            Answer::Response(mut response) => {
                self.answered(info, &mut response, started, scope.statements(), target);
                Answer::Response(response)
            }
        }
    }

    /// What `direct` answers of `request`, if anything: a compiled read
    /// whose variables plainly fit and whose arguments the resolver would
    /// take (its errors are async-graphql's to write).
    fn direct<'p>(&self, prepared: &'p Prepared, request: &Request) -> Option<Direct<'p>> {
        match prepared.compiled()? {
            Compiled::Status(read) => Some(Direct::Status(read, read.id(&request.variables)?)),
            Compiled::List(read) => {
                let arguments = read.arguments(&request.variables)?;
                Some(Direct::List(read, arguments.check(self.session.user).ok()?))
            }
        }
    }
}

impl SessionExecutor {
    /// The idempotency key `request` runs with, if it is a mutation that
    /// gives one (`extensions.idempotencyKey`; HTTP puts its header there);
    /// the refusal of a malformed key, or of a mutation without one when
    /// keys are required. Queries and subscriptions ignore keys.
    fn keyed(
        &self,
        request: &Request,
        prepared: &Prepared,
    ) -> Result<Option<IdempotencyKey>, Box<Response>> {
        if !prepared.is_mutation() {
            return Ok(None);
        }
        let refuse = |code: &str, message: String| {
            let mut error = ServerError::new(message, None);
            error.extensions.get_or_insert_with(Default::default).set("code", code);
            let mut response = Response::from_errors(vec![error]);
            tag_errors(&mut response, RequestId::current().as_ref());
            Box::new(response)
        };
        match request.extensions.get(idempotency::EXTENSION) {
            None | Some(Value::Null) if self.idempotency.required() => Err(refuse(
                codes::IDEMPOTENCY_KEY_REQUIRED,
                "this server requires an idempotency key on every mutation \
                 (IDEMPOTENCY_KEY_REQUIRED): send `Idempotency-Key: \"<uuid>\"`"
                    .to_owned(),
            )),
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(key)) => IdempotencyKey::new(key.clone())
                .map(Some)
                .map_err(|message| refuse(codes::BAD_REQUEST, message)),
            Some(_) => Err(refuse(
                codes::BAD_REQUEST,
                "extensions.idempotencyKey must be a string".to_owned(),
            )),
        }
    }
}

/// A read `direct` answers, with the request's arguments.
enum Direct<'p> {
    Status(&'p StatusRead, ID),
    List(&'p ListRead, ListRequest),
}

/// The response holding `err` at `path` (its field at `position`), with
/// `data` as the error leaves it.
fn failed(data: Value, err: &ApiError, path: &[&str], position: Pos) -> Answer {
    let mut error = err.extend().into_server_error(position);
    error.path = path.iter().map(|key| PathSegment::Field((*key).to_owned())).collect();
    let mut response = Response::new(data);
    response.errors.push(error);
    Answer::Response(response)
}

/// The answer `direct` wrote, or the one `failed` gives if it could not.
fn written(written: std::io::Result<Vec<u8>>, failed: impl FnOnce(ApiError) -> Answer) -> Answer {
    match written {
        Ok(written) => Answer::Written(written),
        Err(err) => {
            tracing::error!(error = %err, "cannot write a compiled read's response");
            failed(ApiError::Internal(Arc::new(sea_orm::DbErr::Custom(err.to_string()))))
        }
    }
}

/// An operation's answer: a response, or the JSON of one already written
/// (a status read answered directly, see `direct`; a mutation's recorded
/// answer), or a mutation's answer recorded before, replayed.
#[derive(Debug)]
pub enum Answer {
    Response(Response),
    Written(Vec<u8>),
    Replayed(Vec<u8>),
}

impl SessionExecutor {
    /// Whether `request` runs a subscription (see [`Documents::is_subscription`]).
    pub fn is_subscription(&self, request: &mut Request) -> bool {
        self.documents.is_subscription(request)
    }

    /// Runs one query or mutation: directly when it is a compiled status
    /// read (see `direct`), otherwise through async-graphql.
    pub async fn answer(&self, mut request: Request) -> Answer {
        let started = Instant::now();
        let prepared = match self.prepare_or_refuse(&mut request, started) {
            Ok(prepared) => prepared,
            Err(refusal) => return Answer::Response(*refusal),
        };
        match self.keyed(&request, &prepared) {
            Ok(None) => {}
            Ok(Some(key)) => {
                return match self.once(request, &prepared, key, started).await {
                    Once::Ran(_, answer) => Answer::Written(answer),
                    Once::Replayed(answer) => Answer::Replayed(answer),
                    Once::Answered(response) => Answer::Response(response),
                };
            }
            Err(refused) => return Answer::Response(*refused),
        }
        match self.direct(&prepared, &request) {
            Some(read) => self.answer_directly(read, &prepared, started).await,
            None => Answer::Response(self.execute_prepared(request, &prepared, started).await),
        }
    }
}

impl Executor for SessionExecutor {
    async fn execute(&self, mut request: Request) -> Response {
        let started = Instant::now();
        let prepared = match self.prepare_or_refuse(&mut request, started) {
            Ok(prepared) => prepared,
            Err(refusal) => return *refusal,
        };
        match self.keyed(&request, &prepared) {
            Ok(None) => self.execute_prepared(request, &prepared, started).await,
            Ok(Some(key)) => match self.once(request, &prepared, key, started).await {
                Once::Ran(response, _) | Once::Answered(response) => response,
                Once::Replayed(answer) => once::replayed(&answer),
            },
            Err(refused) => *refused,
        }
    }

    fn execute_stream(
        &self,
        mut request: Request,
        _connection: Option<Arc<async_graphql::Data>>,
    ) -> BoxStream<'static, Response> {
        let started = Instant::now();
        let prepared = match self.prepare_or_refuse(&mut request, started) {
            Ok(prepared) => prepared,
            Err(refusal) => return stream::once(async move { *refusal }).boxed(),
        };
        let info = prepared.info();
        let scope = Scope::new(info.entry_point.clone());
        let span = operation_span(&info);
        prepared.attach(&mut request);
        // A subscription reads through `Reads` itself, per fetch.
        let db = self.reads.primary().clone();
        let responses = self.schema.execute_stream(self.prepare(request, &scope, &db));
        let responses =
            stream::once(async move { prepared.complete_stream(responses, registry().await) })
                .flatten()
                .boxed();
        // The subscription counts as answered with its first message (its
        // refusal, or its first state); each message after is counted.
        let (executor, mut info, poll_scope) = (self.clone(), Some(info), scope.clone());
        let responses = responses.map(move |mut response| {
            match info.take() {
                Some(info) => {
                    executor.answered(info, &mut response, started, scope.statements(), None);
                }
                None => tag_errors(&mut response, RequestId::current().as_ref()),
            }
            executor.metrics.live_message_sent();
            response
        });
        let mut responses = responses.boxed();
        let scoped = stream::poll_fn(move |cx| {
            let _entered = span.enter();
            poll_scope.enter(|| responses.poll_next_unpin(cx))
        });
        // Polled only when woken: a socket polls all its streams on any wake.
        gated::Gated::new(scoped.boxed()).boxed()
    }
}

/// The span of one operation, named as tracing UIs show GraphQL operations.
fn operation_span(info: &OperationInfo) -> tracing::Span {
    let name = info.name.as_deref().unwrap_or("anonymous");
    tracing::info_span!(
        target: crate::telemetry::TRACES_TARGET,
        "graphql",
        otel.name = format_args!("{} {name}", info.kind),
        graphql.operation.name = name,
        graphql.operation.type = info.kind,
        graphql.document.id = info.document_id.as_deref(),
    )
}

/// Adds the request's id to the `extensions` of each of `response`'s errors.
fn tag_errors(response: &mut Response, id: Option<&RequestId>) {
    if let Some(id) = id {
        for error in &mut response.errors {
            error.extensions.get_or_insert_default().set("requestId", id.as_str());
        }
    }
}

/// `ok`, or the first error's code.
fn outcome(response: &Response) -> String {
    let Some(error) = response.errors.first() else { return "ok".to_owned() };
    match error.extensions.as_ref().and_then(|extensions| extensions.get("code")) {
        Some(Value::String(code)) => code.clone(),
        _ => "INTERNAL_SERVER_ERROR".to_owned(),
    }
}

/// The refusal an outcome stands for, if it is one.
fn refusal(outcome: &str) -> Option<Refusal> {
    Some(match outcome {
        codes::QUERY_TOO_DEEP => Refusal::QueryTooDeep,
        codes::QUERY_TOO_COMPLEX => Refusal::QueryTooComplex,
        codes::TOO_MANY_ALIASES => Refusal::TooManyAliases,
        codes::TOO_MANY_SUBSCRIPTIONS => Refusal::TooManySubscriptions,
        "UNAUTHENTICATED" => Refusal::Unauthenticated,
        _ => return None,
    })
}

fn coded_error(err: &ApiError) -> ServerError {
    let mut error = ServerError::new(err.to_string(), None);
    error.extensions = err.extend().extensions;
    error
}
