//! `deployment_replicas`: the containers of a deployment, written by the scheduler and node agents.

use sea_orm::entity::prelude::*;
use serde::Deserialize;

use crate::ReplicaStatus;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Deserialize)]
#[sea_orm(table_name = "deployment_replicas")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub deployment_id: Uuid,
    pub node_id: Option<Uuid>,
    pub status: ReplicaStatus,
    pub container_id: Option<String>,
    #[serde(deserialize_with = "crate::timestamp::optional", default)]
    pub started_at: Option<DateTimeUtc>,
    #[serde(deserialize_with = "crate::timestamp::optional", default)]
    pub stopped_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::deployment::Entity",
        from = "Column::DeploymentId",
        to = "super::deployment::Column::Id"
    )]
    Deployment,
}

impl Related<super::deployment::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Deployment.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
