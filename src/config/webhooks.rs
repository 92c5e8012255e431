//! Webhooks: the retry schedule, the attempt's deadline, how many are sent
//! at once, and whether private addresses may be targets.

use std::time::Duration;

/// The waits before each retry of a failed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl RetrySchedule {
    /// `5s,5m,30m,2h,5h,10h,10h`: comma-separated durations.
    pub fn parse(value: &str) -> Result<Self, String> {
        let waits = value
            .split(',')
            .map(|wait| super::parse_duration(wait.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(waits))
    }
}

/// What `serve` reads of webhooks.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhooksConfig {
    /// The waits before each retry of a delivery that failed (no 2xx within
    /// WEBHOOK_TIMEOUT), comma-separated; each is jittered by up to ±10 %.
    /// After the last retry fails the delivery is FAILED. The default is
    /// Standard Webhooks' (Svix's): 8 attempts over about 28 hours.
    #[arg(long, env, default_value = "5s,5m,30m,2h,5h,10h,10h", value_parser = RetrySchedule::parse)]
    pub webhook_retry_schedule: RetrySchedule,
    /// How long an attempt may take, connecting included, before it counts
    /// as failed.
    #[arg(long, env, default_value = "10s", value_parser = super::parse_duration)]
    pub webhook_timeout: Duration,
    /// Accept `http` URLs and targets on loopback, private, link-local and
    /// metadata addresses (tests, on-premises receivers). Off, such an
    /// endpoint is refused at creation and every connection to one is refused.
    #[arg(long, env, default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private_targets: bool,
    /// Deliveries this instance attempts at once, over all endpoints.
    #[arg(long, env, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub webhook_concurrency: u32,
    /// Deliveries this instance attempts at once to one endpoint, so a slow
    /// receiver holds up only its own.
    #[arg(long, env, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub webhook_endpoint_concurrency: u32,
    /// An endpoint whose every attempt failed for this long is disabled
    /// (webhookEndpoints says why); enabling it again starts over.
    #[arg(long, env, default_value = "5d", value_parser = super::parse_duration)]
    pub webhook_disable_after: Duration,
    /// Endpoints one user may have.
    #[arg(long, env, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_webhook_endpoints_per_user: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            webhook_retry_schedule: RetrySchedule::parse("5s,5m,30m,2h,5h,10h,10h")
                .unwrap_or(RetrySchedule(Vec::new())),
            webhook_timeout: Duration::from_secs(10),
            webhook_allow_private_targets: false,
            webhook_concurrency: 64,
            webhook_endpoint_concurrency: 4,
            webhook_disable_after: Duration::from_secs(5 * 86_400),
            max_webhook_endpoints_per_user: 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_reads_as_documented() {
        let schedule = WebhooksConfig::default().webhook_retry_schedule.0;
        let hours = |h: u64| Duration::from_secs(h * 3600);
        assert_eq!(
            schedule,
            [
                Duration::from_secs(5),
                Duration::from_secs(300),
                Duration::from_secs(1800),
                hours(2),
                hours(5),
                hours(10),
                hours(10)
            ]
        );
        assert_eq!(
            RetrySchedule::parse("100ms, 200ms").map(|s| s.0),
            Ok(vec![Duration::from_millis(100), Duration::from_millis(200)])
        );
        assert!(RetrySchedule::parse("5s,,5m").is_err());
        assert!(RetrySchedule::parse("soon").is_err());
    }
}
