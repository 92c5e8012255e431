//! The metrics `/metrics` serves, kept by the `metrics` facade in a
//! Prometheus recorder of this app's own (not the process-global one), so
//! two apps in one process (the tests) never mix their counts.

use std::{
    hash::Hash,
    sync::{Arc, Mutex},
    time::Duration,
};

use foldhash::HashMap;

use metrics::{
    Counter, Histogram, SharedString, counter, describe_counter, describe_gauge,
    describe_histogram, gauge,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Seconds: from a cached lookup (~1 ms) to the operation deadline (~7 s).
const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How often histogram samples are folded into their buckets. The exporter
/// keeps each sample until then (or until a scrape renders it), so without
/// this an instance nobody scrapes grows with every request it serves.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Distinct operation names kept as labels; later ones count as `other`.
pub const MAX_OPERATION_NAMES: usize = 1_000;

/// Longest operation name kept as a label (a longer one counts as `other`).
const MAX_OPERATION_NAME_BYTES: usize = 128;

/// Why a request or an operation was refused before it ran: the `reason`
/// label of `deployql_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or one that does not verify (401).
    Unauthenticated,
    /// The identity provider's keys are not loaded yet (503).
    KeysUnavailable,
    /// A body over MAX_BODY_BYTES (413), or a WebSocket frame over it.
    BodyTooLarge,
    /// A body that did not arrive within BODY_READ_TIMEOUT (408).
    BodyReadTimeout,
    /// A batch over MAX_BATCH operations.
    BatchTooLarge,
    /// A document over the depth limit.
    QueryTooDeep,
    /// A document over a size or cost limit (tokens, fields, statements, ...).
    QueryTooComplex,
    /// A document with too many aliases.
    TooManyAliases,
    /// One user's share of in-flight requests was taken for QUEUE_TIMEOUT (429).
    RateLimited,
    /// Every in-flight slot was taken for QUEUE_TIMEOUT (503).
    ServerBusy,
    /// An operation that ran past its deadline (the database did not answer).
    OperationTimeout,
    /// A connection closed by HEADER_READ_TIMEOUT: a head that did not
    /// arrive in time, or a kept-alive connection idle that long.
    HeaderReadTimeout,
    /// A request head over 16 KiB (431).
    HeadTooLarge,
    /// A connection beyond MAX_CONNECTIONS.
    TooManyConnections,
    /// A WebSocket that sent no `connection_init` within WS_INIT_TIMEOUT.
    WebSocketInitTimeout,
    /// A WebSocket over its running operations.
    TooManyOperations,
    /// A subscription over MAX_SUBSCRIPTIONS_PER_USER or MAX_SUBSCRIPTIONS.
    TooManySubscriptions,
    /// A document outside the trusted manifests, or an automatic persisted
    /// query's registration, with TRUSTED_DOCUMENTS_ONLY.
    PersistedQueryRequired,
    /// An automatic persisted query whose text does not hash to its hash.
    PersistedQueryMismatch,
    /// A document id or `persistedQuery` extension of the wrong shape.
    PersistedQueryMalformed,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::KeysUnavailable => "keys_unavailable",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyReadTimeout => "body_read_timeout",
            Self::BatchTooLarge => "batch_too_large",
            Self::QueryTooDeep => "query_too_deep",
            Self::QueryTooComplex => "query_too_complex",
            Self::TooManyAliases => "too_many_aliases",
            Self::RateLimited => "rate_limited",
            Self::ServerBusy => "server_busy",
            Self::OperationTimeout => "operation_timeout",
            Self::HeaderReadTimeout => "header_read_timeout",
            Self::HeadTooLarge => "head_too_large",
            Self::TooManyConnections => "too_many_connections",
            Self::WebSocketInitTimeout => "websocket_init_timeout",
            Self::TooManyOperations => "too_many_operations",
            Self::TooManySubscriptions => "too_many_subscriptions",
            Self::PersistedQueryRequired => "persisted_query_required",
            Self::PersistedQueryMismatch => "persisted_query_mismatch",
            Self::PersistedQueryMalformed => "persisted_query_malformed",
        }
    }
}

/// What one GraphQL operation was and how it went.
#[derive(Debug, Clone)]
pub struct OperationOutcome {
    /// The client's operation name, if it gave one.
    pub name: Option<String>,
    /// The persisted document's id, if the request named it by one.
    pub document_id: Option<Arc<str>>,
    /// `query`, `mutation` or `subscription`.
    pub kind: &'static str,
    /// `ok`, or the first error's `extensions.code`.
    pub outcome: String,
    pub duration: Duration,
}

/// This app's metrics. Cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    names: Mutex<HashMap<String, SharedString>>,
    document_ids: Mutex<HashMap<String, SharedString>>,
    process: metrics_process::Collector,
    /// The series every request records, by their labels (see [`Handles`]).
    http: Handles<(SharedString, u16), (Counter, Histogram)>,
    operations: Handles<(SharedString, SharedString, &'static str, String), (Counter, Histogram)>,
    /// Counters whose labels are static strings, by name and labels.
    counters: Handles<(&'static str, &'static str, &'static str), Counter>,
    statements: Handles<SharedString, Counter>,
    direct_reads: Counter,
    /// Read operations served by the primary and by a replica.
    db_reads: [Counter; 2],
    pool_acquire: Histogram,
}

/// Series already registered, by their labels. Registering a series looks
/// its name and labels up in the recorder's registry, building and hashing
/// the key each time; a status lookup records six series, so those a
/// request records are kept here, found by their label values alone. The
/// label values are bounded (routes, statuses, capped operation names,
/// error codes, entry points), and so is this map.
struct Handles<K, V>(Mutex<HashMap<K, V>>);

impl<K: Hash + Eq, V: Clone> Handles<K, V> {
    fn new() -> Self {
        Self(Mutex::default())
    }

    /// The series for `key`, registered by `register` the first time.
    fn get(&self, key: K, register: impl FnOnce(&K) -> V) -> V {
        let Ok(mut handles) = self.0.lock() else { return register(&key) };
        if let Some(handle) = handles.get(&key) {
            return handle.clone();
        }
        let handle = register(&key);
        handles.insert(key, handle.clone());
        handle
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // Only an empty bucket list is refused, and this one is not empty.
        let builder = builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let process = metrics_process::Collector::new("deployql_");
        let (direct_reads, db_reads, pool_acquire) =
            metrics::with_local_recorder(&recorder, || {
                (
                    counter!("deployql_graphql_direct_reads_total"),
                    [
                        counter!("deployql_db_reads_total", "target" => "primary"),
                        counter!("deployql_db_reads_total", "target" => "replica"),
                    ],
                    metrics::histogram!("deployql_db_pool_acquire_seconds"),
                )
            });
        let metrics = Self {
            inner: Arc::new(Inner {
                recorder,
                handle,
                names: Mutex::default(),
                document_ids: Mutex::default(),
                process,
                http: Handles::new(),
                operations: Handles::new(),
                counters: Handles::new(),
                statements: Handles::new(),
                direct_reads,
                db_reads,
                pool_acquire,
            }),
        };
        metrics.with(|| {
            describe();
            metrics.inner.process.describe();
            gauge!(
                "deployql_build_info",
                "version" => env!("CARGO_PKG_VERSION"),
                "git_commit" => env!("DEPLOYQL_GIT_COMMIT"),
            )
            .set(1.0);
            // Present from the start, so a scrape before the first
            // statement reads 0 rather than nothing.
            counter!("deployql_sql_statements_total", "entry_point" => "other").absolute(0);
            counter!("deployql_log_lines_dropped_total").absolute(0);
        });
        metrics.keep_up_every(UPKEEP_INTERVAL);
        metrics
    }

    /// Starts a thread that folds histogram samples into their buckets
    /// every `interval`, for as long as these metrics live.
    fn keep_up_every(&self, interval: Duration) {
        let inner = Arc::downgrade(&self.inner);
        let started = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::sleep(interval);
                let Some(inner) = inner.upgrade() else { break };
                inner.handle.run_upkeep();
            }
        });
        if let Err(err) = started {
            tracing::error!(error = %err, "cannot start the metrics' upkeep: memory grows until /metrics is scraped");
        }
    }

    /// Runs `record` with this app's recorder behind the `metrics` macros.
    pub fn with<T>(&self, record: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.inner.recorder, record)
    }

    /// Counts a GraphQL operation and observes its latency.
    pub fn operation(&self, operation: OperationOutcome) {
        let key = (
            self.operation_name(operation.name.as_deref()),
            self.document_id(operation.document_id.as_deref()),
            operation.kind,
            operation.outcome,
        );
        let (count, duration) = self.inner.operations.get(key, |(name, id, kind, outcome)| {
            let labels = [
                ("operation_name", name.clone()),
                ("document_id", id.clone()),
                ("operation_type", SharedString::const_str(kind)),
                ("outcome", SharedString::from(outcome.clone())),
            ];
            self.with(|| {
                (
                    counter!("deployql_graphql_operations_total", &labels),
                    metrics::histogram!("deployql_graphql_operation_duration_seconds", &labels),
                )
            })
        });
        count.increment(1);
        duration.record(operation.duration.as_secs_f64());
    }

    /// Counts a request naming a persisted document: `outcome` is `hit`,
    /// `miss` or `registered` (an automatic persisted query's text stored),
    /// `source` where its id was looked up (`manifest`, `store`).
    pub fn persisted(&self, outcome: &'static str, source: &'static str) {
        let key = ("deployql_persisted_documents_total", outcome, source);
        let count = self.inner.counters.get(key, |&(name, outcome, source)| {
            self.with(|| counter!(name, "outcome" => outcome, "source" => source))
        });
        count.increment(1);
    }

    /// Counts a mutation sent with an idempotency key by what came of it:
    /// `recorded` (it ran, its answer kept), `replayed`, `reused` (422),
    /// `in_use` (409).
    pub fn idempotency(&self, outcome: &'static str) {
        let key = ("deployql_idempotency_keys_total", outcome, "");
        let count = self
            .inner
            .counters
            .get(key, |&(name, outcome, _)| self.with(|| counter!(name, "outcome" => outcome)));
        count.increment(1);
    }

    /// Counts a webhook event by its type (once, on the instance that wrote it).
    pub fn webhook_event(&self, event_type: &'static str) {
        self.count("deployql_webhook_events_total", "type", event_type);
    }

    /// Counts a webhook delivery attempt: `success` (2xx) or `failure`.
    pub fn webhook_attempt(&self, result: &'static str) {
        self.count("deployql_webhook_attempts_total", "result", result);
    }

    /// Counts a webhook delivery finished: `succeeded` or `failed` (retries spent).
    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.count("deployql_webhook_deliveries_total", "outcome", outcome);
    }

    /// Counts an SQL statement of the webhook detector or deliverer (their
    /// pool is their own, so `deployql_sql_statements_total` stays the requests').
    pub fn webhook_statement(&self) {
        self.count("deployql_webhook_sql_statements_total", "pool", "webhooks");
    }

    /// Sets the outbox gauges: deliveries pending, and the oldest one's age.
    pub fn webhook_outbox(&self, pending: u64, oldest_age_seconds: f64) {
        self.with(|| {
            gauge!("deployql_webhook_outbox_pending").set(pending as f64);
            gauge!("deployql_webhook_outbox_oldest_pending_seconds").set(oldest_age_seconds);
        });
    }

    /// Shows the webhook series from the start, at 0, so a dashboard and
    /// an alert read 0 before the first event rather than nothing.
    pub fn webhooks_started(&self, event_types: &[&'static str]) {
        let zero = |name, label, value| {
            let count = self.inner.counters.get((name, label, value), |&(name, label, value)| {
                self.with(|| counter!(name, label => value))
            });
            count.absolute(0);
        };
        for event_type in event_types {
            zero("deployql_webhook_events_total", "type", event_type);
        }
        for result in ["success", "failure"] {
            zero("deployql_webhook_attempts_total", "result", result);
        }
        for outcome in ["succeeded", "failed"] {
            zero("deployql_webhook_deliveries_total", "outcome", outcome);
        }
        zero("deployql_webhook_sql_statements_total", "pool", "webhooks");
        self.webhook_outbox(0, 0.0);
    }

    /// Increments counter `name` with one label.
    fn count(&self, name: &'static str, label: &'static str, value: &'static str) {
        let count = self.inner.counters.get((name, label, value), |&(name, label, value)| {
            self.with(|| counter!(name, label => value))
        });
        count.increment(1);
    }

    /// Counts a status read answered without async-graphql's executor.
    pub fn direct_read(&self) {
        self.inner.direct_reads.increment(1);
    }

    /// Counts one read operation's statements, by the server that ran them.
    pub fn db_read(&self, on_replica: bool) {
        self.inner.db_reads[usize::from(on_replica)].increment(1);
    }

    /// Sets how far behind the primary replica `index` (its place in
    /// DATABASE_REPLICA_URLS) was last measured.
    pub fn replica_lag(&self, index: usize, lag: Duration) {
        self.with(|| {
            gauge!("deployql_replica_lag_seconds", "replica" => index.to_string())
                .set(lag.as_secs_f64());
        });
    }

    /// Counts a refusal by its reason.
    pub fn refused(&self, refusal: Refusal) {
        self.with(|| {
            counter!("deployql_refusals_total", "reason" => refusal.as_str()).increment(1);
        });
    }

    /// Counts an HTTP request by its route and status and observes its latency.
    pub fn http_request(&self, route: SharedString, status: u16, duration: Duration) {
        let (count, latency) = self.inner.http.get((route, status), |(route, status)| {
            let labels =
                [("route", route.clone()), ("status", SharedString::from(status.to_string()))];
            self.with(|| {
                (
                    counter!("deployql_http_requests_total", &labels),
                    metrics::histogram!("deployql_http_request_duration_seconds", &labels[..1]),
                )
            })
        });
        count.increment(1);
        latency.record(duration.as_secs_f64());
    }

    /// Counts a SQL statement under the entry point that ran it.
    pub fn statement(&self, entry_point: SharedString) {
        let count = self.inner.statements.get(entry_point, |entry_point| {
            let entry_point = entry_point.clone();
            self.with(|| counter!("deployql_sql_statements_total", "entry_point" => entry_point))
        });
        count.increment(1);
    }

    /// Observes how long a statement waited for a pooled connection.
    pub fn pool_acquired(&self, seconds: f64) {
        self.inner.pool_acquire.record(seconds);
    }

    /// Counts a subscription message sent.
    pub fn live_message_sent(&self) {
        self.with(|| counter!("deployql_live_messages_total").increment(1));
    }

    /// The count of log lines dropped while the log output was stalled.
    pub(super) fn log_lines_dropped(&self) -> Counter {
        self.with(|| counter!("deployql_log_lines_dropped_total"))
    }

    /// The count of span batches the trace collector did not take.
    pub(super) fn trace_export_failures(&self) -> Counter {
        self.with(|| counter!("deployql_trace_export_failures_total"))
    }

    /// Counts an open WebSocket until the returned guard drops.
    pub fn websocket_opened(&self) -> OpenWebSocket {
        self.with(|| gauge!("deployql_websocket_connections").increment(1.0));
        OpenWebSocket(self.clone())
    }

    /// The Prometheus text of every metric, after `sample` has set the
    /// gauges read at scrape time (pool, live updates).
    pub fn render(&self, sample: impl FnOnce()) -> String {
        self.with(|| {
            self.inner.process.collect();
            sample();
        });
        self.inner.handle.render()
    }

    /// The label for an operation name: `anonymous` without one, the name
    /// itself for the first [`MAX_OPERATION_NAMES`] distinct names, `other`
    /// after, so a client inventing names cannot grow the series.
    fn operation_name(&self, name: Option<&str>) -> SharedString {
        match name.filter(|name| !name.is_empty()) {
            Some(name) => capped(&self.inner.names, name),
            None => SharedString::const_str("anonymous"),
        }
    }

    /// The label for a persisted document's id: `none` for a document sent
    /// as text, else capped as operation names are.
    fn document_id(&self, id: Option<&str>) -> SharedString {
        match id {
            Some(id) => capped(&self.inner.document_ids, id),
            None => SharedString::const_str("none"),
        }
    }
}

/// `value` itself if it is among the first [`MAX_OPERATION_NAMES`] distinct
/// values `seen`, `other` after, so a client inventing names or ids cannot
/// grow the series. A label seen before is shared, not copied.
fn capped(seen: &Mutex<HashMap<String, SharedString>>, value: &str) -> SharedString {
    let other = SharedString::const_str("other");
    if value.len() > MAX_OPERATION_NAME_BYTES {
        return other;
    }
    let Ok(mut seen) = seen.lock() else { return other };
    if let Some(label) = seen.get(value) {
        return label.clone();
    }
    if seen.len() >= MAX_OPERATION_NAMES {
        return other;
    }
    let label = SharedString::from_shared(Arc::<str>::from(value));
    seen.insert(value.to_owned(), label.clone());
    label
}

/// An open WebSocket, counted in `deployql_websocket_connections`.
#[derive(Debug)]
pub struct OpenWebSocket(Metrics);

impl Drop for OpenWebSocket {
    fn drop(&mut self) {
        self.0.with(|| gauge!("deployql_websocket_connections").decrement(1.0));
    }
}

/// Help texts, so every series says what it counts.
fn describe() {
    describe_counter!(
        "deployql_graphql_operations_total",
        "GraphQL operations executed, by operation_name (first 1,000 names; then `other`), \
         document_id (a persisted document's id, first 1,000; `none` for text), \
         operation_type and outcome (`ok` or the first error's code)."
    );
    describe_counter!(
        "deployql_idempotency_keys_total",
        "Mutations sent with an idempotency key, by outcome: `recorded` (ran, answer kept), \
         `replayed`, `reused` (the key with another operation, 422), `in_use` (409)."
    );
    describe_counter!(
        "deployql_persisted_documents_total",
        "Requests naming a persisted document, by outcome (`hit`, `miss`, `registered`) and \
         source (`manifest`: TRUSTED_DOCUMENTS, `store`: automatic persisted queries)."
    );
    describe_histogram!(
        "deployql_graphql_operation_duration_seconds",
        "Time to answer a query or mutation, by operation_name, operation_type and outcome."
    );
    describe_counter!(
        "deployql_graphql_direct_reads_total",
        "Status reads (`deployment(id:)` documents validated before) answered straight from \
         the planned statement's row, without async-graphql's executor."
    );
    describe_counter!(
        "deployql_http_requests_total",
        "HTTP requests answered, by route and status."
    );
    describe_histogram!(
        "deployql_http_request_duration_seconds",
        "Time to answer an HTTP request (a WebSocket: to upgrade it), by route."
    );
    describe_counter!(
        "deployql_refusals_total",
        "Requests and operations refused before they ran, by reason."
    );
    describe_counter!(
        "deployql_sql_statements_total",
        "SQL statements run on the database, by entry point (the root field that ran them)."
    );
    describe_histogram!(
        "deployql_db_pool_acquire_seconds",
        "Time a statement waited for a pooled connection (rate of the sum: connections waited \
         for at once, on average)."
    );
    describe_gauge!("deployql_db_pool_connections", "Pooled database connections, by state.");
    describe_counter!(
        "deployql_db_reads_total",
        "Read operations (each one query's or subscription refetch's statements), by the \
         server that ran them: the primary, or a replica within REPLICA_MAX_LAG."
    );
    describe_gauge!(
        "deployql_replica_lag_seconds",
        "How far each replica (its index in DATABASE_REPLICA_URLS) is behind the primary: \
         zero when it has replayed the newest primary WAL position seen, else the age of the \
         newest one it has replayed. Polled every half of REPLICA_MAX_LAG."
    );
    describe_gauge!("deployql_db_pool_max_connections", "DB_MAX_CONNECTIONS.");
    describe_gauge!(
        "deployql_requests_waiting",
        "GraphQL requests waiting for an in-flight slot (MAX_IN_FLIGHT)."
    );
    describe_counter!(
        "deployql_database_unavailable_total",
        "Operations failed as SERVICE_UNAVAILABLE."
    );
    describe_gauge!("deployql_websocket_connections", "WebSocket connections open.");
    describe_gauge!(
        "deployql_requests_in_flight",
        "GraphQL requests and socket operations running now (each holds a MAX_IN_FLIGHT slot)."
    );
    describe_gauge!("deployql_live_subscriptions", "Subscriptions open on this instance.");
    describe_gauge!(
        "deployql_live_groups",
        "Distinct (user, deployment, selection) groups watched; each refetches once per change."
    );
    describe_counter!(
        "deployql_live_changes_total",
        "Changes received (from the change log on Postgres, from mutations on SQLite)."
    );
    describe_counter!(
        "deployql_live_refetches_total",
        "Refetches run for changes, each shared by its group."
    );
    describe_counter!("deployql_live_messages_total", "Subscription messages sent to clients.");
    describe_counter!(
        "deployql_live_reader_restarts_total",
        "Times the change reader started over (at start, and after an error or a pause that may \
         have missed changes): every subscription re-reads."
    );
    describe_counter!(
        "deployql_live_log_reads_total",
        "Reads of the change log (Postgres): every LIVE_POLL_INTERVAL while this instance has \
         subscriptions, every 200 ms while it has none."
    );
    describe_counter!("deployql_jwks_fetches_total", "Fetches of the identity provider's JWKS.");
    describe_counter!(
        "deployql_jwks_fetch_failures_total",
        "JWKS fetches that failed (the last good keys stay in use)."
    );
    describe_counter!(
        "deployql_database_storage_faults_total",
        "Writes the database refused, by reason: STORAGE_FULL, READ_ONLY, STORAGE_ERROR (each \
         answered SERVICE_UNAVAILABLE; nothing answered ok is lost)."
    );
    describe_counter!(
        "deployql_log_lines_dropped_total",
        "Log lines dropped because the log output (stderr) did not take them: serving never \
         waits for logging."
    );
    describe_counter!(
        "deployql_trace_export_failures_total",
        "Span batches the OTLP collector did not take (unreachable, refusing or too slow)."
    );
    describe_counter!(
        "deployql_webhook_events_total",
        "Webhook events written to the outbox, by type (each once, across instances)."
    );
    describe_counter!(
        "deployql_webhook_attempts_total",
        "Webhook delivery attempts made here, by result (success: a 2xx in time)."
    );
    describe_counter!(
        "deployql_webhook_deliveries_total",
        "Webhook deliveries finished here, by outcome (succeeded, failed: every retry spent)."
    );
    describe_counter!(
        "deployql_webhook_sql_statements_total",
        "SQL statements the webhook detector and deliverer ran (on their own pool)."
    );
    describe_gauge!("deployql_webhook_outbox_pending", "Webhook deliveries not yet delivered.");
    describe_gauge!(
        "deployql_webhook_outbox_oldest_pending_seconds",
        "Seconds since the oldest undelivered webhook delivery was written (0: none)."
    );
    describe_gauge!("deployql_build_info", "The running build: version and git commit.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_beyond_the_cap_count_as_other() {
        let metrics = Metrics::new();
        assert_eq!(metrics.operation_name(None).as_ref(), "anonymous");
        assert_eq!(metrics.operation_name(Some("")).as_ref(), "anonymous");
        for n in 0..MAX_OPERATION_NAMES {
            assert_eq!(
                metrics.operation_name(Some(&format!("Op{n}"))).as_ref(),
                format!("Op{n}").as_str()
            );
        }
        assert_eq!(metrics.operation_name(Some("OneTooMany")).as_ref(), "other");
        assert_eq!(metrics.operation_name(Some("Op7")).as_ref(), "Op7", "known names stay");
        assert_eq!(metrics.operation_name(Some(&"L".repeat(200))).as_ref(), "other");
    }
}
