//! How deployql reports on itself: metrics (`metrics`), request ids
//! (`request_id`), statements per operation (`operation`), logs, and
//! OpenTelemetry traces (`traces`). Depends only on configuration.

mod filtered_once;
mod json_lines;
mod log_writer;
pub mod metrics;
pub mod operation;
pub mod request_id;
mod request_log;
mod traces;

use opentelemetry::trace::TracerProvider as _;
use tracing::{Level, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{FilterExt, Targets, filter_fn},
    layer::Context,
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use self::{filtered_once::LogsAndAcquireTimes, log_writer::BatchedStderr};
pub use self::{
    metrics::{Metrics, OperationOutcome, Refusal},
    operation::Scope,
    request_id::RequestId,
    request_log::{CarriedRequest, RequestFields},
};
use crate::config::{LogFormat, TelemetryConfig};

/// Logged unless RUST_LOG says otherwise. sqlx warns on every slow pool
/// acquire (an outage is logged once per change by the server instead).
const DEFAULT_LOG_FILTER: &str = "info,sqlx::pool::acquire=error";

/// Spans for traces only, whatever RUST_LOG says: the operation's and the
/// work's (target `deployql::traces`) and sea-orm's statements. With traces
/// off no layer wants them, so they are disabled where they are written.
fn traces_only(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span()
        && (metadata.target().starts_with(TRACES_TARGET)
            || metadata.target().starts_with("sea_orm"))
}

/// The target of spans meant for traces only (the `tracing::instrument`
/// attributes spell it out: attributes take literals).
pub const TRACES_TARGET: &str = "deployql::traces";

/// Whether spans are exported (traces on), so that what only a trace shows
/// is worth computing; the answer is cached by tracing where this is called.
pub fn exporting_spans() -> bool {
    tracing::span_enabled!(target: TRACES_TARGET, Level::INFO)
}

/// What traces are made of: this crate's spans and sea-orm's statements.
fn traced() -> Targets {
    Targets::new().with_target("deployql", Level::INFO).with_target("sea_orm", Level::INFO)
}

/// The installed logging and tracing; [`Telemetry::shutdown`] sends the
/// spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    /// Log lines gathered but not written yet are written when this drops.
    writer: BatchedStderr,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.writer.flush_quietly();
    }
}

impl Telemetry {
    /// Flushes the spans not yet exported (off the runtime's threads: the
    /// export itself runs on the runtime).
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(err)) = flushed {
                tracing::warn!(error = %err, "cannot flush the last spans");
            }
        }
    }
}

/// Installs logging in `config`'s format (`dev` picks the default), traces
/// when an OTLP endpoint is set, and the pool's acquire times in `metrics`.
pub fn init(config: &TelemetryConfig, dev: bool, metrics: &Metrics) -> Result<Telemetry, String> {
    let directives = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|text| EnvFilter::try_new(text).is_ok())
        .unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned());

    let writer = BatchedStderr::start(metrics.log_lines_dropped())
        .map_err(|err| format!("cannot start the log writer's thread: {err}"))?;
    let format = config.log_format(dev);
    let provider = config
        .traces_url()
        .map(|url| traces::provider(config, &url, metrics.trace_export_failures()))
        .transpose()?;
    // Only JSON lines can name a request without its span (`request_log`).
    request_log::set_spans(
        provider.is_some() || format == LogFormat::Text || has_span_directives(&directives),
    );
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer.clone())
            .with_ansi(colours_wanted())
            .boxed(),
        LogFormat::Json => json_lines::layer(writer.clone()).boxed(),
    };
    let acquire_times = PoolAcquireTimes(metrics.clone());
    let installed = match &provider {
        // Traces and logs want different spans: a filter for each layer.
        Some(provider) => tracing_subscriber::registry()
            .with(logs.with_filter(
                EnvFilter::new(&directives).and(filter_fn(|metadata| !traces_only(metadata))),
            ))
            .with(acquire_times.with_filter(acquire_time_events()))
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("deployql"))
                    .with_filter(traced()),
            )
            .try_init(),
        // Without traces, one filter for both (see `filtered_once`).
        None => tracing_subscriber::registry()
            .with(LogsAndAcquireTimes::new(&directives, logs, acquire_times))
            .try_init(),
    };
    installed.map_err(|err| format!("cannot install logging: {err}"))?;
    Ok(Telemetry { provider, writer })
}

/// Whether text logs get colour codes: only on a terminal, and never with
/// `NO_COLOR` set (no-color.org), so a log file or pipe holds plain text.
fn colours_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether `directives` (`RUST_LOG`'s syntax) filter by span (`[name]`):
/// only then must the log filter see spans entered and left, and requests
/// have spans to be filtered by.
fn has_span_directives(directives: &str) -> bool {
    directives.contains('[')
}

/// sqlx's per-acquire timing events (see [`PoolAcquireTimes`]).
fn acquire_time_events() -> Targets {
    Targets::new().with_target("sqlx::pool::acquire", Level::DEBUG)
}

/// Observes sqlx's per-acquire timing events (enabled in `db`) as the
/// `deployql_db_pool_acquire_seconds` histogram.
struct PoolAcquireTimes(Metrics);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for PoolAcquireTimes {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Seconds(Option<f64>);
        impl tracing::field::Visit for Seconds {
            fn record_f64(&mut self, field: &Field, value: f64) {
                if field.name() == "acquired_after_secs" {
                    self.0 = Some(value);
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        let mut seconds = Seconds(None);
        event.record(&mut seconds);
        if let Some(seconds) = seconds.0 {
            self.0.pool_acquired(seconds);
        }
    }
}
