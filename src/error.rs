//! The one error type of the API and its mapping to GraphQL `extensions.code`.

use std::sync::Arc;

use async_graphql::ErrorExtensions;
use sea_orm::{DbErr, SqlErr};

/// Every failure a resolver or service can report. Each variant documents the
/// `extensions.code` clients see.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// `UNAUTHENTICATED`: missing or invalid bearer token.
    #[error("{0}")]
    Unauthenticated(String),
    /// `NOT_FOUND`: the same message whether the deployment is missing,
    /// foreign, deleted or its id malformed, so ids of other users leak nothing.
    #[error("Deployment {0} not found or access denied")]
    DeploymentNotFound(String),
    /// `BAD_USER_INPUT`: an argument out of range or malformed; the message names it.
    #[error("{0}")]
    BadUserInput(String),
    /// `CONFLICT`: the change collides with existing data (e.g. a unique name).
    #[error("{0}")]
    Conflict(String),
    /// `INTERNAL_SERVER_ERROR`: the cause is logged, the client sees a generic message.
    #[error("internal server error")]
    Internal(Arc<DbErr>),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::DeploymentNotFound(_) => "NOT_FOUND",
            Self::BadUserInput(_) => "BAD_USER_INPUT",
            Self::Conflict(_) => "CONFLICT",
            Self::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::BadUserInput(message.into())
    }
}

impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        Self::Internal(Arc::new(err))
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        if let Self::Internal(cause) = self {
            tracing::error!(error = %cause, "request failed on an internal error");
        }
        async_graphql::Error::new(self.to_string())
            .extend_with(|_, ext| ext.set("code", self.code()))
    }
}

/// Maps a database error to `Conflict` when it is a unique-constraint
/// violation, keeping every other error internal.
pub trait OnConstraint<T> {
    fn on_unique_violation(self, conflict: impl FnOnce() -> ApiError) -> Result<T, ApiError>;
}

impl<T> OnConstraint<T> for Result<T, DbErr> {
    fn on_unique_violation(self, conflict: impl FnOnce() -> ApiError) -> Result<T, ApiError> {
        self.map_err(|err| match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => conflict(),
            _ => err.into(),
        })
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
