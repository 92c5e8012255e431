//! Built SQL kept per query shape. Generating a planned statement with
//! sea-query (every column of every relation, per backend) cost more CPU
//! than the rest of a status lookup's SQL work; its text depends only on the
//! shape (backend, plan, number of ids), so it is built once per shape and
//! later requests only supply their values.

use std::{
    hash::Hash,
    sync::{Arc, Mutex},
};

use foldhash::HashMap;

use sea_orm::{DbBackend, Statement, Value};

/// Shapes kept; past this, statements are built every time, so a client
/// cycling through shapes cannot grow the cache.
const CAPACITY: usize = 512;

/// A statement's text and the values that come before the per-request ones
/// (those the shape itself fixes, such as a history limit).
#[derive(Debug)]
struct Built {
    sql: Arc<str>,
    fixed: Vec<Value>,
}

#[derive(Debug)]
pub(crate) struct StatementCache<K> {
    built: Mutex<HashMap<K, Arc<Built>>>,
}

impl<K> Default for StatementCache<K> {
    fn default() -> Self {
        Self { built: Mutex::default() }
    }
}

impl<K: Hash + Eq> StatementCache<K> {
    /// The statement of shape `key` whose values end in `values`; `build`
    /// builds it (with exactly these values last) when the shape is new.
    pub(crate) fn statement(
        &self,
        key: K,
        backend: DbBackend,
        values: Vec<Value>,
        build: impl FnOnce() -> Statement,
    ) -> Statement {
        let cached = self.built.lock().ok().and_then(|built| built.get(&key).cloned());
        if let Some(built) = cached {
            let all = built.fixed.iter().cloned().chain(values).collect::<Vec<_>>();
            return Statement::from_sql_and_values(backend, built.sql.to_string(), all);
        }
        let statement = build();
        let built = statement.values.as_ref().map(|all| &all.0).and_then(|all| {
            // Only a statement whose per-request values come last, as given,
            // can be reused with other values.
            let fixed = all.len().checked_sub(values.len())?;
            (all[fixed..] == values[..])
                .then(|| Built { sql: statement.sql.as_str().into(), fixed: all[..fixed].to_vec() })
        });
        if let (Some(built), Ok(mut cache)) = (built, self.built.lock())
            && cache.len() < CAPACITY
        {
            cache.insert(key, Arc::new(built));
        }
        statement
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
    }

    #[test]
    fn a_shape_is_built_once_and_takes_new_values() {
        let cache = StatementCache::default();
        let first = cache.statement("shape", DbBackend::Postgres, vec![1.into()], || {
            statement("SELECT $1, $2", vec![10.into(), 1.into()])
        });
        assert_eq!(first.values.map(|v| v.0), Some(vec![10.into(), 1.into()]));
        let second = cache.statement("shape", DbBackend::Postgres, vec![2.into()], || {
            unreachable!("the shape is cached")
        });
        assert_eq!(second.sql, "SELECT $1, $2");
        assert_eq!(second.values.map(|v| v.0), Some(vec![10.into(), 2.into()]));
    }

    #[test]
    fn a_statement_whose_values_do_not_end_as_given_is_not_kept() {
        let cache = StatementCache::default();
        cache.statement("shape", DbBackend::Postgres, vec![1.into()], || {
            statement("SELECT $1, $2", vec![1.into(), 10.into()])
        });
        let rebuilt = cache.statement("shape", DbBackend::Postgres, vec![2.into()], || {
            statement("SELECT $1, $2", vec![2.into(), 10.into()])
        });
        assert_eq!(rebuilt.values.map(|v| v.0), Some(vec![2.into(), 10.into()]));
    }
}
