//! What verifying a bearer token costs per request, for each algorithm:
//! a token seen for the first time (signature and claims checked) beside
//! the same token again (answered from the cache of verified tokens), in
//! one run. Keys are generated with openssl, as in the provider tests.
//!
//!     cargo bench --bench tokens            # ROUNDS=5 TOKENS=2000 by default

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use deployql::{auth::JwtKeys, config::JwtSecret};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use uuid::Uuid;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn openssl(args: &[&str], input: &[u8]) -> BenchResult<Vec<u8>> {
    use std::io::Write;
    let mut child =
        Command::new("openssl").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    child.stdin.take().ok_or("stdin")?.write_all(input)?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(format!("openssl {args:?} failed").into());
    }
    Ok(output.stdout)
}

/// A verifier and a signer for one algorithm.
fn keys(algorithm: Algorithm) -> BenchResult<(JwtKeys, EncodingKey)> {
    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    let genpkey: &[&str] = match algorithm {
        Algorithm::HS256 => {
            let keys = JwtKeys::new(&JwtSecret::parse(SECRET)?);
            return Ok((keys, EncodingKey::from_secret(SECRET.as_bytes())));
        }
        Algorithm::RS256 => &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        Algorithm::ES256 => &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        _ => &["genpkey", "-algorithm", "ED25519"],
    };
    let private = openssl(genpkey, b"")?;
    let public = String::from_utf8(openssl(&["pkey", "-pubout"], &private)?)?;
    let signer = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&private)?,
        Algorithm::ES256 => EncodingKey::from_ec_pem(&private)?,
        _ => EncodingKey::from_ed_pem(&private)?,
    };
    Ok((JwtKeys::public_key(&public)?, signer))
}

/// Mean time per verification of `tokens`, each verified once.
async fn per_token(keys: &JwtKeys, tokens: &[String]) -> BenchResult<Duration> {
    let started = Instant::now();
    for token in tokens {
        keys.verify(token).await?;
    }
    Ok(started.elapsed() / u32::try_from(tokens.len())?)
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn main() -> BenchResult<()> {
    let env = |name: &str, default: usize| {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let (rounds, count) = (env("ROUNDS", 5), env("TOKENS", 2_000));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    println!("| algorithm | first sight, µs | same token again, µs | ratio |");
    println!("|---|---:|---:|---:|");
    for algorithm in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let (keys, signer) = keys(algorithm)?;
        let exp = chrono::Utc::now().timestamp() + 3600;
        // Distinct tokens (each its own `jti`), so every one is a first sight.
        let tokens = (0..count)
            .map(|_| {
                let claims = json!({ "sub": Uuid::new_v4(), "exp": exp, "jti": Uuid::new_v4() });
                jsonwebtoken::encode(&Header::new(algorithm), &claims, &signer)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let again = vec![tokens[0].clone(); count];
        let (mut first, mut repeat) = (Vec::new(), Vec::new());
        // Alternating, so drift on the machine hits both alike.
        for _ in 0..rounds {
            let fresh = runtime.block_on(async {
                let keys = keys.clone().with_leeway(Duration::from_secs(60));
                per_token(&keys, &tokens).await
            })?;
            first.push(fresh);
            repeat.push(runtime.block_on(per_token(&keys, &again))?);
        }
        first.sort();
        repeat.sort();
        let (first, repeat) = (first[rounds / 2], repeat[rounds / 2]);
        println!(
            "| {algorithm:?} | {:.1} | {:.2} | {:.0}× |",
            micros(first),
            micros(repeat),
            first.as_secs_f64() / repeat.as_secs_f64().max(1e-12)
        );
    }
    Ok(())
}
