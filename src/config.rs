//! Command line and environment configuration, read once in `main`.

mod documents;
mod idempotency;
mod telemetry;
mod tokens;
mod webhooks;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use uuid::Uuid;

pub use self::documents::{DEFAULT_PERSISTED_QUERIES, DocumentsConfig};
pub use self::idempotency::IdempotencyConfig;
pub use self::telemetry::{LogFormat, MetricsToken, Sampler, TelemetryConfig};
pub use self::tokens::{JwksUrl, JwtSecret, TokenKeys, UserClaim};
pub use self::webhooks::{RetrySchedule, WebhooksConfig};

/// deployql: the deployment-status GraphQL API.
///
/// Without a command, `deployql [OPTIONS]` is `deployql serve [OPTIONS]`;
/// each command's `--help` lists the options it reads.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments, reading options given without a
    /// command as `serve`'s (`cargo run --release -- --dev`).
    pub fn from_env() -> Self {
        Self::parse_from(with_default_command(std::env::args_os().collect()))
    }
}

/// `args` with `serve` inserted when they name no command: none at all, or
/// an option other than the top level's own (help and version).
fn with_default_command(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let top_level = ["-h", "--help", "-V", "--version"];
    let names_command = args.get(1).is_some_and(|first| {
        let first = first.to_string_lossy();
        !first.starts_with('-') || top_level.contains(&first.as_ref())
    });
    if !names_command {
        args.insert(1.min(args.len()), "serve".into());
    }
    args
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations and serve the API (the default).
    Serve(Box<Config>),
    /// Apply pending migrations and exit.
    Migrate(MigrateConfig),
    /// Print the GraphQL schema (SDL) and exit.
    Schema,
    /// Work with trusted-document manifests.
    #[command(subcommand)]
    Documents(DocumentsCommand),
    /// Mint an HS256 bearer token for a user, signed with JWT_SECRET.
    Token {
        /// The user's UUID, the token's `sub`.
        #[arg(long)]
        user: Uuid,
        /// How long the token is valid: a number with a unit, s, m, h or d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
        #[command(flatten)]
        keys: KeysConfig,
    },
}

#[derive(Debug, Subcommand)]
pub enum DocumentsCommand {
    /// Check manifests as the server does at start (each document parsed,
    /// bounded and validated against this build's schema); exit non-zero
    /// on the first bad one. For a frontend's CI.
    Check {
        /// Manifest files, or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// What `deployql migrate` reads.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
}

/// The database, as `serve` and `migrate` open it.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseConfig {
    /// Database URL: `sqlite://FILE?mode=rwc` (embedded) or `postgres://...`.
    #[arg(long, env, default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Largest number of pooled database connections; default twice the CPU count
    /// (a larger pool only queues work inside Postgres; see BENCHMARKS.md).
    #[arg(long, env, default_value_t = default_pool_size(),
          value_parser = clap::value_parser!(u32).range(1..))]
    pub db_max_connections: u32,
    /// Prepare statements on Postgres (each is parsed and planned once per
    /// connection). `false` for a transaction pooler (PgBouncer in
    /// transaction mode): every statement goes as one simple query, and
    /// nothing is left on a server connection that the next client gets.
    #[arg(long, env, default_value_t = true, action = clap::ArgAction::Set)]
    pub db_prepared_statements: bool,
}

/// Where the keys that sign or verify tokens come from.
#[derive(Debug, Clone, clap::Args)]
pub struct KeysConfig {
    /// HS256 signing secret, at least 32 bytes, for tokens minted by whoever
    /// shares it. Unset, with no provider key either: dev mode.
    #[arg(long, env, value_parser = JwtSecret::parse, hide_env_values = true,
          conflicts_with_all = ["jwt_public_key_file", "jwks_url"])]
    pub jwt_secret: Option<JwtSecret>,
    /// An identity provider's PEM public key (RSA, EC P-256/P-384 or
    /// Ed25519); the key's type fixes the algorithm (RS256, ES256/ES384, EdDSA).
    #[arg(long, env, conflicts_with = "jwks_url")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// An identity provider's JWKS: `https://...`, `http://localhost...`, or
    /// `file:///path`; keys are chosen by the token's `kid` and refreshed.
    #[arg(long, env, value_parser = JwksUrl::parse)]
    pub jwks_url: Option<JwksUrl>,
}

impl KeysConfig {
    /// The one source of keys configured.
    pub fn token_keys(&self) -> Result<TokenKeys<'_>, String> {
        Ok(match (&self.jwt_secret, &self.jwt_public_key_file, &self.jwks_url) {
            (Some(secret), None, None) => TokenKeys::Secret(secret),
            (None, Some(path), None) => TokenKeys::PublicKeyFile(path),
            (None, None, Some(url)) => TokenKeys::Jwks(url),
            (None, None, None) => TokenKeys::Unset,
            _ => return Err("set only one of JWT_SECRET, JWT_PUBLIC_KEY_FILE and JWKS_URL".into()),
        })
    }
}

/// What `deployql serve` reads.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// How long a request waits for a database connection before it fails
    /// with SERVICE_UNAVAILABLE (a down database fails requests fast).
    #[arg(long, env, default_value = "2s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,
    /// Longest SQL statement: Postgres' statement_timeout, SQLite's busy
    /// timeout; past it the request fails with SERVICE_UNAVAILABLE.
    #[arg(long, env, default_value = "5s", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,
    /// Postgres hot standbys that serve queries and subscription refetches
    /// (comma-separated URLs, each may be a pooler's); writes and the
    /// change reader always use DATABASE_URL. Empty: every read on the primary.
    #[arg(long, env, value_delimiter = ',', hide_env_values = true)]
    pub database_replica_urls: Vec<String>,
    /// How stale a replica's read may be: a replica serves only while it has
    /// replayed a primary position observed no longer ago than this (both
    /// polled every half of it); otherwise the primary serves.
    #[arg(long, env, default_value = "100ms", value_parser = parse_duration)]
    pub replica_max_lag: Duration,
    /// Serve reads only: mutations answer `READ_ONLY_MODE`, nothing is
    /// written (no migrations: the schema must be up to date), and a SQLite
    /// file is opened read-only, so a read-only file or a second process
    /// beside the one that writes can serve it.
    #[arg(long, env)]
    pub read_only: bool,
    /// Apply pending migrations at start (instances starting at once take
    /// turns). `false`: apply none, and refuse to start while this build's
    /// migrations are pending (run `deployql migrate` first).
    #[arg(long, env, default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    /// Dev mode (a random secret for this run, demo data, the token in
    /// GraphiQL) on a database other than the default SQLite file. Without
    /// JWT_SECRET, dev mode is otherwise only for the default database.
    #[arg(long, env = "DEV_MODE")]
    pub dev: bool,
    #[command(flatten)]
    pub keys: KeysConfig,
    /// Accepted `iss` values, comma-separated; required with a provider key.
    #[arg(long, env, value_delimiter = ',')]
    pub jwt_issuer: Vec<String>,
    /// Accepted `aud` values (one must be in the token's), comma-separated;
    /// required with a provider key.
    #[arg(long, env, value_delimiter = ',')]
    pub jwt_audience: Vec<String>,
    /// The claim holding the user's id (a UUID): a top-level claim's name,
    /// or, starting with `/`, a JSON Pointer into nested claims.
    #[arg(long, env, default_value = "sub", value_parser = UserClaim::parse)]
    pub jwt_user_claim: UserClaim,
    /// Address the HTTP server listens on.
    #[arg(long, env, default_value = "127.0.0.1:8000")]
    pub listen_addr: SocketAddr,
    /// GraphQL requests executed at once; more wait, unread, for a slot
    /// (bounds memory under load; see BENCHMARKS.md).
    #[arg(long, env, default_value_t = DEFAULT_MAX_IN_FLIGHT,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_in_flight: u64,
    /// Clock skew tolerated on a token's `exp` and `nbf`, in seconds (0 allowed);
    /// a WebSocket is closed once its token's `exp` plus this has passed.
    #[arg(long, env, default_value_t = 60)]
    pub jwt_leeway_secs: u64,
    /// Browser origins allowed to call /graphql, comma-separated
    /// (`https://app.example.com,http://localhost:5173`), or `*` for any.
    /// Empty: no cross-origin access (dev mode allows http://localhost:* and
    /// http://127.0.0.1:*).
    #[arg(long, env, value_delimiter = ',', value_parser = parse_origin)]
    pub cors_allowed_origins: Vec<String>,
    /// SQL statements one request (a batch in total) may run, estimated before
    /// it runs: each root lookup or page is one, `totalCount` one more, a
    /// mutation its writes plus one per relation in its payload.
    #[arg(long, env, default_value_t = DEFAULT_STATEMENTS_PER_REQUEST,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_statements_per_request: u64,
    /// GraphQL requests of one user executed at once; default a quarter of
    /// MAX_IN_FLIGHT and at most a quarter of the pool, so one user cannot
    /// take every slot or every connection.
    #[arg(long, env, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_in_flight_per_user: Option<u64>,
    /// One deadline per query or mutation, from when it waits for a slot
    /// to its answer (the slot, a connection, the statements): past it,
    /// SERVICE_UNAVAILABLE with Retry-After, whatever the database does.
    #[arg(long, env, default_value = "3s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// How long a request waits for a slot before a 503 (or a 429 when its
    /// user already runs their share): fail fast so clients can retry.
    #[arg(long, env, default_value = "2s", value_parser = parse_duration)]
    pub queue_timeout: Duration,
    /// A request body must arrive within this, else 408.
    #[arg(long, env, default_value = "10s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,
    /// A request head must arrive within this; a kept-alive connection
    /// waiting for its next request is closed after it too.
    #[arg(long, env, default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Open connections at most; beyond, new ones are closed at once.
    #[arg(long, env, default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// On SIGTERM or SIGINT, how long in-flight requests may take to finish.
    #[arg(long, env, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Largest request body (and WebSocket message), in bytes.
    #[arg(long, env, default_value_t = Limits::default().body_bytes,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..))]
    pub max_body_bytes: usize,
    /// Operations in one batched (JSON array) request.
    #[arg(long, env, default_value_t = Limits::default().batch,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_batch: usize,
    /// How long a new WebSocket may take to send `connection_init`.
    #[arg(long, env, default_value = "10s", value_parser = parse_duration)]
    pub ws_init_timeout: Duration,
    /// How often the server pings each open WebSocket (a ping frame, which
    /// browsers and WebSocket libraries answer by themselves).
    #[arg(long, env, default_value = "15s", value_parser = parse_duration)]
    pub ws_ping_interval: Duration,
    /// How long after a ping a socket may stay silent before it is closed
    /// (1001) and its subscriptions are released: a client that vanished.
    #[arg(long, env, default_value = "10s", value_parser = parse_duration)]
    pub ws_pong_timeout: Duration,
    /// A subscription sends at most one message per interval; a burst of
    /// changes within it is coalesced (the last state always arrives).
    #[arg(long, env, default_value = "100ms", value_parser = parse_duration)]
    pub live_coalesce_interval: Duration,
    /// How often each instance reads the change log (Postgres): the
    /// longest a change waits before its subscribers' refetch starts.
    #[arg(long, env, default_value = "20ms", value_parser = parse_duration)]
    pub live_poll_interval: Duration,
    /// Subscriptions one user may run on this instance.
    #[arg(long, env, default_value_t = Limits::default().subscriptions_per_user,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_subscriptions_per_user: usize,
    /// Subscriptions this instance runs in all (memory: see BENCHMARKS.md).
    #[arg(long, env, default_value_t = Limits::default().subscriptions,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_subscriptions: usize,
    #[command(flatten)]
    pub documents: DocumentsConfig,
    #[command(flatten)]
    pub idempotency: IdempotencyConfig,
    #[command(flatten)]
    pub webhooks: WebhooksConfig,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    /// Outside dev mode, `/metrics` on the API's listener answers only
    /// requests with `Authorization: Bearer <METRICS_TOKEN>` (at least 16
    /// bytes). Unset, and without METRICS_ADDR: no `/metrics` there (404).
    #[arg(long, env = "METRICS_TOKEN", value_parser = MetricsToken::parse,
          hide_env_values = true)]
    pub metrics_token: Option<MetricsToken>,
    /// A listener of its own serving only `/metrics`, without a token, for a
    /// Prometheus inside the cluster (e.g. `0.0.0.0:9100`).
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// A browser origin as browsers send it: `scheme://host[:port]`, or `*`.
fn parse_origin(value: &str) -> Result<String, String> {
    let origin = value.trim();
    if origin == "*" {
        return Ok(origin.to_owned());
    }
    let host =
        origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")).ok_or_else(
            || format!("`{origin}` is not an origin: it must start with https:// or http://"),
        )?;
    if host.is_empty() || host.contains(['/', '?', '#', ' ', '*']) {
        return Err(format!(
            "`{origin}` is not an origin: write scheme://host[:port], without a path or a trailing slash"
        ));
    }
    Ok(origin.to_ascii_lowercase())
}

/// Every limit of the API, in one value built from configuration (see
/// [`Config::limits`]), so the README's table and the code cannot disagree.
/// The associated constants are part of the API's contract (the schema's
/// descriptions state them), so they are not configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body and WebSocket message, in bytes.
    pub body_bytes: usize,
    /// Operations in one batched request.
    pub batch: usize,
    /// GraphQL requests executed at once; more wait for a slot.
    pub in_flight: usize,
    /// Of those, one user's share.
    pub in_flight_per_user: usize,
    /// How long a request waits for a slot before it is refused.
    pub queue_timeout: Duration,
    /// How long a new WebSocket may take to send `connection_init`.
    pub ws_init_timeout: Duration,
    /// How often each WebSocket is pinged.
    pub ws_ping_interval: Duration,
    /// How long a pinged WebSocket may stay silent before it is closed.
    pub ws_pong_timeout: Duration,
    /// Shortest interval between two messages of one subscription.
    pub coalesce_interval: Duration,
    /// Subscriptions of one user on this instance.
    pub subscriptions_per_user: usize,
    /// Subscriptions of this instance in all.
    pub subscriptions: usize,
    /// Lexical tokens of one document, counted before it is parsed.
    pub tokens: usize,
    /// Deepest nesting of ordinary fields.
    pub depth: usize,
    /// Deepest nesting through `__schema` or `__type`.
    pub introspection_depth: usize,
    /// Field selections after fragment expansion.
    pub fields: u64,
    /// Aliases written in one document.
    pub aliases: usize,
    /// Root fields of one operation (after fragment expansion).
    pub root_fields: u64,
    /// `__schema`/`__type` selections in one operation, and
    /// introspection-bearing operations in one batch; 0: introspection is off.
    pub introspections: u64,
    /// SQL statements one request (or a batch in total) may run.
    pub statements_per_request: u64,
    /// async-graphql's cost: list fields cost their page size times their selection.
    pub complexity: usize,
    /// Directives on one field.
    pub directives: usize,
}

impl Limits {
    /// Largest `deployments(first:)`.
    pub const MAX_PAGE_SIZE: i32 = 100;
    /// `deployments(first:)` when the client gives none.
    pub const DEFAULT_PAGE_SIZE: i32 = 20;
    /// Largest `statusHistory(limit:)`.
    pub const MAX_HISTORY: i32 = 100;
    /// `statusHistory(limit:)` when the client gives none.
    pub const DEFAULT_HISTORY: i32 = 10;
    /// Most ids one `nodes(ids:)` takes.
    pub const MAX_NODES: usize = 100;
    /// Operations one WebSocket runs at once.
    pub const MAX_WS_OPERATIONS: usize = 100;
}

impl Default for Limits {
    fn default() -> Self {
        let in_flight = usize::try_from(DEFAULT_MAX_IN_FLIGHT).unwrap_or(usize::MAX);
        Self {
            body_bytes: 1024 * 1024,
            batch: 10,
            in_flight,
            in_flight_per_user: in_flight / 4,
            queue_timeout: Duration::from_secs(2),
            ws_init_timeout: Duration::from_secs(10),
            ws_ping_interval: Duration::from_secs(15),
            ws_pong_timeout: Duration::from_secs(10),
            coalesce_interval: Duration::from_millis(100),
            subscriptions_per_user: 1_000,
            subscriptions: 20_000,
            // The standard introspection query has about 300; a full status
            // page about 60.
            tokens: 10_000,
            depth: 12,
            // graphql-js 16 and 17's standard introspection queries reach 13
            // and 15; twice a query's bound leaves room for tools that ask a
            // little more, and refuses `ofType { ofType { ... } }` towers.
            introspection_depth: 24,
            // A full status page selects about 40; a fragment bomb billions.
            fields: 2_000,
            aliases: 100,
            // As many as statements: each root lookup or page runs one.
            root_fields: DEFAULT_STATEMENTS_PER_REQUEST,
            introspections: 1,
            statements_per_request: DEFAULT_STATEMENTS_PER_REQUEST,
            complexity: 10_000,
            directives: 8,
        }
    }
}

/// The embedded database `cargo run` uses.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://deployql.db?mode=rwc";

/// GraphQL requests executed at once unless configured otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 32;

/// Statements one request may run unless configured otherwise.
pub const DEFAULT_STATEMENTS_PER_REQUEST: u64 = 50;

impl Config {
    /// How tokens are verified. A provider's keys sign tokens for all of its
    /// applications, so with one both the issuer and the audience must be
    /// pinned; clap has already refused more than one way.
    pub fn token_keys(&self) -> Result<TokenKeys<'_>, String> {
        let keys = self.keys.token_keys()?;
        let blank = |values: &[String]| values.iter().all(|value| value.trim().is_empty());
        if keys.is_public_key() && blank(&self.jwt_issuer) {
            return Err("JWT_ISSUER is required with JWT_PUBLIC_KEY_FILE or JWKS_URL: set it to \
                 your provider's issuer (the `iss` of its tokens, e.g. https://tenant.auth0.com/)"
                .into());
        }
        if keys.is_public_key() && blank(&self.jwt_audience) {
            return Err("JWT_AUDIENCE is required with JWT_PUBLIC_KEY_FILE or JWKS_URL: set it to \
                 the audience your provider puts in deployql's tokens (the API identifier or client id)"
                .into());
        }
        Ok(keys)
    }

    /// Whether this configuration runs dev mode: asked for, or nothing to
    /// verify tokens with on the default SQLite file.
    pub fn dev_mode(&self) -> bool {
        matches!(self.keys.token_keys(), Ok(TokenKeys::Unset))
            && (self.dev || self.database.database_url == DEFAULT_DATABASE_URL)
    }

    /// The limits this configuration sets.
    pub fn limits(&self) -> Limits {
        let in_flight = usize::try_from(self.max_in_flight).unwrap_or(usize::MAX);
        Limits {
            body_bytes: self.max_body_bytes,
            batch: self.max_batch,
            in_flight,
            in_flight_per_user: self.per_user_slots(),
            // No wait outlasts the request's deadline.
            queue_timeout: self.queue_timeout.min(self.request_timeout),
            ws_init_timeout: self.ws_init_timeout,
            ws_ping_interval: self.ws_ping_interval,
            ws_pong_timeout: self.ws_pong_timeout,
            coalesce_interval: self.live_coalesce_interval,
            subscriptions_per_user: self.max_subscriptions_per_user,
            subscriptions: self.max_subscriptions,
            statements_per_request: self.max_statements_per_request,
            introspections: if self.documents.introspection(self.dev_mode()) {
                Limits::default().introspections
            } else {
                0
            },
            ..Limits::default()
        }
    }

    /// One user's share of the slots: as configured, else a quarter of them
    /// and at most a quarter of the pool, at least 1, so that one user's
    /// burst cannot take every pooled connection (and database CPU) for
    /// everyone else. Measured on 2 cores with a pool of 4: a share of 1 kept
    /// another user's p50 within 1.3-1.9x of idle beside four heavy clients,
    /// a share of 2 let it reach 3.3-3.8x.
    fn per_user_slots(&self) -> usize {
        let configured =
            self.max_in_flight_per_user.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        configured.unwrap_or_else(|| {
            let quarter = usize::try_from(self.max_in_flight / 4).unwrap_or(usize::MAX);
            let quarter_pool =
                usize::try_from(self.database.db_max_connections / 4).unwrap_or(usize::MAX);
            quarter.min(quarter_pool).max(1)
        })
    }
}

fn default_pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    u32::try_from(cores * 2).unwrap_or(u32::MAX).max(2)
}

/// Parses durations such as `90s`, `15m`, `1h` or `7d` (`ms` too, for timeouts).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    if let Some(millis) = value.strip_suffix("ms") {
        return match millis.parse::<u64>() {
            Ok(0) | Err(_) => Err(format!("`{value}` is not a positive duration such as 500ms")),
            Ok(millis) => Ok(Duration::from_millis(millis)),
        };
    }
    parse_ttl(value)
}

/// Parses durations such as `90s`, `15m`, `1h` or `7d`.
pub fn parse_ttl(value: &str) -> Result<Duration, String> {
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{value}` is not a duration such as 90s, 15m, 1h or 7d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{value}` needs a unit: s, m, h or d")),
    };
    if number == 0 {
        return Err("the ttl must be positive".to_owned());
    }
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{value}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<std::ffi::OsString> {
        list.iter().map(Into::into).collect()
    }

    #[test]
    fn options_without_a_command_are_serves() {
        let with_default = |list: &[&str]| with_default_command(args(list));
        assert_eq!(with_default(&["deployql"]), args(&["deployql", "serve"]));
        assert_eq!(with_default(&["deployql", "--dev"]), args(&["deployql", "serve", "--dev"]));
        assert_eq!(with_default(&["deployql", "--help"]), args(&["deployql", "--help"]));
        assert_eq!(with_default(&["deployql", "-V"]), args(&["deployql", "-V"]));
        assert_eq!(with_default(&["deployql", "schema"]), args(&["deployql", "schema"]));
        let cli = Cli::try_parse_from(with_default(&["deployql", "--read-only"])).expect("parses");
        assert!(matches!(cli.command, Command::Serve(config) if config.read_only));
    }

    /// The long options `command`'s `--help` lists.
    fn options_of(command: &str) -> Vec<String> {
        use clap::CommandFactory;
        let cli = Cli::command();
        let sub = cli.find_subcommand(command).expect("a command");
        sub.get_arguments().filter_map(|arg| arg.get_long().map(str::to_owned)).collect()
    }

    #[test]
    fn each_command_lists_only_the_options_it_reads() {
        assert_eq!(options_of("schema"), Vec::<String>::new());
        assert_eq!(
            options_of("token"),
            ["user", "ttl", "jwt-secret", "jwt-public-key-file", "jwks-url"].map(String::from)
        );
        let migrate = options_of("migrate");
        assert!(migrate.contains(&"database-url".to_owned()), "{migrate:?}");
        assert!(migrate.contains(&"log-format".to_owned()), "{migrate:?}");
        for serve_only in ["listen-addr", "jwt-secret", "metrics-token", "db-statement-timeout"] {
            assert!(!migrate.contains(&serve_only.to_owned()), "{serve_only} in {migrate:?}");
        }
        let serve = options_of("serve");
        for option in ["listen-addr", "database-url", "jwt-secret", "metrics-addr", "read-only"] {
            assert!(serve.contains(&option.to_owned()), "{option} not in {serve:?}");
        }
    }

    #[test]
    fn ttl_accepts_each_unit() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
    }

    #[test]
    fn ttl_refuses_missing_units_and_zero() {
        assert!(parse_ttl("10").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("0h").is_err());
        assert!(parse_ttl("1w").is_err());
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(parse_origin("https://App.example.com"), Ok("https://app.example.com".into()));
        assert_eq!(parse_origin(" http://localhost:5173 "), Ok("http://localhost:5173".into()));
        assert_eq!(parse_origin("*"), Ok("*".into()));
        assert!(parse_origin("app.example.com").is_err());
        assert!(parse_origin("https://app.example.com/").is_err());
        assert!(parse_origin("https://*.example.com").is_err());
        assert!(parse_origin("https://").is_err());
    }
}
