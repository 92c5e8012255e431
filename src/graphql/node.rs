//! Relay's object identification: `interface Node`, `node(id:)` and
//! `nodes(ids:)`, so Relay (and any normalized cache) can refetch an object
//! by id alone. Ids are the deployments' UUIDs, as everywhere else.

use async_graphql::{Context, ID, Interface, Object, Result, ResultExt};

use super::{
    deployment::{self, Deployment},
    null_on_error, report,
};
use crate::{config::Limits, error::ApiError};

const MAX_NODES: usize = Limits::MAX_NODES;

/// An object with an id unique across the API, which `node(id:)` fetches again.
#[derive(Interface, Debug)]
#[graphql(field(name = "id", ty = "ID", desc = "The object's id, unique across the API."))]
pub enum Node {
    Deployment(Deployment),
}

/// Relay's refetch entry points.
#[derive(Debug, Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// The object with this id. A missing, foreign, deleted or malformed id
    /// gives null and a `NOT_FOUND` error, exactly like `deployment(id:)`.
    #[graphql(complexity = "10 + child_complexity")]
    async fn node(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The object's id.")] id: ID,
    ) -> Result<Option<Node>> {
        let found = deployment::lookup_each(ctx, std::slice::from_ref(&id)).await?;
        let found = found.and_then(|found| deployment::one(found, &id));
        Ok(null_on_error(ctx, found.map(|deployment| Some(Node::Deployment(deployment)))))
    }

    /// The objects with these ids, in the order given, in one statement: null
    /// (with a `NOT_FOUND` error at its index) where an id is missing,
    /// foreign, deleted or malformed. At most 100 ids.
    #[graphql(complexity = "10 + ids.len() * child_complexity")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The objects' ids, at most 100.")] ids: Vec<ID>,
    ) -> Result<Vec<Option<Node>>> {
        if ids.len() > MAX_NODES {
            return Err(ApiError::bad_input(format!(
                "`ids` may hold at most {MAX_NODES} ids, got {}",
                ids.len()
            )))
            .extend();
        }
        let found = deployment::lookup_each(ctx, &ids).await?.extend()?;
        Ok(found
            .into_iter()
            .enumerate()
            .map(|(index, found)| match found {
                Ok(deployment) => Some(Node::Deployment(deployment)),
                Err(err) => {
                    report(ctx, &err, Some(index));
                    None
                }
            })
            .collect())
    }
}
