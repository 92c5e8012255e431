//! The outbox's rows: one per event and endpoint that wants it, due at once.

use chrono::{DateTime, Utc};
use entity::{webhook_delivery, webhook_endpoint};
use sea_orm::ActiveValue::Set;
use uuid::Uuid;

use super::{DeliveryState, EventType};
use crate::error::ApiError;

/// Deployments one endpoint may name.
pub const MAX_DEPLOYMENT_IDS: usize = 100;

/// A new outbox row: due now.
pub fn outbox_row(
    endpoint: &webhook_endpoint::Model,
    message: &str,
    event_type: EventType,
    payload: &str,
    at: DateTime<Utc>,
) -> webhook_delivery::ActiveModel {
    webhook_delivery::ActiveModel {
        id: Set(Uuid::new_v4()),
        endpoint_id: Set(endpoint.id),
        user_id: Set(endpoint.user_id),
        message_id: Set(message.to_owned()),
        event_type: Set(event_type.as_str().to_owned()),
        payload: Set(payload.to_owned()),
        state: Set(DeliveryState::Pending.as_str().to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(at),
        lease: Set(None),
        lease_until: Set(None),
        last_status_code: Set(None),
        last_error: Set(None),
        created_at: Set(at),
    }
}

/// What an endpoint receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub events: Vec<EventType>,
    /// `None`: all of the user's deployments.
    pub deployments: Option<Vec<Uuid>>,
}

impl Subscription {
    pub fn of(endpoint: &webhook_endpoint::Model) -> Self {
        Self {
            events: endpoint.events.split(',').filter_map(EventType::parse).collect(),
            deployments: endpoint
                .deployment_ids
                .as_deref()
                .map(|ids| ids.split(',').filter_map(|id| Uuid::parse_str(id).ok()).collect()),
        }
    }

    pub fn wants(&self, event_type: EventType, deployment: Uuid) -> bool {
        self.events.contains(&event_type)
            && self.deployments.as_ref().is_none_or(|ids| ids.contains(&deployment))
    }

    pub(super) fn stored_events(events: &[EventType]) -> Result<String, ApiError> {
        if events.is_empty() {
            return Err(ApiError::bad_input("events: name at least one event type"));
        }
        if events.contains(&EventType::WebhookTest) {
            return Err(ApiError::bad_input(
                "events: WEBHOOK_TEST is sent by sendTestWebhook only and cannot be subscribed to",
            ));
        }
        let mut names: Vec<&str> = Vec::new();
        for event_type in events {
            if !names.contains(&event_type.as_str()) {
                names.push(event_type.as_str());
            }
        }
        Ok(names.join(","))
    }

    pub(super) fn stored_deployments(ids: Option<&[String]>) -> Result<Option<String>, ApiError> {
        let Some(ids) = ids else { return Ok(None) };
        if ids.len() > MAX_DEPLOYMENT_IDS {
            return Err(ApiError::bad_input(format!(
                "deploymentIds: at most {MAX_DEPLOYMENT_IDS}; omit it for all your deployments"
            )));
        }
        let mut parsed: Vec<String> = Vec::new();
        for id in ids {
            let id = Uuid::parse_str(id).map_err(|_| {
                ApiError::bad_input(format!(
                    "deploymentIds: `{}` is not a deployment id",
                    crate::error::echo(id)
                ))
            })?;
            if !parsed.contains(&id.to_string()) {
                parsed.push(id.to_string());
            }
        }
        Ok(Some(parsed.join(",")))
    }
}
