//! Idempotency keys on mutations (draft-ietf-httpapi-idempotency-key-header):
//! a mutation sent with a key runs at most once per user and key; its
//! answer is recorded in the same transaction as its writes, and a retry
//! with the same key and the same operation gets that answer back, byte for
//! byte, without running anything. This module holds the key's syntax, the
//! operation's fingerprint and the records; `engine` runs the operation.

mod fingerprint;
mod key;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use entity::idempotency_key::{self as record, Column, Entity};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, sea_query::OnConflict,
};
use uuid::Uuid;

pub use self::{fingerprint::fingerprint, key::IdempotencyKey};
use crate::{db::Db, ids::UserId};

/// Where an operation's key goes in its `extensions` (the header's value is
/// put there too, so every transport's requests read alike).
pub const EXTENSION: &str = "idempotencyKey";

/// Keys are kept this long unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Answers kept per user unless configured otherwise.
pub const DEFAULT_PER_USER: u64 = 1_000;

/// The recorded answers, and the keys whose first attempt runs in this
/// process now.
#[derive(Debug)]
pub struct IdempotencyKeys {
    ttl: Duration,
    per_user: u64,
    required: bool,
    running: Mutex<HashSet<(Uuid, String)>>,
}

impl Default for IdempotencyKeys {
    fn default() -> Self {
        Self::new(DEFAULT_TTL, DEFAULT_PER_USER, false)
    }
}

/// A key whose first attempt runs in this process, until dropped.
#[derive(Debug)]
pub struct Running<'k> {
    keys: &'k IdempotencyKeys,
    id: (Uuid, String),
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.keys.running.lock() {
            running.remove(&self.id);
        }
    }
}

impl IdempotencyKeys {
    pub fn new(ttl: Duration, per_user: u64, required: bool) -> Self {
        Self { ttl, per_user, required, running: Mutex::default() }
    }

    /// Whether a mutation without a key is refused (IDEMPOTENCY_KEY_REQUIRED).
    pub fn required(&self) -> bool {
        self.required
    }

    /// How long an answer is kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Marks `key` of `user` as running here; `None` if it already is.
    pub fn start(&self, user: UserId, key: &IdempotencyKey) -> Option<Running<'_>> {
        let id = (user.0, key.as_str().to_owned());
        // Built only once inserted (its drop takes the lock, held here).
        let inserted = self.running.lock().ok()?.insert(id.clone());
        inserted.then(|| Running { keys: self, id })
    }

    /// Takes the key for the transaction `txn` across instances (a
    /// transaction-scoped advisory lock on Postgres); `false` if another
    /// transaction holds it. SQLite's write transaction is one at a time.
    pub async fn lock(
        &self,
        txn: &impl ConnectionTrait,
        user: UserId,
        key: &IdempotencyKey,
    ) -> Result<bool, DbErr> {
        if txn.get_database_backend() != DbBackend::Postgres {
            return Ok(true);
        }
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_try_advisory_xact_lock($1) AS locked",
            [lock_id(user, key).into()],
        );
        let row = txn.query_one_raw(statement).await?;
        row.map_or(Ok(false), |row| row.try_get::<bool>("", "locked"))
    }

    /// The answer recorded for `key` of `user`, unless it expired.
    pub async fn find(
        &self,
        txn: &impl ConnectionTrait,
        user: UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<record::Model>, DbErr> {
        let found = Entity::find_by_id((user.0, key.as_str().to_owned())).one(txn).await?;
        Ok(found.filter(|found| found.created_at > self.expired_before()))
    }

    /// Records the answer of `key`'s first attempt (replacing an expired
    /// one), then drops the user's oldest answers past the bound.
    pub async fn record(
        &self,
        txn: &impl ConnectionTrait,
        user: UserId,
        key: &IdempotencyKey,
        fingerprint: &str,
        answer: &[u8],
    ) -> Result<(), DbErr> {
        let row = record::ActiveModel {
            user_id: Set(user.0),
            key: Set(key.as_str().to_owned()),
            fingerprint: Set(fingerprint.to_owned()),
            status_code: Set(200),
            response: Set(String::from_utf8_lossy(answer).into_owned()),
            created_at: Set(chrono::Utc::now()),
        };
        let replace = OnConflict::columns([Column::UserId, Column::Key])
            .update_columns([
                Column::Fingerprint,
                Column::StatusCode,
                Column::Response,
                Column::CreatedAt,
            ])
            .to_owned();
        Entity::insert(row).on_conflict(replace).exec_without_returning(txn).await?;
        let beyond: Vec<String> = Entity::find()
            .select_only()
            .column(Column::Key)
            .filter(Column::UserId.eq(user.0))
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Key)
            .offset(self.per_user)
            .limit(u64::MAX >> 1)
            .into_tuple()
            .all(txn)
            .await?;
        if !beyond.is_empty() {
            Entity::delete_many()
                .filter(Column::UserId.eq(user.0))
                .filter(Column::Key.is_in(beyond))
                .exec(txn)
                .await?;
        }
        Ok(())
    }

    /// Deletes the expired answers, on one instance at a time (the others
    /// skip while one prunes); how many went.
    pub async fn prune(&self, db: &Db) -> Result<u64, DbErr> {
        let txn = db.begin_write().await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            let statement = Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT pg_try_advisory_xact_lock({PRUNE_LOCK}) AS locked"),
            );
            let locked = match txn.query_one_raw(statement).await? {
                Some(row) => row.try_get::<bool>("", "locked")?,
                None => false,
            };
            if !locked {
                return Ok(0);
            }
        }
        let pruned = Entity::delete_many()
            .filter(Column::CreatedAt.lte(self.expired_before()))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        Ok(pruned)
    }

    fn expired_before(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() - chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX)
    }
}

/// The advisory lock pruning takes ("idemprun" in ASCII).
const PRUNE_LOCK: i64 = 0x6964_656d_7072_756e;

/// The advisory lock of `key` of `user`: the first 8 bytes of the SHA-256
/// of both (a collision only makes two keys wait for each other).
fn lock_id(user: UserId, key: &IdempotencyKey) -> i64 {
    use sha2::{Digest, Sha256};
    let digest =
        Sha256::new().chain_update(user.0.as_bytes()).chain_update(key.as_str()).finalize();
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Prunes expired answers every so often, for as long as the process runs.
pub async fn prune_periodically(keys: Arc<IdempotencyKeys>, db: Db) {
    let every = (keys.ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(600));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match keys.prune(&db).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "expired idempotency keys pruned"),
            Err(err) => tracing::warn!(error = %err, "cannot prune expired idempotency keys"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_runs_once_at_a_time_and_is_free_again_after() {
        let keys = IdempotencyKeys::default();
        let (user, key) = (UserId(Uuid::new_v4()), IdempotencyKey::new("k".into()).expect("key"));
        let running = keys.start(user, &key).expect("free");
        assert!(keys.start(user, &key).is_none(), "running");
        assert!(keys.start(UserId(Uuid::new_v4()), &key).is_some(), "another user's");
        assert!(keys.start(user, &key).is_none(), "still running after a refusal");
        drop(running);
        assert!(keys.start(user, &key).is_some(), "free again");
    }
}
