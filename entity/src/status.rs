//! Statuses, stored as lowercase text so that other services can write them.

use sea_orm::entity::prelude::*;
use serde::Deserialize;

/// Lifecycle state of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum DeploymentStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "scheduled")]
    Scheduled,
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "stopped")]
    Stopped,
    #[sea_orm(string_value = "failed")]
    Failed,
}

/// Lifecycle state of one replica (container) of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum ReplicaStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "starting")]
    Starting,
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "stopping")]
    Stopping,
    #[sea_orm(string_value = "stopped")]
    Stopped,
    #[sea_orm(string_value = "failed")]
    Failed,
}
