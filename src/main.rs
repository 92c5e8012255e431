use std::process::ExitCode;

use clap::Parser;
use deployql::{
    app,
    auth::{JwtKeys, MintError},
    config::{Cli, Command, TokenKeys},
    graphql,
};
use tracing_subscriber::EnvFilter;

// Per-request allocations dominated the profile after parsing; mimalloc's
// thread-local heaps cut their cost (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            // sqlx warns on every slow pool acquire; an outage is logged once
            // per change by the server instead.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx::pool::acquire=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => app::serve(cli.config).await,
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
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("deployql: {err}");
            ExitCode::FAILURE
        }
    }
}
