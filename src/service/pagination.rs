//! Opaque, stable cursors for the newest-first deployment list.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::ApiError;

pub use crate::config::Limits;

const MAX_PAGE_SIZE: i32 = Limits::MAX_PAGE_SIZE;
const DEFAULT_PAGE_SIZE: i32 = Limits::DEFAULT_PAGE_SIZE;

/// How many rows a `first` argument may return, for the complexity limit;
/// out-of-range values cost what the resolver will refuse anyway.
pub fn page_cost(first: Option<i32>) -> usize {
    first.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE).unsigned_abs() as usize
}

/// Position after a row in `(created_at DESC, id DESC)` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// The position right after `row`.
    pub fn after(row: &entity::deployment::Model) -> Self {
        Self { created_at: row.created_at, id: row.id }
    }

    pub fn encode(&self) -> String {
        // Nanoseconds keep the round trip exact whatever precision the backend stores.
        let nanos = self.created_at.timestamp_nanos_opt().unwrap_or(i64::MAX);
        URL_SAFE_NO_PAD.encode(format!("v1:{nanos}:{}", self.id))
    }

    pub fn decode(cursor: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::bad_input(format!("`after`: `{cursor}` is not a valid cursor"));
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.splitn(3, ':');
        let (Some("v1"), Some(nanos), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let nanos: i64 = nanos.parse().map_err(|_| invalid())?;
        Ok(Self {
            created_at: DateTime::from_timestamp_nanos(nanos),
            id: Uuid::parse_str(id).map_err(|_| invalid())?,
        })
    }
}

/// Checks `first` against 1..=MAX_PAGE_SIZE.
pub fn page_size(first: i32) -> Result<u64, ApiError> {
    if (1..=MAX_PAGE_SIZE).contains(&first) {
        Ok(first.unsigned_abs().into())
    } else {
        Err(ApiError::bad_input(format!(
            "`first` must be between 1 and {MAX_PAGE_SIZE}, got {first}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_exactly() {
        let cursor = Cursor { created_at: Utc::now(), id: Uuid::new_v4() };
        assert_eq!(Cursor::decode(&cursor.encode()).ok(), Some(cursor));
    }

    #[test]
    fn garbage_cursor_is_bad_input() {
        for bad in ["", "not base64!", "djE6eDp5", "djI6MTIzOnV1aWQ"] {
            assert!(matches!(Cursor::decode(bad), Err(ApiError::BadUserInput(_))), "{bad}");
        }
    }

    #[test]
    fn page_size_bounds() {
        assert!(page_size(0).is_err());
        assert_eq!(page_size(1).ok(), Some(1));
        assert_eq!(page_size(100).ok(), Some(100));
        assert!(page_size(101).is_err());
    }
}
