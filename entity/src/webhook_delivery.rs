//! `webhook_deliveries`: the outbox. One row per event and endpoint,
//! attempted until the endpoint answers 2xx or the retries run out.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub user_id: Uuid,
    /// The `webhook-id` header: the same on every attempt of the event.
    pub message_id: String,
    pub event_type: String,
    /// The body sent, JSON.
    pub payload: String,
    /// `pending`, `succeeded` or `failed`.
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    /// The instance attempting it now, and until when its claim holds.
    pub lease: Option<Uuid>,
    pub lease_until: Option<DateTimeUtc>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
