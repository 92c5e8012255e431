use std::process::ExitCode;

use deployql::{
    app,
    auth::{JwtKeys, MintError},
    config::{Cli, Command, DocumentsCommand, TelemetryConfig, TokenKeys},
    graphql,
    telemetry::{self, Metrics},
};

// Per-request allocations dominated the profile after parsing; mimalloc's
// thread-local heaps cut their cost (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::from_env().command {
        Command::Serve(config) => {
            let metrics = Metrics::new();
            let dev = config.dev_mode();
            with_telemetry(
                &config.telemetry.clone(),
                dev,
                &metrics,
                app::serve(*config, metrics.clone()),
            )
            .await
        }
        Command::Migrate(config) => {
            let migrate = async { app::connect_and_migrate(&config.database).await.map(|_| ()) };
            with_telemetry(&config.telemetry, false, &Metrics::new(), migrate).await
        }
        Command::Documents(DocumentsCommand::Check { files }) => app::check_documents(&files).await,
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Token { user, ttl, keys } => match keys.token_keys() {
            Ok(TokenKeys::Secret(secret)) => JwtKeys::new(secret)
                .mint(user, ttl)
                .map(|token| println!("{token}"))
                .map_err(Into::into),
            Ok(TokenKeys::Unset) => {
                Err("`deployql token` signs with JWT_SECRET; set it (at least 32 bytes)".into())
            }
            Ok(TokenKeys::PublicKeyFile(_) | TokenKeys::Jwks(_)) => {
                Err(MintError::NotTheSigner.to_string().into())
            }
            Err(err) => Err(err.into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("deployql: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `work` with logging and traces installed, and flushes them after.
async fn with_telemetry(
    config: &TelemetryConfig,
    dev: bool,
    metrics: &Metrics,
    work: impl Future<Output = app::AppResult<()>>,
) -> app::AppResult<()> {
    let telemetry = telemetry::init(config, dev, metrics)?;
    let result = work.await;
    telemetry.shutdown().await;
    result
}
