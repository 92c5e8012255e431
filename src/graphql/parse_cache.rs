//! Caches parsed documents by query text. A frontend sends the same few
//! documents over and over with different variables; parsing them (pest) was
//! the largest share of the server's CPU per status lookup. Validation and
//! the abuse limits still run on every request: only parsing is skipped.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_graphql::{
    ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::ExecutableDocument,
};

/// Distinct documents kept; when full the cache starts over, so hot
/// documents come straight back and junk cannot pin memory.
const CAPACITY: usize = 128;
/// Longer documents are parsed every time rather than held in memory.
const MAX_QUERY_BYTES: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct ParseCache(Arc<ParseCacheExtension>);

#[derive(Debug, Default)]
pub(super) struct ParseCacheExtension {
    documents: Mutex<HashMap<String, ExecutableDocument>>,
}

impl ExtensionFactory for ParseCache {
    fn create(&self) -> Arc<dyn Extension> {
        self.0.clone()
    }
}

#[async_trait::async_trait]
impl Extension for ParseCacheExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if let Some(document) = self.lookup(query) {
            return Ok(document);
        }
        let document = next.run(ctx, query, variables).await?;
        if query.len() <= MAX_QUERY_BYTES
            && let Ok(mut documents) = self.documents.lock()
        {
            if documents.len() >= CAPACITY {
                documents.clear();
            }
            documents.insert(query.to_owned(), document.clone());
        }
        Ok(document)
    }
}

impl ParseCacheExtension {
    fn lookup(&self, query: &str) -> Option<ExecutableDocument> {
        self.documents.lock().ok()?.get(query).cloned()
    }
}
