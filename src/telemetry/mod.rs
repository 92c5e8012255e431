//! How deployql reports on itself: metrics (`metrics`), request ids
//! (`request_id`), statements per operation (`operation`), logs, and
//! OpenTelemetry traces (`traces`). Depends only on configuration.

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

use self::log_writer::BatchedStderr;
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
    // Traces and logs want different spans: a filter for each layer.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("deployql"))
            .with_filter(traced())
    });
    let installed = tracing_subscriber::registry()
        .with(logs_and_acquire_times(&directives, logs, acquire_times))
        .with(traces)
        .try_init();
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

/// The log layer, taking what `directives` (`RUST_LOG`'s syntax, valid)
/// enable but the spans meant for traces, and the pool's acquire times, each
/// with a filter of its own. (One filter for both, deciding once per span
/// entry, saved instructions while every request had a span; measured again
/// without, its gain was within the noise, BENCHMARKS.md.)
fn logs_and_acquire_times<S, L>(
    directives: &str,
    logs: L,
    acquire_times: PoolAcquireTimes,
) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S> + Send + Sync,
{
    logs.with_filter(EnvFilter::new(directives).and(filter_fn(|metadata| !traces_only(metadata))))
        .and_then(acquire_times.with_filter(acquire_time_events()))
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::{
        Event,
        span::{Attributes, Id},
    };
    use tracing_subscriber::{Registry, layer::SubscriberExt};

    use super::*;

    /// A log layer that notes what reaches it.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl Seen {
        fn note(&self, what: String) {
            if let Ok(mut seen) = self.0.lock() {
                seen.push(what);
            }
        }

        fn all(&self) -> Vec<String> {
            self.0.lock().map(|seen| seen.clone()).unwrap_or_default()
        }
    }

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            self.note(format!("span {}", attrs.metadata().name()));
        }

        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let metadata = event.metadata();
            self.note(format!("{} {} {}", metadata.level(), metadata.target(), metadata.name()));
        }
    }

    fn acquire_count(metrics: &Metrics) -> Option<String> {
        let text = metrics.render(|| ());
        text.lines()
            .find(|line| line.starts_with("deployql_db_pool_acquire_seconds_count"))
            .map(str::to_owned)
    }

    #[test]
    fn logs_get_what_the_filter_enables_and_the_histogram_every_acquire_time() {
        let (seen, metrics) = (Seen::default(), Metrics::new());
        let layer = logs_and_acquire_times(
            "info,sqlx::pool::acquire=error",
            seen.clone(),
            PoolAcquireTimes(metrics.clone()),
        );
        let subscriber = Registry::default().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            assert!(!crate::telemetry::exporting_spans(), "no layer wants trace-only spans");
            let request = tracing::info_span!("request");
            let _entered = request.enter();
            let traced = tracing::info_span!(target: TRACES_TARGET, "operation");
            let _traced = traced.enter();
            tracing::info!(target: "deployql::test", "kept");
            tracing::debug!(target: "deployql::test", "below the filter");
            tracing::debug!(target: "sqlx::pool::acquire", acquired_after_secs = 0.25, "acquired");
            tracing::error!(target: "sqlx::pool::acquire", acquired_after_secs = 3.0, "slow");
            tracing::trace!(target: "sqlx::pool::acquire", acquired_after_secs = 1.0, "too fine");
        });
        let seen = seen.all();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen[0], "span request");
        assert!(seen[1].starts_with("INFO deployql::test"), "{seen:?}");
        assert!(seen[2].starts_with("ERROR sqlx::pool::acquire"), "{seen:?}");
        assert_eq!(
            acquire_count(&metrics).as_deref(),
            Some("deployql_db_pool_acquire_seconds_count 2"),
            "the debug and the error acquire times, not the trace one"
        );
    }

    #[test]
    fn a_span_directive_still_applies() {
        let seen = Seen::default();
        let layer = logs_and_acquire_times(
            "warn,[audit]=debug",
            seen.clone(),
            PoolAcquireTimes(Metrics::new()),
        );
        tracing::subscriber::with_default(Registry::default().with(layer), || {
            tracing::debug!(target: "deployql::test", "outside");
            let audit = tracing::info_span!("audit");
            let _entered = audit.enter();
            tracing::debug!(target: "deployql::test", "inside");
        });
        let seen = seen.all();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], "span audit");
        assert!(seen[1].starts_with("DEBUG deployql::test"), "{seen:?}");
    }
}
