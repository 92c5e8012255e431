//! An identity provider's key set, kept fresh: loaded at start (the server
//! is not ready until it is), refreshed on the provider's `Cache-Control:
//! max-age`, and once more when a token names a key it lacks (at most every
//! 30 s, so random `kid`s cannot make the server hammer the provider). A
//! failed refresh keeps the last good keys.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, header};

use super::KeySet;
use crate::config::JwksUrl;

/// Refresh interval when the provider gives no `max-age`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// Bounds on the provider's `max-age`: often enough to follow a rotation,
/// seldom enough to never hammer it.
const MIN_MAX_AGE: Duration = Duration::from_secs(60);
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Shortest interval between two refreshes for unknown `kid`s.
const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(30);
/// Longest wait between attempts while no key set was ever loaded.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Largest JWKS document read; real ones are a few KiB.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// A fetch that takes longer fails (a token waiting on it is refused).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The provider's current keys and what fetching them has cost.
pub struct Jwks {
    url: JwksUrl,
    client: reqwest::Client,
    current: RwLock<Option<Arc<KeySet>>>,
    /// When a token's unknown `kid` last made us fetch; held while fetching,
    /// so a burst of such tokens waits for one fetch.
    last_on_demand: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
    failures: AtomicU64,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("url", &self.url.to_string()).finish_non_exhaustive()
    }
}

impl Jwks {
    pub fn new(url: JwksUrl) -> Result<Arc<Self>, String> {
        let mut client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("deployql/", env!("CARGO_PKG_VERSION")));
        if matches!(&url, JwksUrl::Http(url) if url.starts_with("https://")) {
            client = client.https_only(true);
        }
        let client =
            client.build().map_err(|err| format!("cannot build the JWKS client: {err}"))?;
        Ok(Arc::new(Self {
            url,
            client,
            current: RwLock::new(None),
            last_on_demand: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }))
    }

    /// The keys in use; `None` until the first fetch succeeds.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.current.read().ok().and_then(|keys| keys.clone())
    }

    /// Fetches attempted, and how many of them failed.
    pub fn fetch_counts(&self) -> (u64, u64) {
        (self.fetches.load(Ordering::Relaxed), self.failures.load(Ordering::Relaxed))
    }

    /// Loads the keys, then keeps them fresh for the life of the process.
    pub async fn keep_fresh(self: Arc<Self>) {
        let mut retry = Duration::from_secs(1);
        loop {
            match self.refresh().await {
                Ok(max_age) => {
                    retry = Duration::from_secs(1);
                    tokio::time::sleep(max_age).await;
                }
                Err(err) if self.keys().is_none() => {
                    tracing::error!(
                        url = %self.url, error = %err, retry_in = ?retry,
                        "cannot load the identity provider's signing keys; not ready until they load"
                    );
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
                Err(err) => {
                    tracing::warn!(
                        url = %self.url, error = %err,
                        "cannot refresh the identity provider's signing keys; keeping the last good ones"
                    );
                    tokio::time::sleep(MIN_MAX_AGE).await;
                }
            }
        }
    }

    /// Refreshes for a token whose `kid` the keys lack, unless another
    /// token did within the last 30 s; returns the keys to look it up in.
    pub async fn refresh_for(&self, kid: &str) -> Option<Arc<KeySet>> {
        let mut last = self.last_on_demand.lock().await;
        if let Some(keys) = self.keys().filter(|keys| keys.knows(kid)) {
            return Some(keys);
        }
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_INTERVAL) {
            return None;
        }
        *last = Some(Instant::now());
        if let Err(err) = self.refresh().await {
            tracing::warn!(
                url = %self.url, error = %err,
                "cannot refresh the identity provider's signing keys for an unknown `kid`"
            );
        }
        self.keys()
    }

    /// Fetches and installs the key set; returns how long it stays fresh.
    async fn refresh(&self) -> Result<Duration, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = self.fetch().await.and_then(|(document, max_age)| {
            KeySet::from_jwks(&document).map(|(keys, skipped)| (keys, skipped, max_age))
        });
        let (keys, skipped, max_age) = fetched.inspect_err(|_| {
            self.failures.fetch_add(1, Ordering::Relaxed);
        })?;
        let count = keys.len();
        let first = self.keys().is_none();
        if let Ok(mut current) = self.current.write() {
            *current = Some(Arc::new(keys));
        }
        if first {
            tracing::info!(url = %self.url, keys = count, skipped, "loaded the identity provider's signing keys");
        } else {
            tracing::debug!(url = %self.url, keys = count, skipped, "refreshed the identity provider's signing keys");
        }
        Ok(max_age)
    }

    /// The document and its freshness lifetime.
    async fn fetch(&self) -> Result<(Vec<u8>, Duration), String> {
        let url = match &self.url {
            JwksUrl::File(path) => {
                let document = tokio::fs::read(path)
                    .await
                    .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
                return bounded(document).map(|document| (document, DEFAULT_MAX_AGE));
            }
            JwksUrl::Http(url) => url,
        };
        let mut response = self.client.get(url).send().await.map_err(|err| err.to_string())?;
        if !response.status().is_success() {
            return Err(format!("the provider answered {}", response.status()));
        }
        let max_age = max_age(response.headers());
        let mut document = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| err.to_string())? {
            document.extend_from_slice(&chunk);
            if document.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("the document is larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
        }
        Ok((document, max_age))
    }
}

fn bounded(document: Vec<u8>) -> Result<Vec<u8>, String> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("the document is larger than {MAX_DOCUMENT_BYTES} bytes"));
    }
    Ok(document)
}

/// How long the provider says its keys stay fresh, within 1 min .. 24 h;
/// 10 min when it does not say.
fn max_age(headers: &HeaderMap) -> Duration {
    let directives = headers.get_all(header::CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok());
    let mut max_age = None;
    for directive in directives.flat_map(|value| value.split(',')).map(str::trim) {
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            max_age = Some(Duration::ZERO);
        } else if name.eq_ignore_ascii_case("max-age")
            && let Ok(seconds) = value.trim_matches('"').parse::<u64>()
        {
            max_age = max_age.or(Some(Duration::from_secs(seconds)));
        }
    }
    max_age.unwrap_or(DEFAULT_MAX_AGE).clamp(MIN_MAX_AGE, MAX_MAX_AGE)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn cache_control(value: &str) -> Duration {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
        );
        max_age(&headers)
    }

    #[test]
    fn max_age_is_followed_within_bounds() {
        assert_eq!(cache_control("public, max-age=3600"), Duration::from_secs(3600));
        assert_eq!(cache_control("max-age=5"), MIN_MAX_AGE);
        assert_eq!(cache_control("max-age=999999999"), MAX_MAX_AGE);
        assert_eq!(cache_control("no-cache"), MIN_MAX_AGE);
        assert_eq!(cache_control("public"), DEFAULT_MAX_AGE);
        assert_eq!(max_age(&HeaderMap::new()), DEFAULT_MAX_AGE);
    }
}
