//! `idempotency_keys`: the answer of a mutation a user sent with an
//! idempotency key, replayed to a retry with the same key.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// SHA-256 (hex) of the operation as executed: document, operation
    /// name and variables, canonicalized.
    pub fingerprint: String,
    /// The HTTP status the answer had.
    pub status_code: i32,
    /// The answer's JSON, byte for byte.
    pub response: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
