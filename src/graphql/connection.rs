//! The Relay-style `DeploymentConnection` of the list page.

use crate::db::Db;
use async_graphql::{Context, Object, Result, ResultExt};

use entity::deployment;

use super::{
    deployment::Deployment,
    fields::row_object,
    loaders::Loaders,
    prefetch,
    types::{DeploymentStatus, Health},
};
use crate::{
    error::ApiError,
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
}

/// A deployment and its cursor, over the deployment's row.
#[derive(Debug)]
pub struct DeploymentEdge(deployment::Model);

row_object! {
    /// A deployment and its cursor.
    #[Object]
    impl DeploymentEdge, over deployment::Model {
        /// Pass as `after` to continue after this deployment.
        "cursor" cursor(d) -> String = Cursor::after(d).encode();
        resolvers {
            /// The deployment.
            async fn node(&self) -> Deployment {
                Deployment::new(self.0.clone())
            }
        }
    }
}

/// Where a page sits in the whole list.
#[derive(Debug)]
pub struct PageInfo(PageState);

impl PageInfo {
    pub(crate) fn new(state: PageState) -> Self {
        Self(state)
    }
}

/// What `PageInfo` tells of a page.
#[derive(Debug)]
pub(crate) struct PageState {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

impl PageState {
    pub(crate) fn of(page: &Page, has_previous_page: bool) -> Self {
        let cursor = |row: Option<&(deployment::Model, _)>| {
            row.map(|(model, _)| Cursor::after(model).encode())
        };
        Self {
            has_next_page: page.has_next_page,
            has_previous_page,
            start_cursor: cursor(page.rows.first()),
            end_cursor: cursor(page.rows.last()),
        }
    }
}

row_object! {
    /// Where this page sits in the whole list.
    #[Object]
    impl PageInfo, over PageState {
        /// More deployments follow this page.
        "hasNextPage" has_next_page(p) -> bool = p.has_next_page;
        /// This page was requested with `after`, so deployments precede it.
        "hasPreviousPage" has_previous_page(p) -> bool = p.has_previous_page;
        /// Cursor of the first deployment of the page.
        "startCursor" start_cursor(p) -> Option<&str> = p.start_cursor.as_deref();
        /// Cursor of the last deployment of the page; pass it as `after`.
        "endCursor" end_cursor(p) -> Option<&str> = p.end_cursor.as_deref();
    }
}

/// A page of your deployments, newest first.
#[Object]
impl DeploymentConnection {
    /// The deployments with their cursors.
    async fn edges(&self) -> Vec<DeploymentEdge> {
        self.page.rows.iter().map(|(row, _)| DeploymentEdge(row.clone())).collect()
    }
    /// The deployments alone.
    async fn nodes(&self) -> Vec<Deployment> {
        self.page.rows.iter().map(|(row, _)| Deployment::new(row.clone())).collect()
    }
    /// Pagination state.
    async fn page_info(&self) -> PageInfo {
        PageInfo(PageState::of(&self.page, self.has_previous_page))
    }
    /// How many deployments match the filters, across all pages (one extra
    /// query, run only when selected).
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        let db = ctx.data::<Db>()?;
        deployments::count(db, &self.filter).await.extend()
    }
}

/// The arguments of `deployments`, as given.
#[derive(Debug, Clone)]
pub(crate) struct ListArguments {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub status: Option<DeploymentStatus>,
    pub health: Option<Health>,
}

/// What `deployments` reads: whose and which rows, how many, after which.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListRequest {
    pub filter: ListFilter,
    pub first: u64,
    pub after: Option<Cursor>,
}

impl ListArguments {
    /// The arguments checked, for `user`: a page size out of range or a
    /// cursor that does not decode is `BAD_USER_INPUT`.
    pub(crate) fn check(self, user: UserId) -> Result<ListRequest, ApiError> {
        let first =
            pagination::page_size(self.first.unwrap_or(pagination::Limits::DEFAULT_PAGE_SIZE))?;
        let after = self.after.as_deref().map(Cursor::decode).transpose()?;
        let filter = ListFilter {
            user,
            status: self.status.map(Into::into),
            health: self.health.map(Into::into),
        };
        Ok(ListRequest { filter, first, after })
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
        let ListRequest { filter, first, after } =
            ListArguments { first, after, status, health }.check(user).extend()?;
        let selection = ctx.look_ahead();
        let plan =
            prefetch::plan(&[selection.field("nodes"), selection.field("edges").field("node")]);
        let page = deployments::list_page(db, &filter, first, after, &plan).await.extend()?;
        let rows: Vec<_> = page.rows.iter().map(|(row, prefetched)| (row.id, prefetched)).collect();
        prefetch::prime(ctx.data::<Loaders>()?, &plan, &rows).await;
        Ok(DeploymentConnection::new(page, filter, after.is_some()))
    }
}
