//! What each subcommand does, so `main` only parses and dispatches.

use std::{sync::Arc, time::Duration};

use async_graphql::parser::types::ExecutableDocument;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use tokio::net::TcpListener;

use crate::{
    auth::{ClaimRules, Jwks, JwtKeys},
    config::{Config, DatabaseConfig, JwtSecret, TokenKeys},
    db::{self, Access, StatementCounter},
    engine,
    error::StorageFault,
    http,
    idempotency::{self, IdempotencyKeys},
    live,
    persisted::{
        PersistedDocuments,
        manifest::{self, Manifests},
        store::Store,
    },
    service::demo,
    telemetry::Metrics,
    webhooks,
};

pub type AppResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long the dev-mode demo token is valid.
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Connects and applies pending migrations, on a pool of its own: the
/// requests' pool bounds statements, and a migration may rightly take long.
/// Processes starting at once take turns (see `db::MigrationTurn`).
pub async fn connect_and_migrate(config: &DatabaseConfig) -> AppResult<DatabaseConnection> {
    let url = &config.database_url;
    db::check_writable(url)?;
    let _turn = db::MigrationTurn::take(url).await?;
    let db = db::connect(url, config.db_max_connections)
        .await
        .map_err(|err| format!("cannot connect to {}: {err}", redacted(url)))?;
    db::migrate_in_turn(&db, |state| refuse_newer(state, url)).await.map_err(|err| {
        let db_err = err.downcast_ref::<sea_orm::DbErr>();
        match db_err.map(|db_err| (db_err, StorageFault::of(db_err))) {
            Some((db_err, Some(StorageFault::ReadOnly))) => read_only(url, db_err),
            Some(_) => format!("migration failed: {err}"),
            None => err.to_string(),
        }
    })?;
    // A file that opens but takes no writes would answer every read and
    // fail every mutation: refused here, with the reason.
    if let Err(err) = db::probe_write(&db).await {
        return Err(match StorageFault::of(&err) {
            Some(StorageFault::ReadOnly) => read_only(url, &err),
            _ => format!("the database takes no writes: {err}"),
        }
        .into());
    }
    Ok(db)
}

/// `Ok(true)` when `state` comes from an older release or this one (so
/// its pending migrations may be applied); `Ok(false)`, with a warning,
/// when a newer release migrated the database and this build's
/// migrations are all applied (an old instance during a rolling upgrade
/// serves on); an error when it is neither.
fn refuse_newer(state: &db::MigrationState, url: &str) -> AppResult<bool> {
    if state.unknown.is_empty() {
        return Ok(true);
    }
    if !state.pending.is_empty() {
        return Err(format!(
            "the database at {} has migrations this build does not know ({}) and lacks ones \
             it needs ({}): it was migrated by a different line of releases",
            redacted(url),
            state.unknown.join(", "),
            state.pending.join(", ")
        )
        .into());
    }
    tracing::warn!(
        unknown = %state.unknown.join(", "),
        "a newer release migrated the database: this build applies nothing and serves on"
    );
    Ok(false)
}

/// The requests' pool, and a one-connection pool for `/readyz`, so that a
/// busy request pool never reads as an unreachable database.
async fn connect_for_requests(
    config: &DatabaseConfig,
    timeouts: db::DbTimeouts,
    access: Access,
    file: Option<&Arc<db::FileWatch>>,
) -> AppResult<(db::Db, db::Db, db::Db)> {
    let url = &config.database_url;
    let cannot = |err: sea_orm::DbErr| format!("cannot connect to {}: {err}", redacted(url));
    let prepared = config.db_prepared_statements;
    let connect =
        |max| db::connect_for_requests(url, max, timeouts, access, file.cloned(), prepared);
    let requests = connect(config.db_max_connections).await.map_err(cannot)?;
    let readiness = connect(1).await.map_err(cannot)?;
    // The webhook detector and deliverer: off the request pool, so a slow
    // or unreachable database holds none of the requests' connections.
    let background = connect(2).await.map_err(cannot)?;
    Ok((requests, readiness, background))
}

/// Readies the database for a server of `access`: a writing one migrates
/// it (unless MIGRATE_ON_START=false) and takes the SQLite file's serving
/// lock (held until the returned value drops); the others only check that
/// its schema has this build's migrations.
async fn prepare_database(config: &Config, access: Access) -> AppResult<Option<db::ServingLock>> {
    let url = &config.database.database_url;
    if access == Access::ReadWrite && config.migrate_on_start {
        connect_and_migrate(&config.database).await?.close().await.ok();
    } else {
        let state = db::migration_state_at(url)
            .await
            .map_err(|err| format!("cannot read the schema of {}: {err}", redacted(url)))?;
        if !state.pending.is_empty() {
            let why = if config.read_only { "READ_ONLY" } else { "MIGRATE_ON_START=false" };
            return Err(format!(
                "the database at {} lacks {} migration(s) this build needs ({}), and with {why} \
                 the server applies none: run `deployql migrate` first",
                redacted(url),
                state.pending.len(),
                state.pending.join(", ")
            )
            .into());
        }
        refuse_newer(&state, url)?;
    }
    if access == Access::ReadOnly {
        return Ok(None);
    }
    // Held until the server stops: a second server on the file, having
    // taken its turn to migrate (nothing left to do), is refused here.
    Ok(db::ServingLock::take(url, config.listen_addr)?)
}

/// Refuses, naming `DB_PREPARED_STATEMENTS=false`, a Postgres URL (`what`
/// says which) that reaches the database through a transaction pooler.
async fn refuse_transaction_pooler(url: &str, what: &str) -> AppResult<()> {
    if db::behind_transaction_pooler(url).await? {
        return Err(pooler_refusal(what).into());
    }
    Ok(())
}

/// Why a URL behind a transaction pooler is refused with prepared statements.
fn pooler_refusal(what: &str) -> String {
    format!(
        "{what} reaches Postgres through a transaction pooler (a statement prepared on one \
         connection was found on another): set DB_PREPARED_STATEMENTS=false, or connect to \
         Postgres directly"
    )
}

/// Where queries read: the primary alone, or also the replicas of
/// DATABASE_REPLICA_URLS within REPLICA_MAX_LAG (see `db::Reads`). A
/// replica down at start is no reason not to serve: it serves once it
/// answers.
async fn reads(
    config: &Config,
    primary: &db::Db,
    timeouts: db::DbTimeouts,
    statements: &StatementCounter,
) -> AppResult<db::Reads> {
    let metrics = statements.metrics().clone();
    let urls: Vec<&String> =
        config.database_replica_urls.iter().filter(|url| !url.trim().is_empty()).collect();
    if urls.is_empty() {
        return Ok(db::Reads::primary_only(primary.clone(), metrics));
    }
    let url = &config.database.database_url;
    if !url.starts_with("postgres") {
        return Err("DATABASE_REPLICA_URLS needs a Postgres DATABASE_URL (replicas are \
                    Postgres hot standbys)"
            .into());
    }
    let prepared = config.database.db_prepared_statements;
    let mut replicas = Vec::with_capacity(urls.len());
    for (index, replica) in urls.into_iter().enumerate() {
        let what = format!("DATABASE_REPLICA_URLS entry {index} ({})", redacted(replica));
        if !replica.starts_with("postgres") {
            return Err(format!("{what} is not a postgres:// URL").into());
        }
        if prepared {
            match db::behind_transaction_pooler(replica).await {
                Ok(true) => return Err(pooler_refusal(&what).into()),
                Ok(false) => {}
                Err(error) => tracing::warn!(replica = index, %error,
                    "replica unreachable at start: reads go to the primary until it answers"),
            }
        }
        let max = config.database.db_max_connections;
        let (mut requests, poll) = db::connect_replica(replica, max, timeouts, prepared)
            .await
            .map_err(|err| format!("{what}: {err}"))?;
        statements.install(&mut requests);
        replicas.push((requests, poll));
    }
    let poll = db::connect_for_requests(url, 1, timeouts, Access::ReadWrite, None, prepared)
        .await
        .map_err(|err| format!("cannot connect to {}: {err}", redacted(url)))?;
    tracing::info!(
        replicas = replicas.len(),
        max_lag_ms = config.replica_max_lag.as_millis(),
        "queries read from replicas within REPLICA_MAX_LAG"
    );
    Ok(db::Reads::with_replicas(primary.clone(), poll, replicas, config.replica_max_lag, metrics))
}

/// `deployql serve`: migrate, then serve until SIGINT or SIGTERM.
pub async fn serve(config: Config, metrics: Metrics) -> AppResult<()> {
    let token_keys = config.token_keys()?;
    let dev = match token_keys {
        TokenKeys::Unset if config.dev_mode() => true,
        TokenKeys::Unset => {
            return Err(format!(
                "no way to verify tokens is configured and {} is not the default SQLite file: \
                 set JWT_SECRET (at least 32 random bytes: `openssl rand -hex 32`), or \
                 JWKS_URL or JWT_PUBLIC_KEY_FILE for an identity provider's tokens, or pass \
                 --dev (DEV_MODE=true) to run dev mode, with demo data and a printed token, \
                 against this database",
                redacted(&config.database.database_url)
            )
            .into());
        }
        _ => false,
    };
    // A JWKS loads beside the migrations; `/readyz` waits for its keys.
    let configured_keys = configured_keys(token_keys)?;
    let (access, config) = if config.read_only {
        let mut config = config;
        config.database.database_url = db::for_reading(&config.database.database_url);
        (Access::ReadOnly, config)
    } else {
        (Access::ReadWrite, config)
    };
    engine::require_registry().await?;
    // A bad manifest stops the start before anything else is opened.
    let (manifests, known) = trusted_documents(&config).await?;
    let _serving = prepare_database(&config, access).await?;
    let timeouts = db::DbTimeouts {
        acquire: config.db_acquire_timeout,
        statement: config.db_statement_timeout,
    };
    let url = &config.database.database_url;
    if config.database.db_prepared_statements && url.starts_with("postgres") {
        refuse_transaction_pooler(url, "DATABASE_URL").await?;
    }
    // A writing server on a SQLite file stops writing while the file is read-only.
    let file = match access {
        Access::ReadWrite => db::FileWatch::start(&config.database.database_url),
        Access::ReadOnly => None,
    };
    let (mut db, readiness, mut background) =
        connect_for_requests(&config.database, timeouts, access, file.as_ref()).await?;
    let background_metrics = metrics.clone();
    background.on_statement(move || background_metrics.webhook_statement());
    let statements = StatementCounter::new(metrics);
    statements.install(&mut db);
    let reads = reads(&config, &db, timeouts, &statements).await?;
    let (keys, demo_token) = match configured_keys {
        Some(keys) => (keys, None),
        None => dev_mode(&db, access).await?,
    };
    let rules =
        ClaimRules::new(&config.jwt_issuer, &config.jwt_audience, config.jwt_user_claim.clone());
    let keys = keys.with_rules(rules).with_leeway(Duration::from_secs(config.jwt_leeway_secs));
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.listen_addr))?;
    let addr = listener.local_addr()?;
    let introspection = config.documents.introspection(dev);
    let store = (!config.documents.trusted_documents_only).then(|| {
        Store::new(db.clone(), access == Access::ReadWrite, config.documents.max_persisted_queries)
    });
    let persisted = PersistedDocuments::new(
        manifests,
        store,
        introspection,
        config.limits(),
        statements.metrics().clone(),
    );
    let state = http::AppState::new(db, keys, demo_token.as_deref(), statements.metrics().clone())
        .with_body_read_timeout(config.body_read_timeout)
        .with_database_timeouts(config.request_timeout, readiness)
        .with_reads(reads)
        .with_limits(config.limits())
        .with_persisted(persisted, known, introspection)
        .with_idempotency(IdempotencyKeys::new(
            config.idempotency.idempotency_key_ttl,
            config.idempotency.max_idempotency_keys_per_user,
            config.idempotency.idempotency_key_required,
        ))
        .with_webhooks(config.webhooks.clone())
        .with_change_reader()
        .with_access(access, file)
        .with_cors(&config.cors_allowed_origins, dev)
        .with_metrics_access(metrics_access(&config, dev));
    if access == Access::ReadWrite {
        let prune = idempotency::prune_periodically(state.idempotency.clone(), state.db.clone());
        tokio::spawn(prune);
    }
    let (background_pool, requests_pool) = (background.clone(), state.db.clone());
    if access == Access::ReadWrite {
        webhooks::start(state.webhooks.clone(), background, &state.feed)?;
    }
    let (url, feed) = (config.database.database_url.clone(), state.feed.clone());
    if state.db.get_database_backend() == DbBackend::Postgres {
        tokio::spawn(live::capture::read_changes(url, feed, config.live_poll_interval, access));
    } else {
        let read = live::sqlite_capture::read_changes(url, feed, config.live_poll_interval, access);
        tokio::spawn(read);
    }
    tracing::info!(%addr, "deployql listening; GraphiQL at http://{addr}/graphql");
    if let Some(token) = demo_token {
        println!(
            "\nGraphiQL: http://{addr}/graphql (the demo token is already in its Headers tab)"
        );
        println!("Demo user {}; for curl and other clients:", demo::DEMO_USER);
        println!("export TOKEN={token}\n");
    }
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(serve_metrics(addr, state.clone()).await?),
        None => None,
    };
    let limits = http::ServerLimits {
        max_connections: usize::try_from(config.max_connections).unwrap_or(usize::MAX),
        header_read_timeout: config.header_read_timeout,
        shutdown_timeout: config.shutdown_timeout,
        ..http::ServerLimits::default()
    };
    let served = http::serve_app(listener, state, limits, shutdown_signal()).await;
    if let Some(metrics_listener) = metrics_listener {
        metrics_listener.abort();
    }
    // The webhook pool's connections close first (a transaction under way
    // ends), then a SQLite file's WAL is folded into the file: connections
    // still open at exit skip SQLite's own checkpoint on close, and a
    // reader that opens the file `immutable` (READ_ONLY on a read-only
    // volume) sees only the file.
    tokio::time::timeout(Duration::from_secs(2), background_pool.close()).await.ok();
    if access == Access::ReadWrite && requests_pool.get_database_backend() == DbBackend::Sqlite {
        let checkpoint = requests_pool.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)");
        if let Err(err) = checkpoint.await {
            tracing::warn!(error = %err, "cannot checkpoint the SQLite file at exit");
        }
    }
    served?;
    Ok(())
}

/// The trusted manifests TRUSTED_DOCUMENTS names, each document checked,
/// with the parsed documents for the engine to keep.
async fn trusted_documents(
    config: &Config,
) -> AppResult<(Manifests, Vec<(String, ExecutableDocument)>)> {
    let documents = &config.documents;
    let check = engine::DocumentCheck::new(config.limits());
    let (manifests, known) = Manifests::load(&documents.trusted_documents, &check)
        .await
        .map_err(|err| format!("TRUSTED_DOCUMENTS: {err}"))?;
    if documents.trusted_documents_only && manifests.is_empty() {
        return Err("TRUSTED_DOCUMENTS_ONLY=true runs only the documents of TRUSTED_DOCUMENTS, \
                    and it names no manifest"
            .into());
    }
    if !manifests.is_empty() {
        tracing::info!(
            documents = manifests.len(),
            trusted_only = documents.trusted_documents_only,
            "trusted documents loaded"
        );
    }
    Ok((manifests, known))
}

/// `deployql documents check`: each manifest of `files` read and each of
/// its documents checked as the server would at start; the first bad one
/// is the error.
pub async fn check_documents(files: &[std::path::PathBuf]) -> AppResult<()> {
    let check = engine::DocumentCheck::new(crate::config::Limits::default());
    for file in files {
        let entries = manifest::entries(std::slice::from_ref(file))?;
        for entry in &entries {
            check.check(&entry.text).await.map_err(|err| {
                format!("{}: document `{}` is not valid: {err}", entry.file.display(), entry.id)
            })?;
        }
        let plural = if entries.len() == 1 { "" } else { "s" };
        println!("{}: {} document{plural}, all valid", file.display(), entries.len());
    }
    Ok(())
}

/// Who may read `/metrics` on the API's listener: anyone in dev mode; with
/// METRICS_TOKEN, its bearers; otherwise nobody (Prometheus scrapes
/// METRICS_ADDR instead, or nothing does).
fn metrics_access(config: &Config, dev: bool) -> http::MetricsAccess {
    match &config.metrics_token {
        _ if dev => http::MetricsAccess::Open,
        Some(token) => http::MetricsAccess::Token(token.clone()),
        None => {
            if config.metrics_addr.is_none() {
                tracing::info!(
                    "/metrics is off: set METRICS_ADDR (a listener of its own, e.g. 0.0.0.0:9100) \
                     or METRICS_TOKEN (bearer token for /metrics on this port) to scrape it"
                );
            }
            http::MetricsAccess::Hidden
        }
    }
}

/// Serves `/metrics` alone on `addr`, until the task is aborted.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    state: http::AppState,
) -> AppResult<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| format!("cannot listen on METRICS_ADDR {addr}: {err}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "metrics listening on http://{addr}/metrics");
    Ok(tokio::spawn(async move {
        let router = http::metrics_router(state);
        if let Err(err) = http::serve(listener, router, std::future::pending()).await {
            tracing::error!(error = %err, "the metrics listener failed");
        }
    }))
}

/// The keys configuration names (a JWKS starts loading); `None` in dev mode.
fn configured_keys(token_keys: TokenKeys<'_>) -> AppResult<Option<JwtKeys>> {
    Ok(match token_keys {
        TokenKeys::Secret(secret) => Some(JwtKeys::new(secret)),
        TokenKeys::PublicKeyFile(path) => {
            let pem = std::fs::read_to_string(path).map_err(|err| {
                format!("cannot read JWT_PUBLIC_KEY_FILE {}: {err}", path.display())
            })?;
            let keys = JwtKeys::public_key(&pem).map_err(|err| {
                format!("JWT_PUBLIC_KEY_FILE {} is not a usable key: {err}", path.display())
            })?;
            Some(keys)
        }
        TokenKeys::Jwks(url) => {
            let jwks = Jwks::new(url.clone())?;
            tokio::spawn(jwks.clone().keep_fresh());
            Some(JwtKeys::jwks(jwks))
        }
        TokenKeys::Unset => None,
    })
}

/// No JWT_SECRET: a random secret for this run, demo data, and a demo token.
async fn dev_mode(db: &db::Db, access: Access) -> AppResult<(JwtKeys, Option<String>)> {
    tracing::warn!(
        "JWT_SECRET is not set: dev mode with a random secret for this run; \
         set JWT_SECRET (at least 32 bytes) in production"
    );
    let keys = JwtKeys::new(&JwtSecret::random()?);
    if access == Access::ReadWrite && demo::seed_if_empty(db).await? {
        tracing::info!(user = %demo::DEMO_USER, "inserted demo deployments into the empty database");
    }
    let token = keys.mint(demo::DEMO_USER, DEMO_TOKEN_TTL)?;
    Ok((keys, Some(token)))
}

/// Why a read-only database is refused, and what to do.
fn read_only(url: &str, err: &sea_orm::DbErr) -> String {
    format!(
        "the database {} is read-only ({err}): make the file and its directory writable by \
         this user (SQLite writes the file and its -wal and -shm files beside it), point \
         DATABASE_URL at a primary, or serve it read-only with READ_ONLY=true",
        redacted(url)
    )
}

/// Hides the password of a database URL in messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn database_password_is_hidden() {
        assert_eq!(redacted("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(redacted("sqlite://deployql.db?mode=rwc"), "sqlite://deployql.db?mode=rwc");
    }
}
