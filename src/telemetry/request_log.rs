//! The request a log line belongs to.
//!
//! A request runs in a span (`request`: its id, method and route) when
//! something needs one: exported traces, the text format's span prefix, or
//! `RUST_LOG` span directives. Otherwise (JSON logs without traces,
//! production's default) nothing reads the span but the JSON lines, and it
//! was the largest cost of logging: created with its fields written out,
//! then entered and left on each of the ~22 polls of a statement's stream
//! (sqlx polls them `in_current_span()`). Such a request's fields ride in a
//! task-local instead, and [`super::json_lines`] writes them as the same
//! first entry of `spans` the span would have given (tested).

use std::{
    future::Future,
    sync::atomic::{AtomicBool, Ordering},
};

use axum::http::Method;
use metrics::SharedString;
use tracing::{Instrument, Span, field::Empty};

use super::RequestId;

/// Whether requests get spans; set once by [`super::init`]. Without it
/// (tests, tools) they do.
static SPANS: AtomicBool = AtomicBool::new(true);

pub(super) fn set_spans(wanted: bool) {
    SPANS.store(wanted, Ordering::Relaxed);
}

tokio::task_local! {
    static UNSPANNED: RequestFields;
}

/// What a request's log lines say about it.
#[derive(Debug, Clone)]
pub struct RequestFields {
    pub(super) id: RequestId,
    pub(super) method: Method,
    pub(super) route: SharedString,
}

impl RequestFields {
    pub fn new(id: RequestId, method: Method, route: SharedString) -> Self {
        Self { id, method, route }
    }

    /// The request's span, when anything wants one (see the module's docs).
    pub fn span(&self) -> Option<Span> {
        SPANS.load(Ordering::Relaxed).then(|| self.new_span())
    }

    fn new_span(&self) -> Span {
        tracing::info_span!(
            "request",
            otel.name = Empty,
            otel.kind = "server",
            otel.status_code = Empty,
            request_id = self.id.as_str(),
            http.request.method = self.method.as_str(),
            http.route = self.route.as_ref(),
            http.response.status_code = Empty,
        )
    }

    /// Runs `work` as this request's: in `span`, or, without one, with
    /// these fields where the log lines find them.
    pub async fn run<F: Future>(self, span: Option<&Span>, work: F) -> F::Output {
        match span {
            Some(span) => work.instrument(span.clone()).await,
            None => UNSPANNED.scope(self, work).await,
        }
    }

    /// Calls `log` with the fields of the request the running task serves
    /// without a span, if it does.
    pub(super) fn with_unspanned<R>(log: impl FnOnce(&Self) -> R) -> Option<R> {
        UNSPANNED.try_with(log).ok()
    }
}

/// The running request, to carry into a task it starts: its id, and its
/// span or fields.
#[derive(Debug)]
pub struct CarriedRequest {
    id: Option<RequestId>,
    span: Span,
    unspanned: Option<RequestFields>,
}

impl CarriedRequest {
    pub fn current() -> Self {
        let unspanned = UNSPANNED.try_with(Clone::clone).ok();
        Self { id: RequestId::current(), span: Span::current(), unspanned }
    }

    /// Runs `work` as the request's.
    pub async fn run<F: Future>(self, work: F) -> F::Output {
        let work = work.instrument(self.span);
        let work = async move {
            match self.unspanned {
                Some(fields) => UNSPANNED.scope(fields, work).await,
                None => work.await,
            }
        };
        match self.id {
            Some(id) => id.scope(work).await,
            None => work.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::json_lines::tests::Lines;

    /// The JSON lines `work` logs, with the request in a span or not.
    async fn logged(spanned: bool, work: impl Future<Output = ()>) -> Vec<serde_json::Value> {
        let lines = Lines::default();
        let _guard = tracing::subscriber::set_default(lines.subscriber());
        let fields = RequestFields::new(
            RequestId::from_client(Some(&"req-7".parse().unwrap())),
            Method::POST,
            SharedString::const_str("/graphql"),
        );
        let span = spanned.then(|| fields.new_span());
        fields.clone().run(span.as_ref(), work).await;
        tracing::info!("after the request");
        lines.parsed()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_line_names_its_request_the_same_with_or_without_the_span() {
        let work = || async {
            tracing::info!(answer = 42, "in the request");
            // A task the request starts still belongs to it.
            CarriedRequest::current().run(async { tracing::warn!("in a task it started") }).await;
        };
        let spanned = logged(true, work()).await;
        let unspanned = logged(false, work()).await;
        assert_eq!((spanned.len(), unspanned.len()), (3, 3));
        for (with, without) in spanned.iter().zip(&unspanned) {
            assert_eq!(with["spans"], without["spans"], "{with} / {without}");
            assert_eq!(with["message"], without["message"]);
        }
        for line in &unspanned[..2] {
            let request = &line["spans"][0];
            assert_eq!(request["request_id"], "req-7", "{line}");
            assert_eq!(request["http.request.method"], "POST");
            assert_eq!(request["http.route"], "/graphql");
            assert_eq!(request["name"], "request");
        }
        assert!(unspanned[2].get("spans").is_none(), "after the request: {}", unspanned[2]);
    }
}
