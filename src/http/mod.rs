//! HTTP and WebSocket transport: GraphQL over HTTP (`graphql`), GraphQL over
//! WebSocket (`ws`), GraphiQL for browsers, CORS, liveness, readiness and
//! metrics.

mod cors;
mod graphiql;
mod graphql;
mod media;
mod server;
mod session;
mod slots;
mod ws;

pub use self::server::{GoingAway, ServerLimits};

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use sea_orm::{DatabaseConnection, DbBackend};
use tokio::net::TcpListener;
use tower_http::{cors::CorsLayer, timeout::RequestBodyTimeoutLayer, trace::TraceLayer};

use crate::{
    auth::{JwtKeys, Session},
    config::Limits,
    db::StatementCounter,
    graphql::{AppSchema, Documents, SessionExecutor, build_schema, build_schema_with, documents},
    live::ChangeFeed,
};

/// How long a request body may take to arrive unless configured otherwise.
const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    documents: Arc<Documents>,
    pub db: DatabaseConnection,
    pub keys: Arc<JwtKeys>,
    graphiql: Arc<str>,
    statements: StatementCounter,
    operations: Arc<AtomicU64>,
    slots: Arc<slots::Slots>,
    body_read_timeout: Duration,
    cors: Option<CorsLayer>,
    limits: Limits,
    going_away: GoingAway,
    /// Bounds an operation's whole run (see `db::DbTimeouts`); none in tests.
    operation_timeout: Option<Duration>,
    /// What `/readyz` pings: a pool of its own in production.
    readiness: DatabaseConnection,
    database: Arc<DatabaseHealth>,
    pub feed: ChangeFeed,
}

impl AppState {
    /// `graphiql_token`, when given, fills GraphiQL's Headers tab (dev mode).
    /// `statements` is the counter installed on `db`, reported by `/metrics`.
    pub fn new(
        db: DatabaseConnection,
        keys: JwtKeys,
        graphiql_token: Option<&str>,
        statements: StatementCounter,
    ) -> Self {
        Self {
            schema: build_schema(),
            documents: documents(Limits::default()),
            // Postgres triggers report changes (see `live::listener`); SQLite
            // has only this process as a writer, so its mutations publish.
            feed: ChangeFeed::new(db.get_database_backend() != DbBackend::Postgres),
            readiness: db.clone(),
            db,
            keys: Arc::new(keys),
            graphiql: graphiql::page(graphiql_token).into(),
            statements,
            operations: Arc::default(),
            slots: Arc::new(slots::Slots::new(
                Limits::default().in_flight,
                Limits::default().in_flight_per_user,
                Limits::default().queue_timeout,
            )),
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            cors: None,
            limits: Limits::default(),
            going_away: GoingAway::default(),
            operation_timeout: None,
            database: Arc::default(),
        }
    }

    /// Bounds each operation by `timeouts` (a connection, then a statement),
    /// and answers `/readyz` through `readiness`, a pool of its own.
    #[must_use]
    pub fn with_database_timeouts(
        mut self,
        timeouts: crate::db::DbTimeouts,
        readiness: DatabaseConnection,
    ) -> Self {
        self.operation_timeout = Some(timeouts.acquire + timeouts.statement);
        self.readiness = readiness;
        self
    }

    /// Applies `limits`: documents (and batches in total), bodies, slots.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.schema = build_schema_with(limits);
        self.documents = documents(limits);
        self.limits = limits;
        self.feed = ChangeFeed::with(self.db.get_database_backend() != DbBackend::Postgres, limits);
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
        self.slots = Arc::new(slots::Slots::new(max_in_flight, per_user, queue_timeout));
        self.limits.in_flight = max_in_flight;
        self.limits.in_flight_per_user = per_user;
        self.limits.queue_timeout = queue_timeout;
        self
    }

    /// Sets how long a request body may take to arrive (408 after).
    #[must_use]
    pub fn with_body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
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
        self.cors = cors::layer(origins, allow_local);
        self
    }

    /// Runs the operations of `session`.
    fn executor(&self, session: Session) -> SessionExecutor {
        SessionExecutor::new(
            self.schema.clone(),
            self.documents.clone(),
            self.db.clone(),
            self.feed.clone(),
            session,
        )
        .with_timeout(self.operation_timeout)
    }

    fn count_operations(&self, operations: usize) {
        self.operations.fetch_add(operations as u64, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
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
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `router` on `listener` with the default connection limits until
/// `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router, ServerLimits::default(), GoingAway::default(), shutdown).await
}

/// Serves `state`'s app on `listener` within `limits` until `shutdown`
/// resolves, then drains it (see [`server::serve`]).
pub async fn serve_app(
    listener: TcpListener,
    state: AppState,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let going_away = state.going_away();
    server::serve(listener, router(state), limits, going_away, shutdown).await
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
    match tokio::time::timeout(Duration::from_secs(2), state.readiness.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database timed out").into_response(),
    }
}

/// Counters in the Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    let mut body = format!(
        "# HELP deployql_sql_statements_total SQL statements run on the database.\n\
         # TYPE deployql_sql_statements_total counter\n\
         deployql_sql_statements_total {}\n\
         # HELP deployql_database_unavailable_total Operations failed as SERVICE_UNAVAILABLE.\n\
         # TYPE deployql_database_unavailable_total counter\n\
         deployql_database_unavailable_total {}\n\
         # HELP deployql_graphql_operations_total Authenticated GraphQL operations executed.\n\
         # TYPE deployql_graphql_operations_total counter\n\
         deployql_graphql_operations_total {}\n",
        state.statements.get(),
        state.database.failures.load(Ordering::Relaxed),
        state.operations.load(Ordering::Relaxed)
    );
    let router = state.feed.router();
    body.push_str(&format!(
        "# HELP deployql_live_subscriptions Subscriptions open on this instance.\n\
         # TYPE deployql_live_subscriptions gauge\n\
         deployql_live_subscriptions {}\n\
         # HELP deployql_live_groups Distinct (user, deployment, selection) groups watched; each refetches once per change.\n\
         # TYPE deployql_live_groups gauge\n\
         deployql_live_groups {}\n\
         # HELP deployql_live_refetches_total Refetches run for changes, each shared by its group.\n\
         # TYPE deployql_live_refetches_total counter\n\
         deployql_live_refetches_total {}\n",
        router.subscriptions(),
        router.groups(),
        router.refetches()
    ));
    if let Some(jwks) = state.keys.jwks_source() {
        let (fetches, failures) = jwks.fetch_counts();
        body.push_str(&format!(
            "# HELP deployql_jwks_fetches_total Fetches of the identity provider's JWKS.\n\
             # TYPE deployql_jwks_fetches_total counter\n\
             deployql_jwks_fetches_total {fetches}\n\
             # HELP deployql_jwks_fetch_failures_total JWKS fetches that failed (the last good keys stay in use).\n\
             # TYPE deployql_jwks_fetch_failures_total counter\n\
             deployql_jwks_fetch_failures_total {failures}\n"
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Whether the database answered the last operations, logged once per
/// change rather than once per failed request.
#[derive(Debug, Default)]
struct DatabaseHealth {
    down: std::sync::atomic::AtomicBool,
    failures: AtomicU64,
}

impl DatabaseHealth {
    /// Notes an operation's outcome: `unavailable` when it failed on the database.
    fn record(&self, unavailable: bool) {
        if unavailable {
            self.failures.fetch_add(1, Ordering::Relaxed);
            if !self.down.swap(true, Ordering::Relaxed) {
                tracing::warn!("database unavailable: failing requests with SERVICE_UNAVAILABLE");
            }
        } else if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("database available again");
        }
    }
}
