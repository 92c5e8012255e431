//! How deployql reports on itself: log format and OpenTelemetry traces.
//! The OpenTelemetry variables keep their standard names, so an operator's
//! existing deployment manifests apply as they are.

use std::fmt;

use clap::ValueEnum;

#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryConfig {
    /// Log lines as `text` (for a terminal) or `json` (one object per line,
    /// for a log pipeline). Default: text in dev mode, json otherwise.
    #[arg(long, env)]
    pub log_format: Option<LogFormat>,
    /// Where traces go (OTLP over HTTP/protobuf), e.g. `http://collector:4318`;
    /// `/v1/traces` is appended. Unset: no traces, and no cost.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_endpoint)]
    pub otlp_endpoint: Option<String>,
    /// The full traces URL, used as is; takes precedence over the endpoint.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_parser = parse_endpoint)]
    pub otlp_traces_endpoint: Option<String>,
    /// The `service.name` of every span.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "deployql")]
    pub otel_service_name: String,
    /// Which requests are traced: `parentbased_always_on` (every request,
    /// unless an incoming `traceparent` says it is not sampled),
    /// `parentbased_traceidratio`, `traceidratio`, `always_on`,
    /// `parentbased_always_off` or `always_off`.
    #[arg(long, env = "OTEL_TRACES_SAMPLER", value_enum, default_value = "parentbased_always_on")]
    pub otel_traces_sampler: Sampler,
    /// The ratio (0 to 1) of the `*traceidratio` samplers.
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", default_value_t = 1.0,
          value_parser = parse_ratio)]
    pub otel_traces_sampler_arg: f64,
}

/// The bearer token `/metrics` asks for on the API's listener; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsToken(String);

impl MetricsToken {
    pub const MIN_BYTES: usize = 16;

    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.len() < Self::MIN_BYTES || value.contains(char::is_whitespace) {
            return Err(format!(
                "METRICS_TOKEN must be at least {} bytes without spaces; generate one with \
                 `openssl rand -hex 32`",
                Self::MIN_BYTES
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// Whether `candidate` is this token, in time that does not depend on
    /// where the two first differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        let differing = expected
            .iter()
            .zip(candidate)
            .fold(expected.len() ^ candidate.len(), |acc, (a, b)| acc | usize::from(a ^ b));
        differing == 0
    }
}

impl fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsToken([redacted])")
    }
}

impl TelemetryConfig {
    /// The URL spans are sent to, when tracing is on.
    pub fn traces_url(&self) -> Option<String> {
        if let Some(url) = &self.otlp_traces_endpoint {
            return Some(url.clone());
        }
        let endpoint = self.otlp_endpoint.as_ref()?;
        Some(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
    }

    /// The configured log format, or the mode's default.
    pub fn log_format(&self, dev: bool) -> LogFormat {
        self.log_format.unwrap_or(if dev { LogFormat::Text } else { LogFormat::Json })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The samplers of the OpenTelemetry specification's `OTEL_TRACES_SAMPLER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    Traceidratio,
    ParentbasedAlwaysOn,
    ParentbasedAlwaysOff,
    ParentbasedTraceidratio,
}

fn parse_endpoint(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value.to_owned())
    } else {
        Err(format!("`{value}` is not an http:// or https:// URL"))
    }
}

fn parse_ratio(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("`{value}` is not a ratio between 0 and 1")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Args {
        #[command(flatten)]
        telemetry: TelemetryConfig,
    }

    fn parse(args: &[&str]) -> Result<TelemetryConfig, clap::Error> {
        Args::try_parse_from(std::iter::once("deployql").chain(args.iter().copied()))
            .map(|args| args.telemetry)
    }

    #[test]
    fn traces_go_to_the_endpoint_with_the_standard_path() -> Result<(), clap::Error> {
        let config = parse(&["--otlp-endpoint", "http://collector:4318/"])?;
        assert_eq!(config.traces_url().as_deref(), Some("http://collector:4318/v1/traces"));
        let config = parse(&[
            "--otlp-endpoint",
            "http://collector:4318",
            "--otlp-traces-endpoint",
            "https://traces.example/in",
        ])?;
        assert_eq!(config.traces_url().as_deref(), Some("https://traces.example/in"));
        assert_eq!(parse(&[])?.traces_url(), None);
        Ok(())
    }

    #[test]
    fn bad_telemetry_settings_are_refused() {
        assert!(parse(&["--otlp-endpoint", "collector:4318"]).is_err());
        assert!(parse(&["--otel-traces-sampler-arg", "1.5"]).is_err());
        assert!(parse(&["--otel-traces-sampler", "sometimes"]).is_err());
    }

    #[test]
    fn a_metrics_token_is_long_enough_and_matched_whole() -> Result<(), String> {
        assert!(parse(&["--metrics-token", "short"]).is_err());
        let token = MetricsToken::parse("0123456789abcdef0123")?;
        assert!(token.matches(b"0123456789abcdef0123"));
        assert!(!token.matches(b"0123456789abcdef012"));
        assert!(!token.matches(b"0123456789abcdef01234"));
        assert!(!token.matches(b"0123456789abcdef0124"));
        assert_eq!(format!("{token:?}"), "MetricsToken([redacted])");
        Ok(())
    }

    #[test]
    fn logs_are_json_unless_in_dev_mode() -> Result<(), clap::Error> {
        assert_eq!(parse(&[])?.log_format(true), LogFormat::Text);
        assert_eq!(parse(&[])?.log_format(false), LogFormat::Json);
        assert_eq!(parse(&["--log-format", "text"])?.log_format(false), LogFormat::Text);
        Ok(())
    }
}
