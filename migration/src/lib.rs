//! Schema migrations for deployql. Shipped migrations are history: never edit
//! one, add a new one.

// `MigrationTrait` takes `&SchemaManager` with an elided lifetime; spelling it
// `<'_>` makes async-trait bind it early and no longer match the trait.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_create_deployment_tables;
mod m20261126_000002_unique_live_deployment_name;
mod m20261126_000003_notify_deployment_changes;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_deployment_tables::Migration),
            Box::new(m20261126_000002_unique_live_deployment_name::Migration),
            Box::new(m20261126_000003_notify_deployment_changes::Migration),
        ]
    }
}
