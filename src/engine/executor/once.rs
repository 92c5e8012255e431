//! A mutation sent with an idempotency key, run at most once: in one
//! transaction holding its writes, the reads of its payload and the record
//! of its answer (see `crate::idempotency`), so the answer is recorded
//! exactly when the effects are. A retry finds the record and gets the
//! answer back, byte for byte; one while the first attempt runs (here or on
//! another instance) is refused with 409; the key with another operation
//! with 422. An attempt that ends without a verdict (the database lost, the
//! deadline passed, the process killed) commits nothing and records nothing,
//! so its retry runs.

use std::{sync::Arc, time::Instant};

use async_graphql::{Request, Response, ServerError, Value};

use super::{SessionExecutor, coded_error};
use crate::{
    db::{Db, Reads, SharedTxn},
    engine::document::Prepared,
    error::{ApiError, codes},
    graphql::mutation::Writes,
    idempotency::{IdempotencyKey, fingerprint},
    telemetry::RequestId,
};

/// What came of a mutation sent with a key.
pub(in crate::engine) enum Once {
    /// It ran now: its response and the JSON recorded for it.
    Ran(Response, Vec<u8>),
    /// It ran before: the recorded JSON.
    Replayed(Vec<u8>),
    /// It did not run (or ran without a verdict, which was not recorded).
    Answered(Response),
}

/// Why a keyed mutation did not run: its code, message and metric outcome.
#[derive(Clone, Copy)]
enum Refused {
    InUse,
    Reused,
}

impl Refused {
    fn code(self) -> &'static str {
        match self {
            Self::InUse => codes::IDEMPOTENCY_KEY_IN_USE,
            Self::Reused => codes::IDEMPOTENCY_KEY_REUSED,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::InUse => {
                "a request with this idempotency key is still running: retry once it has answered"
            }
            Self::Reused => {
                "this idempotency key was used for another operation (document, operation name \
                 or variables): use a new key for a new intent"
            }
        }
    }

    fn outcome(self) -> &'static str {
        match self {
            Self::InUse => "in_use",
            Self::Reused => "reused",
        }
    }
}

impl SessionExecutor {
    pub(in crate::engine) async fn once(
        &self,
        request: Request,
        prepared: &Prepared,
        key: IdempotencyKey,
        started: Instant,
    ) -> Once {
        let user = self.session.user;
        let keys = self.idempotency.clone();
        let Some(writes) = self.writes.clone() else {
            // A read-only server answers READ_ONLY_MODE as usual.
            return Once::Answered(self.execute_prepared(request, prepared, started).await);
        };
        let fingerprint =
            fingerprint(&request.query, request.operation_name.as_deref(), &request.variables);
        let Some(_running) = keys.start(user, &key) else {
            return Once::Answered(self.refused_once(Refused::InUse));
        };
        let unavailable = |err: sea_orm::DbErr| {
            let err = ApiError::Unavailable(Arc::new(err));
            Once::Answered(Response::from_errors(vec![coded_error(&err)]))
        };
        let txn = match writes.db.begin_write().await {
            Ok(txn) => txn,
            Err(err) => return unavailable(err),
        };
        match keys.lock(&txn, user, &key).await {
            Ok(true) => {}
            Ok(false) => return Once::Answered(self.refused_once(Refused::InUse)),
            Err(err) => return unavailable(err),
        }
        match keys.find(&txn, user, &key).await {
            Ok(Some(found)) if found.fingerprint == fingerprint => {
                self.metrics.idempotency("replayed");
                tracing::info!(
                    message = "graphql operation replayed",
                    request_id = RequestId::current().as_ref().map(RequestId::as_str),
                    user = %user.0,
                    operation_name = request.operation_name.as_deref(),
                    idempotent_replayed = true,
                );
                return Once::Replayed(found.response.into_bytes());
            }
            Ok(Some(_)) => return Once::Answered(self.refused_once(Refused::Reused)),
            Ok(None) => {}
            Err(err) => return unavailable(err),
        }
        let shared = Arc::new(SharedTxn::new(txn));
        let within = Db::Within(shared.clone());
        let executor = Self {
            reads: Reads::primary_only(within.clone(), self.metrics.clone()),
            writes: Some(Writes { db: within, file: writes.file.clone() }),
            ..self.clone()
        };
        let response = executor.execute_prepared(request, prepared, started).await;
        drop(executor);
        if !has_verdict(&response) {
            // Rolled back as `shared` drops: nothing happened, nothing recorded.
            return Once::Answered(response);
        }
        let answer = match serde_json::to_vec(&response) {
            Ok(answer) => answer,
            Err(err) => return unavailable(sea_orm::DbErr::Custom(err.to_string())),
        };
        if let Err(err) = keys.record(&*shared, user, &key, &fingerprint, &answer).await {
            return unavailable(err);
        }
        if let Err(err) = shared.commit().await {
            return unavailable(err);
        }
        self.reads.wrote(user.0);
        self.metrics.idempotency("recorded");
        Once::Ran(response, answer)
    }

    fn refused_once(&self, refused: Refused) -> Response {
        self.metrics.idempotency(refused.outcome());
        let mut error = ServerError::new(refused.message(), None);
        let extensions = error.extensions.get_or_insert_with(Default::default);
        extensions.set("code", refused.code());
        if let Some(id) = RequestId::current() {
            extensions.set("requestId", id.as_str());
        }
        Response::from_errors(vec![error])
    }
}

/// Whether `response` is a verdict to record: the operation ran (it has
/// data, or errors at a field's path: a failed non-null root field nulls
/// the data) and its errors, if any, are the mutation's own (NOT_FOUND,
/// CONFLICT, ...), not an unavailable database, a deadline, or a server fault.
fn has_verdict(response: &Response) -> bool {
    let code = |error: &ServerError| match error.extensions.as_ref().and_then(|e| e.get("code")) {
        Some(Value::String(code)) => Some(code.clone()),
        _ => None,
    };
    let ran = response.data != Value::Null || response.errors.iter().any(|e| !e.path.is_empty());
    ran && response.errors.iter().all(|error| {
        code(error).is_some_and(|code| {
            !matches!(
                code.as_str(),
                codes::SERVICE_UNAVAILABLE | "INTERNAL_SERVER_ERROR" | codes::READ_ONLY_MODE
            )
        })
    })
}

/// The replayed answer as a response, flagged (WebSocket and batches).
pub(in crate::engine) fn replayed(answer: &[u8]) -> Response {
    let mut response: Response = serde_json::from_slice(answer).unwrap_or_default();
    response.extensions.insert("idempotentReplayed".to_owned(), Value::Boolean(true));
    response
}
