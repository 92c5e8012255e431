//! The accept loop: hyper's HTTP/1 connections with the bounds a public
//! server needs, which `axum::serve` does not expose.
//! - at most `max_connections` open at once; beyond, a new one is closed at
//!   once (an idle-socket flood cannot exhaust file descriptors);
//! - a request head must arrive within `header_read_timeout`, and hyper
//!   runs the same timer while a kept-alive connection waits for its next
//!   request, so a silent connection is closed after it either way;
//! - request heads over `max_header_bytes` get 431;
//! - on shutdown: stop accepting, tell every connection to finish its
//!   request and close, and WebSockets to go away (1001), for up to
//!   `shutdown_timeout`.

use std::{sync::Arc, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::telemetry::{Metrics, Refusal};

/// Connection-level bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves,
/// then drains: every connection is told to finish its request and close
/// (WebSockets with 1001), for up to `limits.shutdown_timeout`.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    going_away: GoingAway,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let mut at_limit = false;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors, say: back off rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if !at_limit {
                tracing::warn!(
                    max = limits.max_connections,
                    "connection limit reached: closing new connections"
                );
                at_limit = true;
            }
            metrics.refused(Refusal::TooManyConnections);
            drop(stream);
            continue;
        };
        at_limit = false;
        let _ = stream.set_nodelay(true);
        let connection = http
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()))
            .with_upgrades();
        let (going_away, metrics) = (going_away.clone(), metrics.clone());
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                served = connection.as_mut() => match served {
                    Err(err) if err.is_timeout() => metrics.refused(Refusal::HeaderReadTimeout),
                    Err(err) if err.is_parse_too_large() => metrics.refused(Refusal::HeadTooLarge),
                    _ => {}
                },
                () = going_away.announced() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    going_away.announce();
    if !going_away.drained(limits.shutdown_timeout).await {
        tracing::warn!(timeout = ?limits.shutdown_timeout, "connections still open at the shutdown timeout");
    }
    Ok(())
}

/// Tells WebSocket tasks the server is going away, and waits for them to
/// have said goodbye (a 1001 close frame each).
#[derive(Debug, Clone)]
pub struct GoingAway {
    sender: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for GoingAway {
    fn default() -> Self {
        Self { sender: Arc::new(tokio::sync::watch::channel(false).0) }
    }
}

impl GoingAway {
    /// Resolves once the server is going away.
    pub async fn announced(&self) {
        let mut receiver = self.sender.subscribe();
        let _ = receiver.wait_for(|going| *going).await;
    }

    fn announce(&self) {
        self.sender.send_replace(true);
    }

    /// Waits until every task that watches `announced` (each connection and
    /// WebSocket) has ended; false if some remain after `timeout`.
    async fn drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.sender.receiver_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}
