//! Idempotency keys on mutations: how long answers are kept, how many per
//! user, and whether a mutation must carry a key.

use std::time::Duration;

/// What `serve` reads of idempotency keys.
#[derive(Debug, Clone, clap::Args)]
pub struct IdempotencyConfig {
    /// How long a mutation's recorded answer is replayed to a retry with
    /// its key; after it the key is forgotten (pruned in the background)
    /// and may run again.
    #[arg(long, env, default_value = "24h", value_parser = super::parse_duration)]
    pub idempotency_key_ttl: Duration,
    /// Refuse a mutation without an idempotency key (IDEMPOTENCY_KEY_REQUIRED).
    #[arg(long, env, default_value_t = false, action = clap::ArgAction::Set)]
    pub idempotency_key_required: bool,
    /// Recorded answers kept per user; past it, the user's oldest are dropped.
    #[arg(long, env, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_idempotency_keys_per_user: u64,
}
