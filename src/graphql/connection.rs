//! The Relay-style `DeploymentConnection` of the list page.

use async_graphql::{Context, Object, ResultExt, SimpleObject};
use sea_orm::DatabaseConnection;

use super::deployment::Deployment;
use crate::service::{
    deployments::{self, ListFilter, Page},
    pagination::Cursor,
};

/// A page of deployments.
#[derive(Debug)]
pub struct DeploymentConnection {
    page: Page,
    filter: ListFilter,
    has_previous_page: bool,
}

impl DeploymentConnection {
    pub fn new(page: Page, filter: ListFilter, has_previous_page: bool) -> Self {
        Self { page, filter, has_previous_page }
    }

    fn cursors(&self) -> impl Iterator<Item = String> + '_ {
        self.page
            .rows
            .iter()
            .map(|(row, _)| Cursor { created_at: row.created_at, id: row.id }.encode())
    }
}

#[derive(Debug)]
pub struct DeploymentEdge {
    cursor: String,
    node: Deployment,
}

/// A deployment and its cursor.
#[Object]
impl DeploymentEdge {
    /// Pass as `after` to continue after this deployment.
    async fn cursor(&self) -> &str {
        &self.cursor
    }
    /// The deployment.
    async fn node(&self) -> &Deployment {
        &self.node
    }
}

/// Where this page sits in the whole list.
#[derive(SimpleObject, Debug)]
pub struct PageInfo {
    /// More deployments follow this page.
    pub has_next_page: bool,
    /// This page was requested with `after`, so deployments precede it.
    pub has_previous_page: bool,
    /// Cursor of the first deployment of the page.
    pub start_cursor: Option<String>,
    /// Cursor of the last deployment of the page; pass it as `after`.
    pub end_cursor: Option<String>,
}

/// A page of your deployments, newest first.
#[Object]
impl DeploymentConnection {
    /// The deployments with their cursors.
    async fn edges(&self) -> Vec<DeploymentEdge> {
        self.page
            .rows
            .iter()
            .zip(self.cursors())
            .map(|(row, cursor)| DeploymentEdge { cursor, node: Deployment::new(row.0.clone()) })
            .collect()
    }
    /// The deployments alone.
    async fn nodes(&self) -> Vec<Deployment> {
        self.page.rows.iter().map(|(row, _)| Deployment::new(row.clone())).collect()
    }
    /// Pagination state.
    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.page.has_next_page,
            has_previous_page: self.has_previous_page,
            start_cursor: self.cursors().next(),
            end_cursor: self.cursors().last(),
        }
    }
    /// How many deployments match the filters, across all pages (one extra
    /// query, run only when selected).
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        let db = ctx.data::<DatabaseConnection>()?;
        deployments::count(db, &self.filter).await.extend()
    }
}
