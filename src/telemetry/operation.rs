//! What the running code works for: the GraphQL operation (or background
//! task) a SQL statement belongs to, so statements are counted per entry
//! point and per operation without passing a counter through every call.
//! Kept in a task-local: async-graphql resolves an operation's fields in
//! the operation's task, and its DataLoaders' tasks are started inside the
//! scope (see `graphql::loaders`).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use metrics::SharedString;

tokio::task_local! {
    static CURRENT: Arc<Scope>;
}

/// One operation's (or task's) share of the statements.
#[derive(Debug)]
pub struct Scope {
    entry_point: SharedString,
    statements: AtomicU64,
}

impl Scope {
    /// A scope whose statements count under `entry_point` (a root field,
    /// such as `query.deployment`, or a background task's name).
    pub fn new(entry_point: impl Into<SharedString>) -> Arc<Self> {
        Arc::new(Self { entry_point: entry_point.into(), statements: AtomicU64::new(0) })
    }

    /// Statements run in this scope so far.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Runs `work` in this scope.
    pub async fn run<F: Future>(self: Arc<Self>, work: F) -> F::Output {
        CURRENT.scope(self, work).await
    }

    /// Runs `poll` (one poll of a stream, say) in this scope.
    pub fn enter<R>(self: &Arc<Self>, poll: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), poll)
    }

    /// The scope the running task is in, if any.
    pub fn current() -> Option<Arc<Self>> {
        CURRENT.try_with(Arc::clone).ok()
    }
}

/// Notes a statement in the current scope; its entry point, or `other`
/// for a statement run outside any.
pub fn statement_run() -> SharedString {
    CURRENT
        .try_with(|scope| {
            scope.statements.fetch_add(1, Ordering::Relaxed);
            scope.entry_point.clone()
        })
        .unwrap_or(SharedString::const_str("other"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn statements_count_in_the_scope_they_run_in() {
        let scope = Scope::new("query.deployment");
        let entry = scope.clone().run(async { statement_run() }).await;
        assert_eq!(entry.as_ref(), "query.deployment");
        scope.enter(statement_run);
        assert_eq!(scope.statements(), 2);
        assert_eq!(statement_run().as_ref(), "other");
        assert_eq!(scope.statements(), 2, "outside the scope nothing is added");
    }
}
