//! Tokens verified recently. A client sends the same token with every
//! request until it expires, and checking its signature costs far more than a
//! lookup (an RSA or ECDSA verification takes tens of microseconds). Entries
//! are keyed by the whole token's SHA-256, so only the very same token hits;
//! each holds the key set it was verified with, and a hit needs that set to
//! still be the current one, so a key removed from the provider's JWKS stops
//! verifying its tokens at once.

use std::sync::Mutex;

use foldhash::HashMap;

use sha2::{Digest, Sha256};

use super::Session;

/// Entries kept at most; beyond, expired ones are dropped, then all.
const CAPACITY: usize = 10_000;

pub(super) type TokenDigest = [u8; 32];

pub(super) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug, Default)]
pub(super) struct Verified {
    entries: Mutex<HashMap<TokenDigest, (Session, u64)>>,
}

impl Verified {
    /// The session of a token verified with the key set of `generation`,
    /// unless it has expired since.
    pub(super) fn get(&self, token: &TokenDigest, generation: u64) -> Option<Session> {
        let entries = self.entries.lock().ok()?;
        let &(session, verified_with) = entries.get(token)?;
        (verified_with == generation && !session.is_expired()).then_some(session)
    }

    pub(super) fn insert(&self, token: TokenDigest, session: Session, generation: u64) {
        let Ok(mut entries) = self.entries.lock() else { return };
        if entries.len() >= CAPACITY {
            entries.retain(|_, (session, verified_with)| {
                *verified_with == generation && !session.is_expired()
            });
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(token, (session, generation));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use uuid::Uuid;

    use super::*;
    use crate::ids::UserId;

    fn session(valid_for: Duration) -> Session {
        Session { user: UserId(Uuid::new_v4()), expires_at: SystemTime::now() + valid_for }
    }

    #[test]
    fn a_hit_needs_the_same_token_the_same_keys_and_time_left() {
        let verified = Verified::default();
        let live = session(Duration::from_secs(60));
        verified.insert(digest("a.b.c"), live, 1);
        assert_eq!(verified.get(&digest("a.b.c"), 1), Some(live));
        assert_eq!(verified.get(&digest("a.b.d"), 1), None, "another token");
        assert_eq!(verified.get(&digest("a.b.c"), 2), None, "another key set");
        verified.insert(digest("x.y.z"), session(Duration::ZERO), 1);
        assert_eq!(verified.get(&digest("x.y.z"), 1), None, "expired");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let verified = Verified::default();
        for n in 0..CAPACITY + 10 {
            verified.insert(digest(&n.to_string()), session(Duration::from_secs(60)), 1);
        }
        assert!(verified.entries.lock().map(|e| e.len()).unwrap_or_default() <= CAPACITY);
    }
}
