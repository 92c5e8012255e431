//! Automatic persisted queries' registrations: a document stored by its
//! SHA-256 when a client sends both, so the hash alone answers afterwards,
//! on every instance. Kept in the database (`persisted_queries`) and, once
//! read, in this process's memory. At most `max` are kept: a registration
//! past it drops the oldest registrations (a client whose hash was dropped
//! gets `PERSISTED_QUERY_NOT_FOUND` and registers it again, as the
//! protocol expects).

use std::sync::{Arc, Mutex};

use entity::persisted_query;
use foldhash::HashMap;
use sea_orm::{
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, sea_query::OnConflict,
};

use crate::db::Db;

/// Registrations kept in memory; when full the map starts over (hot hashes
/// come straight back from the database).
const MEMORY_CAPACITY: usize = 1024;

/// Largest document registered (a larger one runs, as text, every time).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

pub struct Store {
    db: Db,
    /// Whether this server writes (a read-only one keeps registrations in
    /// memory only).
    writes: bool,
    max: u64,
    memory: Mutex<HashMap<String, Arc<str>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("max", &self.max).finish_non_exhaustive()
    }
}

impl Store {
    pub fn new(db: Db, writes: bool, max: u64) -> Self {
        Self { db, writes, max, memory: Mutex::default() }
    }

    /// The document registered under `hash`. A database that cannot answer
    /// reads as a miss: the client then sends the text again.
    pub async fn get(&self, hash: &str) -> Option<Arc<str>> {
        if let Some(text) = self.memory.lock().ok()?.get(hash) {
            return Some(text.clone());
        }
        let found = persisted_query::Entity::find_by_id(hash.to_owned()).one(&self.db).await;
        match found {
            Ok(Some(row)) => {
                let text: Arc<str> = row.document.into();
                self.remember(hash, text.clone());
                Some(text)
            }
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read a persisted query: answered as a miss");
                None
            }
        }
    }

    /// Registers `text` under `hash` (its SHA-256, checked by the caller),
    /// then drops the oldest registrations past the bound. Whether it was
    /// stored: a failed write leaves it in this process's memory only.
    pub async fn register(&self, hash: &str, text: &str) -> bool {
        if text.len() > MAX_DOCUMENT_BYTES {
            return false;
        }
        self.remember(hash, text.into());
        if !self.writes {
            return false;
        }
        let row = persisted_query::ActiveModel {
            hash: Set(hash.to_owned()),
            document: Set(text.to_owned()),
            registered_at: Set(chrono::Utc::now()),
        };
        let inserted = persisted_query::Entity::insert(row)
            .on_conflict(OnConflict::column(persisted_query::Column::Hash).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await;
        match inserted {
            Ok(0) => true,
            Ok(_) => {
                if let Err(err) = self.evict().await {
                    tracing::warn!(error = %err, "cannot drop the oldest persisted queries");
                }
                true
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot store a persisted query: kept in memory");
                false
            }
        }
    }

    /// Drops the registrations past the newest `max`.
    async fn evict(&self) -> Result<(), sea_orm::DbErr> {
        use persisted_query::{Column, Entity};
        let beyond: Vec<String> = Entity::find()
            .select_only()
            .column(Column::Hash)
            .order_by_desc(Column::RegisteredAt)
            .order_by_desc(Column::Hash)
            .offset(self.max)
            .limit(u64::MAX >> 1)
            .into_tuple()
            .all(&self.db)
            .await?;
        if beyond.is_empty() {
            return Ok(());
        }
        if let Ok(mut memory) = self.memory.lock() {
            for hash in &beyond {
                memory.remove(hash);
            }
        }
        Entity::delete_many().filter(Column::Hash.is_in(beyond)).exec(&self.db).await.map(|_| ())
    }

    fn remember(&self, hash: &str, text: Arc<str>) {
        if let Ok(mut memory) = self.memory.lock() {
            if memory.len() >= MEMORY_CAPACITY {
                memory.clear();
            }
            memory.insert(hash.to_owned(), text);
        }
    }
}
