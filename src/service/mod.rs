//! The service layer: every SQL statement the API runs lives here.

pub mod demo;
pub mod deployments;
pub mod health;
pub mod mutations;
pub mod pagination;
pub mod plan;
pub mod relations;
pub mod statements;
pub mod validation;
