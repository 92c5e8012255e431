//! Documents known before any request names them (the trusted manifests):
//! each checked in full once, when the server starts or `deployql documents
//! check` runs, by the same bounds and async-graphql rules a request's
//! document meets, and kept parsed for as long as the process lives.

use std::sync::Arc;

use async_graphql::{
    Request, Response, ServerError, ValidationResult,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation},
    parser::types::ExecutableDocument,
};

use super::{refusals, tokens};
use crate::{
    config::Limits,
    graphql::{AppSchema, schema_builder},
};

/// Checks documents against the schema without running them.
pub struct DocumentCheck {
    limits: Limits,
    /// The schema with an extension that stops every request once its
    /// validation passed: what async-graphql offers for validating alone.
    schema: AppSchema,
}

impl std::fmt::Debug for DocumentCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentCheck").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// The error the extension answers a validated request with, so that a
/// response without it is the validation's verdict.
const VALIDATED: &str = "deployql: validated, not executed";

impl DocumentCheck {
    pub fn new(limits: Limits) -> Self {
        Self { limits, schema: schema_builder(limits).extension(StopAfterValidation).finish() }
    }

    /// `text` parsed, if it is a document a request could run: within the
    /// token bound and the limits, and valid against the schema. The error says what is wrong, in one line.
    pub async fn check(&self, text: &str) -> Result<ExecutableDocument, String> {
        if tokens::too_many_tokens(text, self.limits.tokens) {
            return Err(format!("more than {} tokens", self.limits.tokens));
        }
        let mut request = Request::new(text);
        let document =
            request.parsed_query().map_err(|err| refusals::syntax_error(err).message)?.clone();
        refusals::check(&document, &self.limits).map_err(|err| err.message)?;
        // Validation covers every operation of the document; no operation
        // is chosen before it stops.
        let response = self.schema.execute(Request::new(text)).await;
        if let Some(error) = verdict(response) {
            return Err(refusals::validation_error(error).message);
        }
        Ok(document)
    }
}

/// The first error of a validation-only run, if validation refused it.
fn verdict(response: Response) -> Option<ServerError> {
    let mut errors = response.errors.into_iter();
    match errors.next() {
        Some(error) if error.message == VALIDATED => None,
        Some(error) => Some(error),
        None => Some(ServerError::new("the document was not validated", None)),
    }
}

struct StopAfterValidation;

impl ExtensionFactory for StopAfterValidation {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(StopAfterValidation)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for StopAfterValidation {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await?;
        Err(vec![ServerError::new(VALIDATED, None)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_document_is_checked_by_the_schema_and_the_limits_without_running() {
        let check = DocumentCheck::new(Limits::default());
        assert!(check.check("query Q($id: ID!) { deployment(id: $id) { id name } }").await.is_ok());
        assert!(check.check("mutation { deleteDeployment(id: \"x\") { id } }").await.is_ok());
        assert!(check.check("subscription { deploymentUpdated(id: \"x\") { id } }").await.is_ok());
        let two = "query A { deployments { totalCount } } query B { deployment(id: \"1\") { id } }";
        assert!(check.check(two).await.is_ok());

        let unknown = check.check("{ deployment(id: \"1\") { colour } }").await;
        assert!(unknown.is_err_and(|err| err.contains("colour")), "unknown field");
        let second = "query A { __typename } query B { nope }";
        assert!(check.check(second).await.is_err_and(|err| err.contains("nope")));
        assert!(check.check("{ deployment(").await.is_err(), "syntax");
        let deep =
            format!("{{ {}__typename{} }}", "deployments { nodes { ".repeat(8), " } }".repeat(8));
        assert!(check.check(&deep).await.is_err(), "too deep");
    }
}
