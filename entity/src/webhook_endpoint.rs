//! `webhook_endpoints`: a URL a user asked deployment events to be sent
//! to, with the secrets its deliveries are signed with.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub url: String,
    /// The event types sent, comma-separated (`DEPLOYMENT_CREATED,...`).
    pub events: String,
    /// The deployments whose events are sent, comma-separated; null for all
    /// of the user's.
    pub deployment_ids: Option<String>,
    pub enabled: bool,
    /// Why the server disabled it (failing for too long), if it did.
    pub disabled_reason: Option<String>,
    /// `whsec_` and the key in base64.
    pub secret: String,
    /// The secret before the last rotation, still signing until `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTimeUtc>,
    /// The first failed attempt since the last success.
    pub failing_since: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
