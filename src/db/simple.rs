//! Postgres without prepared statements (`DB_PREPARED_STATEMENTS=false`),
//! for a transaction pooler such as PgBouncer in transaction mode, which
//! hands each transaction to whichever server connection is free: a
//! statement prepared on one is unknown on the next, and its name collides
//! with another client's there. sea-orm's driver prepares every statement
//! (and sqlx sends a Sync between preparing and executing, where the pooler
//! may switch connections), so here each statement goes as one simple
//! query instead, its values written into the text by sea-query's Postgres
//! literal writer, and nothing stays on the server. The statement timeout
//! rides along as `SET LOCAL` in the same message (several statements of one
//! simple query run in one implicit transaction), since a pooler keeps no
//! session setting and stock PgBouncer refuses the `options` startup parameter.

use std::{fmt, sync::Arc, time::Duration};

use sea_orm::{
    DbErr, ExecResult, QueryResult, RuntimeErr, Statement,
    sqlx::{self, PgPool, Postgres},
};
use tokio::sync::Mutex;

/// Called for each statement run (the statement counter).
pub(super) type OnStatement = Arc<dyn Fn() + Send + Sync>;

/// A pool of connections that run simple queries only.
#[derive(Clone)]
pub struct SimplePool {
    pub(super) pool: PgPool,
    /// `SET LOCAL statement_timeout = <ms>; ` or nothing.
    prefix: Arc<str>,
    pub(super) on_statement: Option<OnStatement>,
}

impl fmt::Debug for SimplePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimplePool").field("pool", &self.pool).finish_non_exhaustive()
    }
}

/// `stmt` with its values written into its text.
fn inline(stmt: &Statement) -> String {
    // sea-orm's `Display` writes the values with sea-query's Postgres
    // literal writer (strings quoted and escaped, `E'...'` where needed).
    stmt.to_string()
}

fn query_err(err: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)))
}

fn exec_err(err: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(err)))
}

impl SimplePool {
    pub(super) fn new(pool: PgPool, statement_timeout: Option<Duration>) -> Self {
        let prefix = statement_timeout.map_or_else(String::new, |timeout| {
            format!("SET LOCAL statement_timeout = {}; ", timeout.as_millis())
        });
        Self { pool, prefix: prefix.into(), on_statement: None }
    }

    fn counted(&self, stmt: &Statement) -> String {
        if let Some(on_statement) = &self.on_statement {
            on_statement();
        }
        format!("{}{}", self.prefix, inline(stmt))
    }

    pub(super) async fn query_all(&self, stmt: &Statement) -> Result<Vec<QueryResult>, DbErr> {
        let sql = self.counted(stmt);
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await;
        Ok(rows.map_err(query_err)?.into_iter().map(QueryResult::from).collect())
    }

    pub(super) async fn execute(&self, stmt: &Statement) -> Result<ExecResult, DbErr> {
        let sql = self.counted(stmt);
        let done = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&self.pool).await;
        done.map(ExecResult::from).map_err(exec_err)
    }

    pub(super) async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let sql = format!("{}{sql}", self.prefix);
        let done = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&self.pool).await;
        done.map(ExecResult::from).map_err(exec_err)
    }

    /// A transaction whose statements all run on one server connection,
    /// under the statement timeout.
    pub(super) async fn begin(&self) -> Result<SimpleTransaction, DbErr> {
        let begin = format!("BEGIN; {}", self.prefix);
        let transaction = self
            .pool
            .begin_with(sqlx::AssertSqlSafe(begin))
            .await
            .map_err(|err| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))))?;
        Ok(SimpleTransaction {
            transaction: Mutex::new(Some(transaction)),
            on_statement: self.on_statement.clone(),
        })
    }
}

/// A transaction of a [`SimplePool`]: rolled back if dropped uncommitted.
pub struct SimpleTransaction {
    transaction: Mutex<Option<sqlx::Transaction<'static, Postgres>>>,
    on_statement: Option<OnStatement>,
}

impl fmt::Debug for SimpleTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleTransaction").finish_non_exhaustive()
    }
}

/// The error of using a transaction after its end.
fn ended() -> DbErr {
    DbErr::Custom("the transaction has ended".to_owned())
}

impl SimpleTransaction {
    fn counted(&self, stmt: &Statement) -> String {
        if let Some(on_statement) = &self.on_statement {
            on_statement();
        }
        inline(stmt)
    }

    pub(super) async fn query_all(&self, stmt: &Statement) -> Result<Vec<QueryResult>, DbErr> {
        let sql = self.counted(stmt);
        let mut guard = self.transaction.lock().await;
        let transaction = guard.as_mut().ok_or_else(ended)?;
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_all(&mut **transaction).await;
        Ok(rows.map_err(query_err)?.into_iter().map(QueryResult::from).collect())
    }

    pub(super) async fn execute(&self, stmt: &Statement) -> Result<ExecResult, DbErr> {
        let sql = self.counted(stmt);
        self.execute_unprepared(&sql).await
    }

    pub(super) async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut guard = self.transaction.lock().await;
        let transaction = guard.as_mut().ok_or_else(ended)?;
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        let done = sqlx::raw_sql(sql).execute(&mut **transaction).await;
        done.map(ExecResult::from).map_err(exec_err)
    }

    pub(super) async fn commit(self) -> Result<(), DbErr> {
        let transaction = self.transaction.into_inner().ok_or_else(ended)?;
        transaction.commit().await.map_err(exec_err)
    }
}
