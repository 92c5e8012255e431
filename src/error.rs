//! The one error type of the API and its mapping to GraphQL `extensions.code`.

use std::sync::Arc;

use async_graphql::ErrorExtensions;
use migration::UniqueIndex;
use sea_orm::{DbErr, SqlErr};

/// Every `extensions.code` the API sends besides the variants' own: clients
/// switch on these strings, so each is spelled once, here.
pub mod codes {
    /// The document is not valid GraphQL syntax (Apollo's name).
    pub const GRAPHQL_PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
    /// The document does not fit the schema, or its variables do not fit it (Apollo's name).
    pub const GRAPHQL_VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    /// The document nests selections deeper than allowed.
    pub const QUERY_TOO_DEEP: &str = "QUERY_TOO_DEEP";
    /// The document asks for too much: fields once fragments are expanded,
    /// root fields, introspection, SQL statements or cost.
    pub const QUERY_TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";
    /// The document writes more aliases than allowed.
    pub const TOO_MANY_ALIASES: &str = "TOO_MANY_ALIASES";
    /// The request names no operation the document holds, or needs a name (Apollo's name).
    pub const OPERATION_RESOLUTION_FAILURE: &str = "OPERATION_RESOLUTION_FAILURE";
    /// The HTTP request is not a GraphQL request (body, parameters).
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    /// The request body is larger than allowed.
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
    /// A POST whose body is not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UNSUPPORTED_MEDIA_TYPE";
    /// A mutation or subscription sent with GET.
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
    /// The request asks for a response type the server cannot send.
    pub const NOT_ACCEPTABLE: &str = "NOT_ACCEPTABLE";
    /// The request body did not arrive within the body read timeout.
    pub const REQUEST_TIMEOUT: &str = "REQUEST_TIMEOUT";
    /// This user runs as many requests as allowed at once: retry shortly.
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// A WebSocket connection already runs as many operations as allowed.
    pub const TOO_MANY_OPERATIONS: &str = "TOO_MANY_OPERATIONS";
    /// The server (or its database) cannot take the request now: retry shortly.
    pub const SERVICE_UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";
    /// This user already runs as many subscriptions on the server as allowed.
    pub const TOO_MANY_SUBSCRIPTIONS: &str = "TOO_MANY_SUBSCRIPTIONS";
    /// A mutation sent to a server that serves reads only (`READ_ONLY=true`).
    pub const READ_ONLY_MODE: &str = "READ_ONLY_MODE";

    /// No persisted document has the id the request named it by: send the
    /// document's text (with an automatic persisted query: and its hash, to
    /// register it). The message is Apollo's `PersistedQueryNotFound` for
    /// an automatic persisted query, which Apollo Client matches.
    pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
    /// With TRUSTED_DOCUMENTS_ONLY, a document that is in no trusted
    /// manifest (by id or by text), or an automatic persisted query's registration.
    pub const PERSISTED_QUERY_REQUIRED: &str = "PERSISTED_QUERY_REQUIRED";

    /// A mutation whose idempotency key's first attempt is still running
    /// (HTTP 409 with Retry-After): retry once it has answered.
    pub const IDEMPOTENCY_KEY_IN_USE: &str = "IDEMPOTENCY_KEY_IN_USE";
    /// An idempotency key sent before with another operation (HTTP 422).
    pub const IDEMPOTENCY_KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";
    /// A mutation without an idempotency key, with IDEMPOTENCY_KEY_REQUIRED (HTTP 400).
    pub const IDEMPOTENCY_KEY_REQUIRED: &str = "IDEMPOTENCY_KEY_REQUIRED";

    /// Codes of errors raised before execution: a response made only of
    /// these has no `data` entry (GraphQL over HTTP: a request error).
    pub const REQUEST_ERRORS: [&str; 12] = [
        BAD_REQUEST,
        IDEMPOTENCY_KEY_IN_USE,
        IDEMPOTENCY_KEY_REUSED,
        IDEMPOTENCY_KEY_REQUIRED,
        PERSISTED_QUERY_NOT_FOUND,
        PERSISTED_QUERY_REQUIRED,
        GRAPHQL_PARSE_FAILED,
        GRAPHQL_VALIDATION_FAILED,
        QUERY_TOO_DEEP,
        QUERY_TOO_COMPLEX,
        TOO_MANY_ALIASES,
        OPERATION_RESOLUTION_FAILURE,
    ];
}

/// Why a token was refused: `extensions.reason` next to `UNAUTHENTICATED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No token at all.
    Missing,
    /// Not `Bearer <token>`, or the token is not a JWT.
    Malformed,
    /// Past `exp` plus the leeway.
    Expired,
    /// A JWT, but not one of ours: signature, algorithm or claims.
    Invalid,
}

impl TokenRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "MISSING",
            Self::Malformed => "MALFORMED",
            Self::Expired => "EXPIRED",
            Self::Invalid => "INVALID",
        }
    }
}

/// Every failure a resolver or service can report. Each variant documents the
/// `extensions.code` clients see.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// `UNAUTHENTICATED`, with `extensions.reason` saying why: a missing,
    /// malformed, expired or invalid bearer token.
    #[error("{message}")]
    Unauthenticated { refusal: TokenRefusal, message: String },
    /// `NOT_FOUND`: the same message whether the deployment is missing,
    /// foreign, deleted or its id malformed, so ids of other users leak nothing.
    #[error("Deployment {0} not found or access denied")]
    DeploymentNotFound(String),
    /// `NOT_FOUND` for something other than a deployment (a webhook
    /// endpoint, a delivery): the message says what, the same whether it is
    /// missing, another user's or its id malformed.
    #[error("{0}")]
    NotFound(String),
    /// `BAD_USER_INPUT`: an argument out of range or malformed; the message names it.
    #[error("{0}")]
    BadUserInput(String),
    /// `CONFLICT`: the change collides with existing data (e.g. a unique name).
    #[error("{0}")]
    Conflict(String),
    /// `SERVICE_UNAVAILABLE`: the database is unreachable, slow past its
    /// timeouts, or busy; the request may simply be retried.
    #[error("the database is unavailable; retry shortly")]
    Unavailable(Arc<DbErr>),
    /// `SERVICE_UNAVAILABLE` with `extensions.reason`: the storage takes no
    /// writes now (a SQLite file made read-only while the server runs);
    /// the mutation may be retried.
    #[error("the database takes no writes now ({}); retry shortly", .0.reason())]
    NoWrites(StorageFault),
    /// `SERVICE_UNAVAILABLE`: the identity provider's signing keys have not
    /// loaded yet, so no token can be verified; the request may be retried.
    #[error("the identity provider's signing keys are not loaded yet; retry shortly")]
    KeysUnavailable,
    /// `TOO_MANY_SUBSCRIPTIONS`: the user runs as many subscriptions on this
    /// instance as allowed (`MAX_SUBSCRIPTIONS_PER_USER`).
    #[error("{0}")]
    TooManySubscriptions(String),
    /// `SERVICE_UNAVAILABLE`: this instance is at a capacity bound (such as
    /// `MAX_SUBSCRIPTIONS`); the request may be retried, here or elsewhere.
    #[error("{0}")]
    Busy(String),
    /// `READ_ONLY_MODE`: this server serves reads only (`READ_ONLY=true`);
    /// the mutation must go to a server that writes.
    #[error("this server is read-only (READ_ONLY=true): send mutations to a server that writes")]
    ReadOnlyMode,
    /// `INTERNAL_SERVER_ERROR`: the cause is logged, the client sees a generic message.
    #[error("internal server error")]
    Internal(Arc<DbErr>),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated { .. } => "UNAUTHENTICATED",
            Self::DeploymentNotFound(_) | Self::NotFound(_) => "NOT_FOUND",
            Self::BadUserInput(_) => "BAD_USER_INPUT",
            Self::Conflict(_) => "CONFLICT",
            Self::Unavailable(_) | Self::NoWrites(_) | Self::KeysUnavailable | Self::Busy(_) => {
                codes::SERVICE_UNAVAILABLE
            }
            Self::TooManySubscriptions(_) => codes::TOO_MANY_SUBSCRIPTIONS,
            Self::ReadOnlyMode => codes::READ_ONLY_MODE,
            Self::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::BadUserInput(message.into())
    }

    /// `NOT_FOUND` for a deployment id, quoting at most 64 characters of it.
    pub fn not_found(id: &str) -> Self {
        Self::DeploymentNotFound(echo(id))
    }
}

/// At most 64 characters of client input, for quoting it in a message.
pub fn echo(text: &str) -> String {
    const MAX_ECHO: usize = 64;
    match text.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        if is_unavailable(&err) {
            Self::Unavailable(Arc::new(err))
        } else {
            // Logged here, where it happens, once: a loader's error is shared
            // (cloned) by every key of its batch, and each of those fields
            // reports it to the client.
            tracing::error!(error = %err, "request failed on an internal error");
            Self::Internal(Arc::new(err))
        }
    }
}

/// Why the database cannot take writes: the `extensions.reason` of a
/// `SERVICE_UNAVAILABLE` answer, so a client or an operator tells "the disk
/// is full" from "the database is down".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFault {
    /// `STORAGE_FULL`: no space left (SQLite SQLITE_FULL, Postgres 53100).
    Full,
    /// `READ_ONLY`: the file or the database takes no writes (SQLite
    /// SQLITE_READONLY, Postgres 25006 on a standby).
    ReadOnly,
    /// `STORAGE_ERROR`: the storage failed a read or write (SQLite
    /// SQLITE_IOERR, Postgres 58030).
    Io,
}

impl StorageFault {
    /// Every fault, in declaration order (`fault as usize` indexes it),
    /// for metrics that show each from the start.
    pub const ALL: [Self; 3] = [Self::Full, Self::ReadOnly, Self::Io];

    /// The fault `err` reports, if it is one.
    pub fn of(err: &DbErr) -> Option<Self> {
        match sqlx_error(err)? {
            sea_orm::sqlx::Error::Database(db) => Self::from_code(&db.code()?),
            _ => None,
        }
    }

    /// The fault a database error code (SQLite's number, Postgres'
    /// SQLSTATE) stands for, if any.
    fn from_code(code: &str) -> Option<Self> {
        // SQLite's extended codes keep the primary code in the low byte.
        if let Ok(sqlite) = code.parse::<u32>() {
            return match sqlite & 0xff {
                13 => Some(Self::Full),
                8 => Some(Self::ReadOnly),
                10 => Some(Self::Io),
                _ => None,
            };
        }
        match code {
            "53100" => Some(Self::Full),
            "25006" => Some(Self::ReadOnly),
            "58030" => Some(Self::Io),
            _ => None,
        }
    }

    /// The fault a `reason` names.
    pub fn from_reason(reason: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|fault| fault.reason() == reason)
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::Full => "STORAGE_FULL",
            Self::ReadOnly => "READ_ONLY",
            Self::Io => "STORAGE_ERROR",
        }
    }
}

/// The driver's error behind `err`, if the driver raised it.
fn sqlx_error(err: &DbErr) -> Option<&sea_orm::sqlx::Error> {
    let (DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime)) = err else {
        return None;
    };
    match runtime {
        sea_orm::RuntimeErr::SqlxError(sqlx) => Some(sqlx.as_ref()),
        _ => None,
    }
}

/// Whether `err` says the database cannot be reached, answered in time or
/// take writes (retryable), rather than that a statement is wrong (a bug).
pub fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    if matches!(err, DbErr::ConnectionAcquire(_)) {
        return true;
    }
    let Some(sqlx) = sqlx_error(err) else { return matches!(err, DbErr::Conn(_)) };
    match sqlx {
        Sqlx::Io(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed
        | Sqlx::Tls(_) => true,
        Sqlx::Database(db) => db.code().is_some_and(|code| {
            // Postgres: statement_timeout (57014), shutdown (57P0x), connection
            // exceptions (08xxx); SQLite: busy and locked (5, 6, 517); and
            // either's storage faults (no space, read-only, I/O).
            code == "57014"
                || code.starts_with("57P")
                || code.starts_with("08")
                || ["5", "6", "517"].contains(&code.as_ref())
                || StorageFault::from_code(&code).is_some()
        }),
        _ => matches!(err, DbErr::Conn(_)),
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        // Internal errors are logged where they arise (`From<DbErr>`),
        // unavailability once per change (`http::DatabaseHealth`).
        async_graphql::Error::new(self.to_string()).extend_with(|_, ext| {
            ext.set("code", self.code());
            if let Self::Unauthenticated { refusal, .. } = self {
                ext.set("reason", refusal.reason());
            }
            if let Self::Unavailable(err) = self
                && let Some(fault) = StorageFault::of(err)
            {
                ext.set("reason", fault.reason());
            }
            if let Self::NoWrites(fault) = self {
                ext.set("reason", fault.reason());
            }
        })
    }
}

/// Maps a database error to `Conflict` when it violates the unique index
/// named, keeping every other error (another index's included) internal.
pub trait OnConstraint<T> {
    fn on_unique_violation(
        self,
        index: &UniqueIndex,
        conflict: impl FnOnce() -> ApiError,
    ) -> Result<T, ApiError>;
}

impl<T> OnConstraint<T> for Result<T, DbErr> {
    fn on_unique_violation(
        self,
        index: &UniqueIndex,
        conflict: impl FnOnce() -> ApiError,
    ) -> Result<T, ApiError> {
        self.map_err(|err| match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(message)) if index.is_named_in(&message) => {
                conflict()
            }
            _ => err.into(),
        })
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the events logged at ERROR.
    #[derive(Clone, Default)]
    struct Errors(Arc<std::sync::atomic::AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Errors {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if *event.metadata().level() == tracing::Level::ERROR {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn an_internal_error_shared_by_many_fields_is_logged_once() {
        use tracing_subscriber::layer::SubscriberExt;
        let errors = Errors::default();
        let subscriber = tracing_subscriber::registry().with(errors.clone());
        tracing::subscriber::with_default(subscriber, || {
            let err = ApiError::from(DbErr::Custom("no such column".to_owned()));
            // What a loader hands each of the keys of its failed batch.
            for shared in std::iter::repeat_n(err, 5) {
                assert_eq!(shared.extend().message, "internal server error");
            }
        });
        assert_eq!(errors.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn echoes_of_client_input_are_bounded() {
        assert_eq!(echo("short"), "short");
        assert_eq!(echo(&"x".repeat(1000)).chars().count(), 65);
        assert_eq!(echo(&"é".repeat(100)).chars().count(), 65);
    }
}
