//! The Relay-style `DeploymentConnection` of the list page.

use crate::db::Db;
use async_graphql::{Context, Object, Result, ResultExt, SimpleObject};

use super::{
    deployment::Deployment,
    loaders::Loaders,
    prefetch,
    types::{DeploymentStatus, Health},
};
use crate::{
    ids::UserId,
    service::{
        deployments::{self, ListFilter, Page},
        pagination::{self, Cursor},
    },
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
        let db = ctx.data::<Db>()?;
        deployments::count(db, &self.filter).await.extend()
    }
}

/// The list of deployments.
#[derive(Debug, Default)]
pub struct ListQuery;

#[Object]
impl ListQuery {
    /// Your deployments, newest first, `first` (1 to 100) at a time.
    #[graphql(complexity = "10 + pagination::page_cost(first) * child_complexity")]
    async fn deployments(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size, 1 to 100 (null means 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last row of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only deployments in this status.")] status: Option<DeploymentStatus>,
        #[graphql(desc = "Only deployments with this health.")] health: Option<Health>,
    ) -> Result<DeploymentConnection> {
        let user = *ctx.data::<UserId>()?;
        let db = ctx.data::<Db>()?;
        let first = pagination::page_size(first.unwrap_or(pagination::Limits::DEFAULT_PAGE_SIZE))
            .extend()?;
        let after = after.as_deref().map(pagination::Cursor::decode).transpose().extend()?;
        let filter = deployments::ListFilter {
            user,
            status: status.map(Into::into),
            health: health.map(Into::into),
        };
        let selection = ctx.look_ahead();
        let plan =
            prefetch::plan(&[selection.field("nodes"), selection.field("edges").field("node")]);
        let page = deployments::list_page(db, &filter, first, after, &plan).await.extend()?;
        let rows: Vec<_> = page.rows.iter().map(|(row, prefetched)| (row.id, prefetched)).collect();
        prefetch::prime(ctx.data::<Loaders>()?, &plan, &rows).await;
        Ok(DeploymentConnection::new(page, filter, after.is_some()))
    }
}
