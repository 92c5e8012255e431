//! Webhooks: deployment events sent to the URLs users register, signed per
//! the Standard Webhooks specification and delivered at least once.
//!
//! - [`detect`] turns the change capture (every writer's, every instance's)
//!   into events, comparing each changed deployment with the last view an
//!   event gave of it (kept in the database), and writes the events'
//!   deliveries to the outbox in the same transaction;
//! - [`deliver`] claims due deliveries (one instance each, under a lease),
//!   signs and sends them, and records what came of it, retrying on
//!   WEBHOOK_RETRY_SCHEDULE;
//! - [`endpoints`] is what the GraphQL API does with a user's endpoints.

pub mod deliver;
pub mod detect;
pub mod endpoints;
pub mod events;
pub mod outbox;
pub mod signing;
pub mod target;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::{config::WebhooksConfig, db::Db, live::ChangeFeed, telemetry::Metrics};

/// What an event tells. The names are the payload's `type` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, async_graphql::Enum, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// The health verdict moved (e.g. HEALTHY to DEGRADED); the payload
    /// carries the replica counts that caused it.
    DeploymentHealthChanged,
    /// The lifecycle status moved.
    DeploymentStatusChanged,
    /// A deployment was created.
    DeploymentCreated,
    /// The target replica count changed.
    DeploymentScaled,
    /// A deployment was deleted.
    DeploymentDeleted,
    /// Sent by `sendTestWebhook` only; an endpoint cannot subscribe to it.
    WebhookTest,
}

impl EventType {
    /// The types an endpoint may subscribe to.
    pub const SUBSCRIBABLE: [Self; 5] = [
        Self::DeploymentHealthChanged,
        Self::DeploymentStatusChanged,
        Self::DeploymentCreated,
        Self::DeploymentScaled,
        Self::DeploymentDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeploymentHealthChanged => "DEPLOYMENT_HEALTH_CHANGED",
            Self::DeploymentStatusChanged => "DEPLOYMENT_STATUS_CHANGED",
            Self::DeploymentCreated => "DEPLOYMENT_CREATED",
            Self::DeploymentScaled => "DEPLOYMENT_SCALED",
            Self::DeploymentDeleted => "DEPLOYMENT_DELETED",
            Self::WebhookTest => "WEBHOOK_TEST",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::SUBSCRIBABLE.into_iter().chain([Self::WebhookTest]).find(|t| t.as_str() == name)
    }
}

/// A delivery's state, as stored (lowercase) and as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum DeliveryState {
    /// Not delivered yet: waiting for its next attempt (or in one).
    Pending,
    /// The endpoint answered 2xx.
    Succeeded,
    /// Every attempt failed, or the endpoint was disabled.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(stored: &str) -> Self {
        match stored {
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// What the API and the background tasks share.
#[derive(Debug)]
pub struct Webhooks {
    pub config: WebhooksConfig,
    /// Wakes the deliverer: an event was written, a delivery asked for.
    pub wake: Notify,
    pub metrics: Metrics,
}

impl Webhooks {
    pub fn new(config: WebhooksConfig, metrics: Metrics) -> Self {
        Self { config, wake: Notify::new(), metrics }
    }
}

/// Starts the detector and the deliverer (a server that writes only).
pub fn start(webhooks: Arc<Webhooks>, db: Db, feed: &ChangeFeed) -> Result<(), String> {
    let deliverer = deliver::Deliverer::new(webhooks.clone(), db.clone())?;
    let types: Vec<&'static str> = EventType::SUBSCRIBABLE.iter().map(|t| t.as_str()).collect();
    webhooks.metrics.webhooks_started(&[&types[..], &[EventType::WebhookTest.as_str()]].concat());
    tokio::spawn(detect::detect_forever(webhooks, db, feed.tap().clone()));
    tokio::spawn(deliverer.run());
    Ok(())
}
