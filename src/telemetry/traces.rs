//! OpenTelemetry traces, exported over OTLP (HTTP/protobuf) when an endpoint
//! is configured. Spans come from `tracing`: the request (`http`), the
//! operation (`graphql`), the service functions that do work, and each SQL
//! statement (sea-orm's spans, with the statement's text: its shape, since
//! values are always bound parameters).

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{Sampler as SdkSampler, SdkTracerProvider, SpanData},
};

use crate::config::{Sampler, TelemetryConfig};

/// Longest a batch of spans may take to reach the collector.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A tracer provider exporting to `url`, batching spans off the request path;
/// batches the collector does not take are counted in `failures`.
pub(super) fn provider(
    config: &TelemetryConfig,
    url: &str,
    failures: metrics::Counter,
) -> Result<SdkTracerProvider, String> {
    let client =
        ExportClient::new().map_err(|err| format!("cannot build the OTLP client: {err}"))?;
    let exporter = SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(url)
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|err| format!("cannot export traces to {url}: {err}"))?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(Watched::new(exporter, url, failures))
        .with_sampler(sampler(config.otel_traces_sampler, config.otel_traces_sampler_arg))
        .with_resource(
            Resource::builder().with_service_name(config.otel_service_name.clone()).build(),
        )
        .build())
}

fn sampler(sampler: Sampler, ratio: f64) -> SdkSampler {
    let parent_based = |root: SdkSampler| SdkSampler::ParentBased(Box::new(root));
    match sampler {
        Sampler::AlwaysOn => SdkSampler::AlwaysOn,
        Sampler::AlwaysOff => SdkSampler::AlwaysOff,
        Sampler::Traceidratio => SdkSampler::TraceIdRatioBased(ratio),
        Sampler::ParentbasedAlwaysOn => parent_based(SdkSampler::AlwaysOn),
        Sampler::ParentbasedAlwaysOff => parent_based(SdkSampler::AlwaysOff),
        Sampler::ParentbasedTraceidratio => parent_based(SdkSampler::TraceIdRatioBased(ratio)),
    }
}

/// Sends spans with the reqwest client the rest of the server uses. The
/// batch processor exports from a thread of its own, outside the runtime
/// reqwest needs, so each export runs as a task on the server's runtime.
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl ExportClient {
    fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build()?;
        Ok(Self { client, runtime: tokio::runtime::Handle::current() })
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let mut answer = Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(answer.body(body)?)
        });
        sent.await?
    }
}

/// An exporter whose failures are seen: counted, and logged when exporting
/// starts failing and when it recovers (not per batch: a collector that is
/// down would fill the log).
#[derive(Debug)]
struct Watched<E> {
    inner: E,
    url: String,
    failures: metrics::Counter,
    failing: AtomicBool,
}

impl<E> Watched<E> {
    fn new(inner: E, url: &str, failures: metrics::Counter) -> Self {
        Self { inner, url: url.to_owned(), failures, failing: AtomicBool::new(false) }
    }

    /// Notes an export's outcome.
    fn record(&self, exported: &OTelSdkResult) {
        match exported {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(url = %self.url, "trace export recovered");
                }
            }
            Err(err) => {
                self.failures.increment(1);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        url = %self.url,
                        error = %err,
                        "trace export failing: spans are being lost (see \
                         deployql_trace_export_failures_total)"
                    );
                }
            }
        }
    }
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Watched<E>
{
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let exported = self.inner.export(batch).await;
        self.record(&exported);
        exported
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
