//! `webhook_deployment_states`: each deployment as the last webhook event
//! described it, and how many events it has had.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deployment_states")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub deployment_id: Uuid,
    pub user_id: Uuid,
    /// The last event's sequence number (0 before the first).
    pub sequence: i64,
    /// The deployment as the last event described it (JSON); null for a
    /// deployment that existed before webhooks did, not described yet.
    pub snapshot: Option<String>,
    pub deleted: bool,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
