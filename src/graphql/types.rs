//! Enums and leaf objects of the schema.

use async_graphql::{
    Enum, ID, InputValueError, InputValueResult, Object, Scalar, ScalarType, SimpleObject, Value,
};
use chrono::{DateTime, SecondsFormat, Utc};
use entity::{deployment_replica, deployment_resources, deployment_status_history};

use crate::service::health;

/// A point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub DateTime<Utc>);

/// A point in time: an RFC 3339 timestamp in UTC with microsecond
/// precision, always written the same way, e.g. `2026-11-27T09:30:00.250000Z`
/// (so timestamps also sort as strings).
#[Scalar(name = "DateTime", specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339")]
impl ScalarType for Timestamp {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => DateTime::parse_from_rfc3339(text)
                .map(|at| Self(at.with_timezone(&Utc)))
                .map_err(|_| InputValueError::custom("expected an RFC 3339 timestamp")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_rfc3339())
    }
}

impl Timestamp {
    /// The one way a timestamp is written (see the scalar's description).
    pub(crate) fn to_rfc3339(self) -> String {
        self.with_rfc3339(str::to_owned)
    }

    /// Gives `write` the timestamp as [`Self::to_rfc3339`] writes it, from a
    /// buffer on the stack.
    pub(crate) fn with_rfc3339<R>(self, write: impl FnOnce(&str) -> R) -> R {
        let mut buffer = [0; entity::timestamp::MICROS_LEN];
        match entity::timestamp::write_micros(&self.0, &mut buffer) {
            Some(text) => write(text),
            None => write(&self.0.to_rfc3339_opts(SecondsFormat::Micros, true)),
        }
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self(at)
    }
}

/// Lifecycle state of a deployment.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::DeploymentStatus")]
pub enum DeploymentStatus {
    /// Accepted, waiting to be scheduled.
    Pending,
    /// Placed on nodes; replicas are starting.
    Scheduled,
    /// Serving.
    Running,
    /// Stopped on purpose (or deleted).
    Stopped,
    /// Could not be brought up.
    Failed,
}

/// Lifecycle state of one replica.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::ReplicaStatus")]
pub enum ReplicaStatus {
    /// Waiting for a node.
    Pending,
    /// Container starting.
    Starting,
    /// Container up and serving.
    Running,
    /// Being shut down.
    Stopping,
    /// Shut down.
    Stopped,
    /// Crashed or could not start.
    Failed,
}

/// Overall health verdict, computed from the replicas and the target count.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "health::Health")]
pub enum Health {
    /// Enough replicas running and none failed.
    Healthy,
    /// Some replicas running, but one failed or fewer run than targeted.
    Degraded,
    /// No replicas, or none running.
    Unhealthy,
}

#[derive(Debug)]
pub struct Replica(pub deployment_replica::Model);

/// One replica (container) of a deployment.
#[Object]
impl Replica {
    /// Replica id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Node the replica is placed on, once scheduled.
    async fn node_id(&self) -> Option<ID> {
        self.0.node_id.map(|id| ID(id.to_string()))
    }
    /// Current state.
    async fn status(&self) -> ReplicaStatus {
        self.0.status.into()
    }
    /// Container runtime id, once created.
    async fn container_id(&self) -> Option<&str> {
        self.0.container_id.as_deref()
    }
    /// When the container started.
    async fn started_at(&self) -> Option<Timestamp> {
        self.0.started_at.map(Timestamp)
    }
    /// When the container stopped.
    async fn stopped_at(&self) -> Option<Timestamp> {
        self.0.stopped_at.map(Timestamp)
    }
}

#[derive(Debug)]
pub struct Resources(pub deployment_resources::Model);

/// Resources allocated to each replica of a deployment.
#[Object]
impl Resources {
    /// CPU cores (fractions allowed).
    async fn cpu_cores(&self) -> f64 {
        self.0.cpu_cores
    }
    /// Memory in MiB.
    async fn memory_mb(&self) -> i32 {
        self.0.memory_mb
    }
    /// Whole GPUs.
    async fn gpu_units(&self) -> i32 {
        self.0.gpu_units
    }
    /// Persistent storage in GB.
    async fn storage_gb(&self) -> i32 {
        self.0.storage_gb
    }
}

#[derive(Debug)]
pub struct StatusChange(pub deployment_status_history::Model);

/// One status transition of a deployment.
#[Object]
impl StatusChange {
    /// Status before the change; null for the first entry.
    async fn old_status(&self) -> Option<DeploymentStatus> {
        self.0.old_status.map(Into::into)
    }
    /// Status after the change.
    async fn new_status(&self) -> DeploymentStatus {
        self.0.new_status.into()
    }
    /// When it changed.
    async fn changed_at(&self) -> Timestamp {
        Timestamp(self.0.changed_at)
    }
    /// Why it changed, when known.
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
}

/// How many replicas a deployment has, in total and per status.
#[derive(SimpleObject, Debug, Clone, Copy)]
pub struct ReplicaCounts {
    /// All replicas, whatever their status.
    pub total: i64,
    /// Replicas waiting for a node.
    pub pending: i64,
    /// Replicas starting.
    pub starting: i64,
    /// Replicas running.
    pub running: i64,
    /// Replicas shutting down.
    pub stopping: i64,
    /// Replicas shut down.
    pub stopped: i64,
    /// Replicas that failed.
    pub failed: i64,
}

impl From<health::ReplicaCounts> for ReplicaCounts {
    fn from(c: health::ReplicaCounts) -> Self {
        Self {
            total: c.total(),
            pending: c.pending,
            starting: c.starting,
            running: c.running,
            stopping: c.stopping,
            stopped: c.stopped,
            failed: c.failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_always_carry_microseconds_in_utc() {
        let whole = DateTime::from_timestamp(1_800_000_000, 0).map(Timestamp);
        let fine = DateTime::from_timestamp(1_800_000_000, 123_456_000).map(Timestamp);
        assert_eq!(
            whole.map(|t| t.to_value()),
            Some(Value::String("2027-01-15T08:00:00.000000Z".into()))
        );
        assert_eq!(
            fine.map(|t| t.to_value()),
            Some(Value::String("2027-01-15T08:00:00.123456Z".into()))
        );
        let parsed = Timestamp::parse(Value::String("2027-01-15T09:00:00.5+01:00".into()));
        assert_eq!(parsed.ok().map(|t| t.0.timestamp_micros()), Some(1_800_000_000_500_000));
    }
}
