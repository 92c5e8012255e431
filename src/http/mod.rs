//! HTTP and WebSocket transport: GraphQL over HTTP (`graphql`), GraphQL over
//! WebSocket (`ws`), GraphiQL for browsers, CORS, liveness, readiness and
//! metrics.

mod cors;
mod database_health;
mod graphiql;
mod graphql;
mod media;
mod metrics;
mod observe;
mod request;
mod server;
mod session;
mod slots;
mod ws;

pub use self::{
    metrics::{MetricsAccess, metrics_router},
    server::{GoingAway, ServerLimits},
};

use self::database_health::{DatabaseHealth, Outcome};

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    middleware,
    response::{IntoResponse, Response},
    routing::get,
};
use sea_orm::{ConnectionTrait, DbBackend};
use tokio::net::TcpListener;
use tower_http::{cors::CorsLayer, timeout::RequestBodyTimeoutLayer};

use async_graphql::parser::types::ExecutableDocument;

use crate::{
    auth::{JwtKeys, Session},
    config::{Limits, WebhooksConfig},
    db::{Access, Db, FileWatch, Reads},
    engine::{Documents, SessionExecutor, documents},
    error::StorageFault,
    graphql::{AppSchema, Writes, build_schema, build_schema_with},
    idempotency::IdempotencyKeys,
    live::ChangeFeed,
    persisted::{PersistedDocuments, manifest::Manifests, store::Store},
    telemetry::{Metrics, RequestId},
    webhooks::Webhooks,
};

/// How long a request body may take to arrive unless configured otherwise.
const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler shares: a handle, cheap to clone, since the
/// middleware and each extractor take their own copy for every request.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

/// What an [`AppState`] holds.
#[derive(Clone)]
pub struct SharedState {
    pub schema: AppSchema,
    documents: Arc<Documents>,
    pub db: Db,
    /// Where queries read: `db`, or replicas within the bound.
    reads: Reads,
    pub keys: Arc<JwtKeys>,
    /// GraphiQL's page; none when introspection is off.
    graphiql: Option<Arc<str>>,
    /// Documents requests name by id, and whether only those run.
    persisted: Arc<PersistedDocuments>,
    /// The answers of mutations sent with an idempotency key.
    pub idempotency: Arc<IdempotencyKeys>,
    /// Webhook settings, and the deliverer's wake-up.
    pub webhooks: Arc<Webhooks>,
    pub metrics: Metrics,
    slots: Arc<slots::Slots>,
    body_read_timeout: Duration,
    cors: Option<CorsLayer>,
    limits: Limits,
    going_away: GoingAway,
    /// Bounds an operation's whole run (see `db::DbTimeouts`); none in tests.
    operation_timeout: Option<Duration>,
    /// What `/readyz` pings: a pool of its own in production.
    readiness: Db,
    database: Arc<DatabaseHealth>,
    pub feed: ChangeFeed,
    metrics_access: MetricsAccess,
    /// Whether this server writes (mutations, and `/readyz`'s write probe).
    access: Access,
    /// A served SQLite file's permissions (see `db::FileWatch`).
    file: Option<Arc<FileWatch>>,
}

impl AppState {
    /// `graphiql_token`, when given, fills GraphiQL's Headers tab (dev mode).
    /// `metrics` are the ones the statement counter installed on `db` reports in
    /// (see `db::StatementCounter::metrics`); `/metrics` serves them.
    pub fn new(
        db: impl Into<Db>,
        keys: JwtKeys,
        graphiql_token: Option<&str>,
        metrics: Metrics,
    ) -> Self {
        let db = db.into();
        let registrations = db.clone();
        Self(Arc::new(SharedState {
            schema: build_schema(),
            documents: documents(Limits::default()),
            // Without a change reader (`with_change_reader`, which the
            // server uses), SQLite mutations publish their own changes.
            feed: ChangeFeed::new(db.get_database_backend() != DbBackend::Postgres),
            readiness: db.clone(),
            reads: Reads::primary_only(db.clone(), metrics.clone()),
            db,
            keys: Arc::new(keys),
            graphiql: Some(graphiql::page(graphiql_token).into()),
            idempotency: Arc::default(),
            webhooks: Arc::new(Webhooks::new(Default::default(), metrics.clone())),
            persisted: Arc::new(PersistedDocuments::new(
                Manifests::default(),
                Some(Store::new(registrations, true, crate::config::DEFAULT_PERSISTED_QUERIES)),
                true,
                Limits::default(),
                metrics.clone(),
            )),
            slots: Arc::new(slots::Slots::new(
                Limits::default().in_flight,
                Limits::default().in_flight_per_user,
                Limits::default().queue_timeout,
                metrics.clone(),
            )),
            metrics,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            cors: None,
            limits: Limits::default(),
            going_away: GoingAway::default(),
            operation_timeout: None,
            database: Arc::default(),
            metrics_access: MetricsAccess::Open,
            access: Access::ReadWrite,
            file: None,
        }))
    }

    /// Serves reads only when `access` says so: mutations answer
    /// `READ_ONLY_MODE`, and `/readyz` pings rather than probes a write.
    #[must_use]
    pub fn with_access(mut self, access: Access, file: Option<Arc<FileWatch>>) -> Self {
        let shared = Arc::make_mut(&mut self.0);
        shared.access = access;
        shared.database = Arc::new(DatabaseHealth::watching(file.clone()));
        shared.file = file;
        self
    }

    /// Sends queries where `reads` says (replicas within their bound); its
    /// primary must be this state's database.
    #[must_use]
    pub fn with_reads(mut self, reads: Reads) -> Self {
        Arc::make_mut(&mut self.0).reads = reads;
        self
    }

    /// Sets who may read `/metrics` on the API's listener (anyone unless set).
    #[must_use]
    pub fn with_metrics_access(mut self, access: MetricsAccess) -> Self {
        Arc::make_mut(&mut self.0).metrics_access = access;
        self
    }

    /// Bounds each operation by `request_timeout` (a slot, a connection and
    /// its statements), and answers `/readyz` through `readiness`, a pool of
    /// its own.
    #[must_use]
    pub fn with_database_timeouts(mut self, request_timeout: Duration, readiness: Db) -> Self {
        let shared = Arc::make_mut(&mut self.0);
        shared.operation_timeout = Some(request_timeout);
        shared.readiness = readiness;
        self
    }

    /// Takes changes from a change reader only (the server runs one on
    /// either backend), rather than from this app's own mutations too.
    #[must_use]
    pub fn with_change_reader(mut self) -> Self {
        let shared = Arc::make_mut(&mut self.0);
        shared.feed = ChangeFeed::with(false, shared.limits);
        self
    }

    /// Applies `limits`: documents (and batches in total), bodies, slots.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        let shared = Arc::make_mut(&mut self.0);
        shared.schema = build_schema_with(limits);
        shared.documents = documents(limits);
        shared.limits = limits;
        shared.feed =
            ChangeFeed::with(shared.db.get_database_backend() != DbBackend::Postgres, limits);
        self.with_slots(limits.in_flight, Some(limits.in_flight_per_user), limits.queue_timeout)
    }

    /// Sets how many GraphQL requests execute at once (at least 1), a
    /// quarter of them for one user unless `per_user` says otherwise, and how
    /// long a request waits for its slot before it is refused.
    #[must_use]
    pub fn with_slots(
        mut self,
        max_in_flight: usize,
        per_user: Option<usize>,
        queue_timeout: Duration,
    ) -> Self {
        let per_user = per_user.unwrap_or(max_in_flight / 4);
        let metrics = self.metrics.clone();
        let shared = Arc::make_mut(&mut self.0);
        shared.slots = Arc::new(slots::Slots::new(max_in_flight, per_user, queue_timeout, metrics));
        shared.limits.in_flight = max_in_flight;
        shared.limits.in_flight_per_user = per_user;
        shared.limits.queue_timeout = queue_timeout;
        self
    }

    /// Sets how long a request body may take to arrive (408 after).
    #[must_use]
    pub fn with_body_read_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.0).body_read_timeout = timeout;
        self
    }

    /// What tells this app's WebSockets that the server is going away.
    pub fn going_away(&self) -> GoingAway {
        self.going_away.clone()
    }

    /// Lets browsers on `origins` (`*`: any) call /graphql, and any
    /// `http://localhost:*` or `http://127.0.0.1:*` origin when `allow_local`.
    #[must_use]
    pub fn with_cors(mut self, origins: &[String], allow_local: bool) -> Self {
        Arc::make_mut(&mut self.0).cors = cors::layer(origins, allow_local);
        self
    }

    /// Serves `persisted` documents; `known` are the trusted manifests'
    /// documents, checked in full, which the engine keeps parsed and
    /// validated for good (after [`Self::with_limits`], which starts the
    /// engine's documents over). Without `graphiql`, GET /graphql serves no
    /// GraphiQL page (introspection is off).
    #[must_use]
    pub fn with_persisted(
        mut self,
        persisted: PersistedDocuments,
        known: Vec<(String, ExecutableDocument)>,
        graphiql: bool,
    ) -> Self {
        let shared = Arc::make_mut(&mut self.0);
        shared.documents.pin(known);
        shared.persisted = Arc::new(persisted);
        if !graphiql {
            shared.graphiql = None;
        }
        self
    }

    /// Records and replays mutations sent with an idempotency key as `keys` say.
    #[must_use]
    pub fn with_idempotency(mut self, keys: IdempotencyKeys) -> Self {
        Arc::make_mut(&mut self.0).idempotency = Arc::new(keys);
        self
    }

    /// Webhooks as `config` says.
    #[must_use]
    pub fn with_webhooks(mut self, config: WebhooksConfig) -> Self {
        let metrics = self.metrics.clone();
        Arc::make_mut(&mut self.0).webhooks = Arc::new(Webhooks::new(config, metrics));
        self
    }

    /// Runs the operations of `session`.
    fn executor(&self, session: Session) -> SessionExecutor {
        let executor = SessionExecutor::new(
            self.schema.clone(),
            self.documents.clone(),
            self.reads.clone(),
            self.feed.clone(),
            self.metrics.clone(),
            session,
        )
        .with_timeout(self.operation_timeout)
        .with_idempotency(self.idempotency.clone())
        .with_webhooks(self.webhooks.clone());
        let writes = (self.access == Access::ReadWrite)
            .then(|| Writes { db: self.db.clone(), file: self.file.clone() });
        executor.with_writes(writes)
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState").finish_non_exhaustive()
    }
}

pub fn router(state: AppState) -> Router {
    // Slow bodies are cut off here; slots are taken in the handlers, once a
    // request is authenticated and read (see `slots`).
    let mut graphql = get(graphql::get)
        .post(graphql::post)
        .layer(RequestBodyTimeoutLayer::new(state.body_read_timeout));
    // Outside the limit, so preflights never queue behind work.
    if let Some(cors) = state.cors.clone() {
        graphql = graphql.layer(cors);
    }
    Router::new()
        .route("/graphql", graphql)
        // Any origin: the token travels in `connection_init`, never in a
        // cookie, so a foreign page gains nothing from the socket.
        .route("/graphql/ws", get(ws::upgrade))
        .route("/graphiql/{version}/{name}", get(graphiql::asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::guarded))
        .layer(middleware::from_fn_with_state(state.clone(), observe::observe))
        .with_state(state)
}

/// Serves `router` on `listener` with the default connection limits until
/// `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (limits, going_away) = (ServerLimits::default(), GoingAway::default());
    server::serve(listener, router, limits, going_away, Metrics::default(), shutdown).await
}

/// Serves `state`'s app on `listener` within `limits` until `shutdown`
/// resolves, then drains it (see [`server::serve`]).
pub async fn serve_app(
    listener: TcpListener,
    state: AppState,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (going_away, metrics) = (state.going_away(), state.metrics.clone());
    server::serve(listener, router(state), limits, going_away, metrics, shutdown).await
}

/// Alive: answers without touching the database.
async fn healthz() -> &'static str {
    "ok"
}

/// Ready: 200 while the database answers, through a connection of its own,
/// so a request pool busy with slow queries does not read as "down" (which
/// would pull every instance out of a load balancer at once).
async fn readyz(State(state): State<AppState>) -> Response {
    if !state.keys.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "identity provider keys not loaded")
            .into_response();
    }
    let file_read_only = state.file.as_ref().is_some_and(|file| file.is_read_only());
    if let Some(fault) = state.database.storage_fault() {
        return no_writes(fault);
    }
    if file_read_only {
        state.database.record(Outcome::Storage(StorageFault::ReadOnly), &state.db);
        return no_writes(StorageFault::ReadOnly);
    }
    // A writing server is ready when the database takes a write (a full
    // disk or a primary turned standby do not).
    let check = async {
        match state.access {
            Access::ReadWrite => crate::db::probe_write(&state.readiness).await,
            Access::ReadOnly => state.readiness.ping().await,
        }
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(err)) if let Some(fault) = StorageFault::of(&err) => {
            state.database.record(Outcome::Storage(fault), &state.db);
            no_writes(fault)
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database timed out").into_response(),
    }
}

/// `/readyz`'s answer while the database takes no writes.
fn no_writes(fault: StorageFault) -> Response {
    let message = format!("database takes no writes: {}", fault.reason());
    (StatusCode::SERVICE_UNAVAILABLE, message).into_response()
}

/// A JSON error body as GraphQL clients read it: one error with its
/// message, its `extensions` and the request's id.
pub(crate) fn error_body(message: &str, extensions: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "errors": [error_object(message, extensions)] })
}

/// One GraphQL error object, with the request's id in its `extensions`.
pub(crate) fn error_object(message: &str, extensions: serde_json::Value) -> serde_json::Value {
    let mut extensions = match extensions {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    if let Some(id) = RequestId::current() {
        extensions.insert("requestId".into(), id.as_str().into());
    }
    serde_json::json!({ "message": message, "extensions": extensions })
}
