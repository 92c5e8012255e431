//! The Postgres listener: one dedicated connection LISTENing for the
//! triggers' notifications, reconnecting by itself.

use std::{str::FromStr, time::Duration};

use sea_orm::sqlx::{
    self,
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
};
use uuid::Uuid;

use super::{Change, ChangeFeed};

/// The channel the migration's triggers notify.
pub const CHANNEL: &str = migration::CHANGE_CHANNEL;
/// How the listener's connection shows in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "deployql-listener";

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Forwards notifications into `feed` forever. After every (re)connection it
/// sends [`Change::Resync`], so subscribers catch up on what they missed.
pub async fn listen(database_url: String, feed: ChangeFeed) {
    let options = match PgConnectOptions::from_str(&database_url) {
        Ok(options) => options.application_name(APPLICATION_NAME),
        Err(err) => {
            tracing::error!(error = %err, "live updates disabled: bad DATABASE_URL");
            return;
        }
    };
    let pool = PgPoolOptions::new().max_connections(1).connect_lazy_with(options);
    let mut backoff = Duration::from_millis(100);
    loop {
        match connect(&pool).await {
            Ok(mut listener) => {
                tracing::info!(channel = CHANNEL, "listening for deployment changes");
                backoff = Duration::from_millis(100);
                feed.send(Change::Resync);
                forward(&mut listener, &feed).await;
                tracing::warn!("listener connection lost; reconnecting");
            }
            Err(err) => {
                tracing::warn!(error = %err, ?backoff, "cannot listen for deployment changes; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn connect(pool: &sqlx::PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Returns when the connection is lost.
async fn forward(listener: &mut PgListener, feed: &ChangeFeed) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => match Uuid::parse_str(notification.payload()) {
                Ok(id) => feed.send(Change::Deployment(id)),
                Err(_) => {
                    tracing::warn!(payload = notification.payload(), "ignoring a bad notification");
                }
            },
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(error = %err, "listener failed");
                return;
            }
        }
    }
}
