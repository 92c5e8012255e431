//! The log layer and the pool's acquire times as one layer with one filter,
//! for when traces are off.
//!
//! With a filter per layer (as traces need: the log layer and the trace
//! layer want different spans), tracing-subscriber looks a span up in the
//! registry for every filtered layer each time the span is entered or left.
//! The request span is entered about twenty times per request (sqlx polls
//! its statement streams inside `in_current_span()`), so those lookups were
//! the largest part of what logging cost a status lookup. Here the one
//! filter decides globally what exists at all, and the layer hands each
//! event to whichever of the two wants it:
//!
//! - spans and events the log filter enables (`RUST_LOG`, minus the spans
//!   meant for traces) go to the log layer, exactly as with per-layer
//!   filters;
//! - sqlx's acquire-time events go to the histogram, and to the log layer
//!   too when the log filter enables them.

use tracing::{
    Event, Metadata, Subscriber,
    level_filters::LevelFilter,
    span::{Attributes, Id, Record},
    subscriber::Interest,
};
use tracing_subscriber::{EnvFilter, Layer, filter::Targets, layer::Context, registry::LookupSpan};

use super::{PoolAcquireTimes, acquire_time_events, traces_only};

pub(super) struct LogsAndAcquireTimes<L> {
    /// What the log layer takes (`RUST_LOG`), spans for traces aside.
    filter: EnvFilter,
    /// Whether `filter` has span directives (`target[span{field}]=level`),
    /// and so must follow spans as they are created, entered and left.
    /// Without, following them is a lock and a hash map lookup per entry
    /// that decide nothing.
    span_directives: bool,
    logs: L,
    /// Which events carry an acquire time.
    acquire_events: Targets,
    acquire_times: PoolAcquireTimes,
}

impl<L> LogsAndAcquireTimes<L> {
    /// Logs what `directives` (`RUST_LOG`'s syntax, valid) enable.
    pub(super) fn new(directives: &str, logs: L, acquire_times: PoolAcquireTimes) -> Self {
        Self {
            filter: EnvFilter::new(directives),
            span_directives: super::has_span_directives(directives),
            logs,
            acquire_events: acquire_time_events(),
            acquire_times,
        }
    }

    fn is_acquire_time(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && self.acquire_events.would_enable(metadata.target(), metadata.level())
    }
}

impl<S, L> Layer<S> for LogsAndAcquireTimes<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_layer(&mut self, subscriber: &mut S) {
        self.logs.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.is_acquire_time(metadata) {
            Interest::always()
        } else if traces_only(metadata) {
            Interest::never()
        } else {
            Layer::<S>::register_callsite(&self.filter, metadata)
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, cx: Context<'_, S>) -> bool {
        self.is_acquire_time(metadata)
            || (!traces_only(metadata) && Layer::enabled(&self.filter, metadata, cx))
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let logs = Layer::<S>::max_level_hint(&self.filter).unwrap_or(LevelFilter::TRACE);
        let acquire = Layer::<S>::max_level_hint(&self.acquire_events).unwrap_or(LevelFilter::OFF);
        Some(logs.max(acquire))
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, cx: Context<'_, S>) {
        if self.span_directives {
            self.filter.on_new_span(attrs, id, cx.clone());
        }
        self.logs.on_new_span(attrs, id, cx);
    }

    fn on_record(&self, span: &Id, values: &Record<'_>, cx: Context<'_, S>) {
        if self.span_directives {
            self.filter.on_record(span, values, cx.clone());
        }
        self.logs.on_record(span, values, cx);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, cx: Context<'_, S>) {
        self.logs.on_follows_from(span, follows, cx);
    }

    fn on_event(&self, event: &Event<'_>, cx: Context<'_, S>) {
        let metadata = event.metadata();
        if self.is_acquire_time(metadata) {
            self.acquire_times.on_event(event, cx.clone());
            if !Layer::enabled(&self.filter, metadata, cx.clone()) {
                return;
            }
        }
        self.logs.on_event(event, cx);
    }

    fn on_enter(&self, id: &Id, cx: Context<'_, S>) {
        if self.span_directives {
            self.filter.on_enter(id, cx.clone());
        }
        self.logs.on_enter(id, cx);
    }

    fn on_exit(&self, id: &Id, cx: Context<'_, S>) {
        if self.span_directives {
            self.filter.on_exit(id, cx.clone());
        }
        self.logs.on_exit(id, cx);
    }

    fn on_close(&self, id: Id, cx: Context<'_, S>) {
        if self.span_directives {
            self.filter.on_close(id.clone(), cx.clone());
        }
        self.logs.on_close(id, cx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, cx: Context<'_, S>) {
        self.logs.on_id_change(old, new, cx);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::{Registry, layer::SubscriberExt};

    use super::*;
    use crate::telemetry::{Metrics, TRACES_TARGET};

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
        let layer = LogsAndAcquireTimes::new(
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
        let layer = LogsAndAcquireTimes::new(
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
