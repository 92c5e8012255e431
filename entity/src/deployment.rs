//! `deployments`: one row per deployment; `deleted_at` marks a soft delete.

use sea_orm::entity::prelude::*;

use crate::DeploymentStatus;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub status: DeploymentStatus,
    pub target_replicas: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::deployment_replica::Entity")]
    Replica,
    #[sea_orm(has_one = "super::deployment_resources::Entity")]
    Resources,
    #[sea_orm(has_many = "super::deployment_status_history::Entity")]
    StatusHistory,
}

impl Related<super::deployment_replica::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Replica.def()
    }
}

impl Related<super::deployment_resources::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Resources.def()
    }
}

impl Related<super::deployment_status_history::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::StatusHistory.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
