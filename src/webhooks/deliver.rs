//! The deliverer: claims due deliveries from the outbox, signs and sends
//! them, and records what came of each.
//!
//! A claim is one statement that takes a lease on rows no one holds
//! (`FOR UPDATE SKIP LOCKED` on Postgres, so instances claiming at once
//! take different rows; SQLite has one writer) and counts the attempt
//! before it is made. A lease lasts twice the attempt's deadline; if the
//! instance dies holding it, the row is claimed again once it lapses: at
//! least once, with the same `webhook-id`. An outcome is recorded only
//! under the lease it was attempted with.
//!
//! Each endpoint gets at most WEBHOOK_ENDPOINT_CONCURRENCY attempts at
//! once and all together at most WEBHOOK_CONCURRENCY, so a slow receiver
//! holds up only its own deliveries.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use entity::{webhook_delivery as delivery, webhook_endpoint as endpoint};
use reqwest::{Client, Url, header::CONTENT_TYPE, redirect::Policy};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QuerySelect, Statement, Value,
    sea_query::{Expr, ExprTrait, Query},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::{DeliveryState, Webhooks, endpoints::fail_pending, signing, target};
use crate::db::Db;

/// The deliverer looks for due deliveries at least this often (events
/// written here wake it at once; this is for other instances' and retries).
const POLL: Duration = Duration::from_millis(500);
/// How often the outbox gauges are read and old deliveries pruned.
const HOUSEKEEPING: Duration = Duration::from_secs(5);
/// Finished deliveries are kept this long (for `webhookDeliveries`).
const RETENTION: chrono::Duration = chrono::Duration::days(30);
/// Most of a response body read (and dropped): a receiver cannot make
/// the deliverer read without end.
const MAX_BODY: usize = 64 * 1024;
/// Most of a response body quoted in `lastError`.
const QUOTED: usize = 200;

/// A claimed delivery.
#[derive(Debug)]
struct Claimed {
    id: Uuid,
    message_id: String,
    payload: String,
    /// This attempt's number, from 1.
    attempt: i32,
    lease: Uuid,
}

/// What an attempt came to.
#[derive(Debug)]
enum Outcome {
    Delivered(u16),
    Failed { status: Option<u16>, error: String },
}

/// Sends deliveries for as long as the server runs.
#[derive(Debug)]
pub struct Deliverer {
    webhooks: Arc<Webhooks>,
    db: Db,
    client: Client,
    permits: Arc<Semaphore>,
    /// Attempts under way here, per endpoint.
    in_flight: Mutex<HashMap<Uuid, u32>>,
}

impl Deliverer {
    pub fn new(webhooks: Arc<Webhooks>, db: Db) -> Result<Self, String> {
        let config = &webhooks.config;
        let mut client = Client::builder()
            .redirect(Policy::none())
            .timeout(config.webhook_timeout)
            .connect_timeout(config.webhook_timeout)
            .no_proxy()
            .user_agent(concat!("deployql-webhooks/", env!("CARGO_PKG_VERSION")));
        if let Some(resolver) = target::resolver(config.webhook_allow_private_targets) {
            client = client.dns_resolver(resolver);
        }
        let client =
            client.build().map_err(|err| format!("cannot build the webhook client: {err}"))?;
        let permits = Arc::new(Semaphore::new(config.webhook_concurrency as usize));
        Ok(Self { webhooks, db, client, permits, in_flight: Mutex::default() })
    }

    pub async fn run(self) {
        let this = Arc::new(self);
        let mut last_housekeeping: Option<Instant> = None;
        loop {
            if let Err(err) = this.claim_and_send().await {
                tracing::warn!(error = %err, "cannot claim webhook deliveries; retrying");
            }
            if last_housekeeping.is_none_or(|at| at.elapsed() >= HOUSEKEEPING) {
                last_housekeeping = Some(Instant::now());
                if let Err(err) = this.housekeeping().await {
                    tracing::debug!(error = %err, "cannot read the webhook outbox's depth");
                }
            }
            tokio::select! {
                () = this.webhooks.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Claims what this instance may attempt now, per endpoint, and starts it.
    async fn claim_and_send(self: &Arc<Self>) -> Result<(), DbErr> {
        if self.permits.available_permits() == 0 {
            return Ok(());
        }
        let now = Utc::now();
        let due = Query::select()
            .expr(Expr::val(1))
            .from(delivery::Entity)
            .and_where(
                Expr::col((delivery::Entity, delivery::Column::EndpointId))
                    .equals((endpoint::Entity, endpoint::Column::Id)),
            )
            .and_where(
                Expr::col((delivery::Entity, delivery::Column::State))
                    .eq(DeliveryState::Pending.as_str()),
            )
            .and_where(Expr::col((delivery::Entity, delivery::Column::NextAttemptAt)).lte(now))
            .and_where(
                Expr::col((delivery::Entity, delivery::Column::LeaseUntil))
                    .is_null()
                    .or(Expr::col((delivery::Entity, delivery::Column::LeaseUntil)).lt(now)),
            )
            .to_owned();
        let endpoints = endpoint::Entity::find()
            .filter(endpoint::Column::Enabled.eq(true))
            .filter(Expr::exists(due))
            .all(&self.db)
            .await?;
        let per_endpoint = self.webhooks.config.webhook_endpoint_concurrency;
        for endpoint in endpoints {
            let running = self
                .in_flight
                .lock()
                .map_or(per_endpoint, |m| m.get(&endpoint.id).copied().unwrap_or(0));
            let room = per_endpoint.saturating_sub(running) as usize;
            let room = room.min(self.permits.available_permits());
            if room == 0 {
                continue;
            }
            let claimed = self.claim(endpoint.id, room, now).await?;
            let endpoint = Arc::new(endpoint);
            for delivery in claimed {
                let Ok(permit) = self.permits.clone().try_acquire_owned() else { break };
                if let Ok(mut in_flight) = self.in_flight.lock() {
                    *in_flight.entry(endpoint.id).or_default() += 1;
                }
                tokio::spawn(self.clone().attempt(endpoint.clone(), delivery, permit));
            }
        }
        Ok(())
    }

    /// Leases up to `limit` due deliveries of `endpoint`, counting the attempt.
    async fn claim(
        &self,
        endpoint: Uuid,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claimed>, DbErr> {
        let backend = self.db.get_database_backend();
        let lease = Uuid::new_v4();
        // Twice the attempt's deadline: the outcome is recorded well within it.
        let until = now
            + chrono::Duration::from_std(self.webhooks.config.webhook_timeout * 2)
                .unwrap_or(chrono::Duration::minutes(1));
        let lock = if backend == DbBackend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let table = migration::WEBHOOKS.deliveries;
        let sql = format!(
            "UPDATE {table} SET lease = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM {table} WHERE endpoint_id = $3 AND state = 'pending' \
               AND next_attempt_at <= $4 AND (lease_until IS NULL OR lease_until < $4) \
               ORDER BY next_attempt_at LIMIT $5 {lock}) \
             RETURNING id, message_id, payload, attempts"
        );
        let sql = if backend == DbBackend::Sqlite { sql.replace('$', "?") } else { sql };
        let values: Vec<Value> =
            vec![lease.into(), until.into(), endpoint.into(), now.into(), (limit as i64).into()];
        let rows =
            self.db.query_all_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
        rows.iter()
            .map(|row| {
                Ok(Claimed {
                    id: row.try_get("", "id")?,
                    message_id: row.try_get("", "message_id")?,
                    payload: row.try_get("", "payload")?,
                    attempt: row.try_get("", "attempts")?,
                    lease,
                })
            })
            .collect()
    }

    async fn attempt(
        self: Arc<Self>,
        endpoint: Arc<endpoint::Model>,
        claimed: Claimed,
        permit: OwnedSemaphorePermit,
    ) {
        let outcome = self.send(&endpoint, &claimed).await;
        if let Err(err) = self.record(&endpoint, &claimed, outcome).await {
            // The lease lapses and the delivery is attempted again.
            tracing::warn!(error = %err, endpoint_id = %endpoint.id, delivery_id = %claimed.id,
                "cannot record a webhook attempt's outcome; it will be attempted again");
        }
        if let Ok(mut in_flight) = self.in_flight.lock()
            && let Some(running) = in_flight.get_mut(&endpoint.id)
        {
            *running = running.saturating_sub(1);
            if *running == 0 {
                in_flight.remove(&endpoint.id);
            }
        }
        drop(permit);
        self.webhooks.wake.notify_one();
    }

    /// Signs and sends one delivery.
    async fn send(&self, endpoint: &endpoint::Model, claimed: &Claimed) -> Outcome {
        let failed = |error: String| Outcome::Failed { status: None, error };
        let url = match Url::parse(&endpoint.url) {
            Ok(url) => url,
            Err(err) => return failed(format!("bad url: {err}")),
        };
        if let Err(refusal) =
            target::check_literal(&url, self.webhooks.config.webhook_allow_private_targets)
        {
            return failed(refusal);
        }
        let now = Utc::now();
        let mut secrets = vec![endpoint.secret.as_str()];
        if let (Some(previous), Some(until)) =
            (&endpoint.previous_secret, endpoint.previous_secret_until)
            && until > now
        {
            secrets.push(previous);
        }
        let timestamp = now.timestamp();
        let signature =
            signing::signature(&secrets, &claimed.message_id, timestamp, &claimed.payload);
        let sent = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &claimed.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(claimed.payload.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(err) => return failed(error_chain(&err)),
        };
        let status = response.status();
        let mut body = Vec::new();
        while body.len() < MAX_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk[..chunk.len().min(MAX_BODY - body.len())]);
                }
                Ok(None) => break,
                Err(err) if status.is_success() => {
                    tracing::debug!(error = %err, "a webhook receiver's body did not arrive whole");
                    break;
                }
                Err(err) => {
                    return Outcome::Failed {
                        status: Some(status.as_u16()),
                        error: error_chain(&err),
                    };
                }
            }
        }
        if status.is_success() {
            return Outcome::Delivered(status.as_u16());
        }
        let quoted: String = String::from_utf8_lossy(&body).chars().take(QUOTED).collect();
        let error = if status.is_redirection() {
            format!("HTTP {status}: redirects are not followed")
        } else if quoted.trim().is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", quoted.trim())
        };
        Outcome::Failed { status: Some(status.as_u16()), error }
    }

    /// Records an attempt's outcome under its lease, and the endpoint's
    /// failure streak (disabling it past WEBHOOK_DISABLE_AFTER).
    async fn record(
        &self,
        endpoint: &endpoint::Model,
        claimed: &Claimed,
        outcome: Outcome,
    ) -> Result<(), DbErr> {
        let now = Utc::now();
        let metrics = &self.webhooks.metrics;
        let mut row = delivery::ActiveModel {
            lease: Set(None),
            lease_until: Set(None),
            ..Default::default()
        };
        let (state, delivered) = match &outcome {
            Outcome::Delivered(status) => {
                metrics.webhook_attempt("success");
                row.last_status_code = Set(Some(i32::from(*status)));
                row.last_error = Set(None);
                (DeliveryState::Succeeded, true)
            }
            Outcome::Failed { status, error } => {
                metrics.webhook_attempt("failure");
                let schedule = &self.webhooks.config.webhook_retry_schedule.0;
                let wait = usize::try_from(claimed.attempt)
                    .ok()
                    .and_then(|n| schedule.get(n.wrapping_sub(1)));
                tracing::warn!(
                    endpoint_id = %endpoint.id,
                    delivery_id = %claimed.id,
                    webhook_id = %claimed.message_id,
                    attempt = claimed.attempt,
                    status = status.map(i64::from),
                    error = %error,
                    retry_in_ms = wait.map(|wait| wait.as_millis() as u64),
                    "webhook delivery attempt failed"
                );
                row.last_status_code = Set(status.map(i32::from));
                row.last_error = Set(Some(error.clone()));
                match wait {
                    Some(wait) => {
                        row.next_attempt_at = Set(now + jittered(*wait));
                        (DeliveryState::Pending, false)
                    }
                    None => (DeliveryState::Failed, false),
                }
            }
        };
        row.state = Set(state.as_str().to_owned());
        let recorded = delivery::Entity::update_many()
            .set(row)
            .filter(delivery::Column::Id.eq(claimed.id))
            .filter(delivery::Column::Lease.eq(claimed.lease))
            .exec(&self.db)
            .await?;
        if recorded.rows_affected == 1 && state != DeliveryState::Pending {
            metrics.webhook_delivery(state.as_str());
        }
        if delivered && endpoint.failing_since.is_none() {
            return Ok(());
        }
        if delivered {
            endpoint::Entity::update_many()
                .col_expr(
                    endpoint::Column::FailingSince,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .filter(endpoint::Column::Id.eq(endpoint.id))
                .filter(endpoint::Column::FailingSince.is_not_null())
                .exec(&self.db)
                .await?;
            return Ok(());
        }
        endpoint::Entity::update_many()
            .col_expr(endpoint::Column::FailingSince, Expr::value(now))
            .filter(endpoint::Column::Id.eq(endpoint.id))
            .filter(endpoint::Column::FailingSince.is_null())
            .exec(&self.db)
            .await?;
        self.disable_if_failing_too_long(endpoint.id, now).await
    }

    async fn disable_if_failing_too_long(&self, id: Uuid, now: DateTime<Utc>) -> Result<(), DbErr> {
        let after = self.webhooks.config.webhook_disable_after;
        let Ok(span) = chrono::Duration::from_std(after) else { return Ok(()) };
        let disabled = endpoint::Entity::update_many()
            .col_expr(endpoint::Column::Enabled, Expr::value(false))
            .col_expr(
                endpoint::Column::DisabledReason,
                Expr::value(format!(
                    "every delivery failed for {} (WEBHOOK_DISABLE_AFTER): enable it again once the receiver answers",
                    humane(after)
                )),
            )
            .filter(endpoint::Column::Id.eq(id))
            .filter(endpoint::Column::Enabled.eq(true))
            .filter(endpoint::Column::FailingSince.lte(now - span))
            .exec(&self.db)
            .await?;
        if disabled.rows_affected > 0 {
            tracing::warn!(endpoint_id = %id, "webhook endpoint disabled: its deliveries failed for too long");
        }
        // Disabled now or while this attempt ran: nothing of it is retried
        // (the claim passes over disabled endpoints), so it fails too.
        let endpoint = endpoint::Entity::find_by_id(id).one(&self.db).await?;
        if let Some(endpoint) = endpoint.filter(|endpoint| !endpoint.enabled) {
            let why = endpoint.disabled_reason.as_deref().unwrap_or("the endpoint was disabled");
            fail_pending(&self.db, id, why).await?;
        }
        Ok(())
    }

    /// Sets the outbox gauges; deletes finished deliveries past the retention.
    async fn housekeeping(&self) -> Result<(), DbErr> {
        let pending = delivery::Entity::find()
            .filter(delivery::Column::State.eq(DeliveryState::Pending.as_str()));
        let depth = pending.clone().count(&self.db).await?;
        let oldest: Option<DateTime<Utc>> = pending
            .select_only()
            .column_as(delivery::Column::CreatedAt.min(), "oldest")
            .into_tuple::<Option<DateTime<Utc>>>()
            .one(&self.db)
            .await?
            .flatten();
        let age = oldest.map_or(0.0, |oldest| (Utc::now() - oldest).as_seconds_f64().max(0.0));
        self.webhooks.metrics.webhook_outbox(depth, age);
        delivery::Entity::delete_many()
            .filter(delivery::Column::State.ne(DeliveryState::Pending.as_str()))
            .filter(delivery::Column::CreatedAt.lt(Utc::now() - RETENTION))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// `wait`, give or take 10 %, so retries of many deliveries spread out.
fn jittered(wait: Duration) -> chrono::Duration {
    let random = (Uuid::new_v4().as_u128() % 2001) as f64 / 1000.0 - 1.0;
    let wait = wait.mul_f64(1.0 + random / 10.0);
    chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1))
}

/// A duration as WEBHOOK_DISABLE_AFTER would write it.
fn humane(span: Duration) -> String {
    let secs = span.as_secs();
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// An error and its causes: reqwest's own message names only the request.
fn error_chain(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() { "timed out: " } else { "" };
    let mut message = format!("{kind}{err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_spread_by_a_tenth_at_most() {
        for _ in 0..1000 {
            let wait = jittered(Duration::from_secs(100)).num_milliseconds();
            assert!((90_000..=110_000).contains(&wait), "{wait}");
        }
        assert_eq!(humane(Duration::from_secs(5 * 86_400)), "5d");
        assert_eq!(humane(Duration::from_secs(90)), "90s");
    }
}
