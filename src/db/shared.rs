//! One transaction that a whole operation runs in (a mutation with an
//! idempotency key: its writes, the reads of its payload and the record of
//! its answer commit together, or none of them does). The services begin
//! their own transactions as usual; inside a shared one those are
//! savepoints, so a failed write (a name taken, say) is undone alone and the
//! shared transaction goes on, on either backend and through a pooler.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU32, Ordering},
};

use sea_orm::{ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, Statement};

use super::Txn;

/// A transaction shared by an operation's resolvers.
#[derive(Debug)]
pub struct SharedTxn {
    txn: Txn,
    /// Statements owed before the next one: the rollbacks of savepoints
    /// dropped unreleased (a drop cannot run a statement itself).
    owed: Mutex<Vec<String>>,
    savepoints: AtomicU32,
}

impl SharedTxn {
    pub fn new(txn: Txn) -> Self {
        Self { txn, owed: Mutex::default(), savepoints: AtomicU32::new(0) }
    }

    /// Runs the statements owed, in order.
    async fn settle(&self) -> Result<(), DbErr> {
        let owed = std::mem::take(&mut *self.owed.lock().map_err(|_| poisoned())?);
        for sql in owed {
            self.txn.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    /// A savepoint, which [`Savepoint::commit`] releases and a drop rolls back to.
    pub(super) async fn savepoint(self: &Arc<Self>) -> Result<Savepoint, DbErr> {
        let name = format!("deployql_{}", self.savepoints.fetch_add(1, Ordering::Relaxed));
        self.execute_unprepared(&format!("SAVEPOINT {name}")).await?;
        Ok(Savepoint { shared: self.clone(), name, open: true })
    }

    /// Commits everything, once every other holder has let go.
    pub async fn commit(self: Arc<Self>) -> Result<(), DbErr> {
        let shared = Arc::try_unwrap(self)
            .map_err(|_| DbErr::Custom("the operation's transaction is still in use".to_owned()))?;
        shared.settle().await?;
        shared.txn.commit().await
    }
}

fn poisoned() -> DbErr {
    DbErr::Custom("a transaction's state was poisoned".to_owned())
}

/// A savepoint of a [`SharedTxn`]: what a service's transaction is inside one.
#[derive(Debug)]
pub struct Savepoint {
    shared: Arc<SharedTxn>,
    name: String,
    open: bool,
}

impl Savepoint {
    pub(super) fn shared(&self) -> &SharedTxn {
        &self.shared
    }

    pub(super) async fn commit(mut self) -> Result<(), DbErr> {
        self.open = false;
        self.shared
            .execute_unprepared(&format!("RELEASE SAVEPOINT {}", self.name))
            .await
            .map(|_| ())
    }
}

impl Drop for Savepoint {
    fn drop(&mut self) {
        if self.open
            && let Ok(mut owed) = self.shared.owed.lock()
        {
            owed.push(format!("ROLLBACK TO SAVEPOINT {0}; RELEASE SAVEPOINT {0}", self.name));
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for SharedTxn {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.settle().await?;
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.settle().await?;
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.settle().await?;
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.settle().await?;
        self.txn.query_all_raw(stmt).await
    }
}
