use std::process::ExitCode;

use clap::Parser;
use deployql::{
    app,
    auth::{JwtKeys, MintError},
    config::{Cli, Command, TokenKeys},
    graphql,
    telemetry::{self, Metrics},
};

// Per-request allocations dominated the profile after parsing; mimalloc's
// thread-local heaps cut their cost (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let metrics = Metrics::new();
    let dev = cli.config.dev_mode();
    let telemetry = match telemetry::init(&cli.config.telemetry, dev, &metrics) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("deployql: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => app::serve(cli.config, metrics).await,
        Command::Migrate => app::connect_and_migrate(&cli.config).await.map(|_| ()),
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Token { user, ttl } => match cli.config.token_keys() {
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
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("deployql: {err}");
            ExitCode::FAILURE
        }
    }
}
