//! The outbox's rows: one per event and endpoint, due at once.

use chrono::{DateTime, Utc};
use entity::{webhook_delivery, webhook_endpoint};
use sea_orm::ActiveValue::Set;
use uuid::Uuid;

use super::{DeliveryState, EventType};

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
