//! Enums and leaf objects of the schema.

use async_graphql::{
    Enum, ID, InputValueError, InputValueResult, Object, Scalar, ScalarType, Value,
};
use chrono::{DateTime, SecondsFormat, Utc};
use entity::{deployment_replica, deployment_resources, deployment_status_history};

use super::fields::{Leaf, enum_name, plain_string, row_object};
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

impl Leaf for Timestamp {
    fn write(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        match entity::timestamp::micros_ascii(&self.0) {
            Some(text) => {
                out.push(b'"');
                out.extend_from_slice(&text);
                out.push(b'"');
                Ok(())
            }
            None => self.with_rfc3339(|text| plain_string(out, text)),
        }
    }
}

macro_rules! enum_leaf {
    ($($ty:ty),*) => {$(
        impl Leaf for $ty {
            fn write(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
                enum_name(out, *self)
            }
        }
    )*};
}
enum_leaf!(DeploymentStatus, ReplicaStatus, Health);

#[derive(Debug)]
pub struct Replica(pub deployment_replica::Model);

row_object! {
    /// One replica (container) of a deployment.
    #[Object]
    impl Replica, over deployment_replica::Model {
        /// Replica id.
        "id" id(r) -> ID = ID(r.id.to_string());
        /// Node the replica is placed on, once scheduled.
        "nodeId" node_id(r) -> Option<ID> = r.node_id.map(|id| ID(id.to_string()));
        /// Current state.
        "status" status(r) -> ReplicaStatus = r.status.into();
        /// Container runtime id, once created.
        "containerId" container_id(r) -> Option<&str> = r.container_id.as_deref();
        /// When the container started.
        "startedAt" started_at(r) -> Option<Timestamp> = r.started_at.map(Timestamp);
        /// When the container stopped.
        "stoppedAt" stopped_at(r) -> Option<Timestamp> = r.stopped_at.map(Timestamp);
    }
}

#[derive(Debug)]
pub struct Resources(pub deployment_resources::Model);

row_object! {
    /// Resources allocated to each replica of a deployment.
    #[Object]
    impl Resources, over deployment_resources::Model {
        /// CPU cores (fractions allowed).
        "cpuCores" cpu_cores(r) -> f64 = r.cpu_cores;
        /// Memory in MiB.
        "memoryMb" memory_mb(r) -> i32 = r.memory_mb;
        /// Whole GPUs.
        "gpuUnits" gpu_units(r) -> i32 = r.gpu_units;
        /// Persistent storage in GB.
        "storageGb" storage_gb(r) -> i32 = r.storage_gb;
    }
}

#[derive(Debug)]
pub struct StatusChange(pub deployment_status_history::Model);

row_object! {
    /// One status transition of a deployment.
    #[Object]
    impl StatusChange, over deployment_status_history::Model {
        /// Status before the change; null for the first entry.
        "oldStatus" old_status(r) -> Option<DeploymentStatus> = r.old_status.map(Into::into);
        /// Status after the change.
        "newStatus" new_status(r) -> DeploymentStatus = r.new_status.into();
        /// When it changed.
        "changedAt" changed_at(r) -> Timestamp = Timestamp(r.changed_at);
        /// Why it changed, when known.
        "reason" reason(r) -> Option<&str> = r.reason.as_deref();
    }
}

/// The replica counts the service computes, as the schema shows them.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaCounts(pub health::ReplicaCounts);

row_object! {
    /// How many replicas a deployment has, in total and per status.
    #[Object]
    impl ReplicaCounts, over health::ReplicaCounts {
        /// All replicas, whatever their status.
        "total" total(c) -> i64 = c.total();
        /// Replicas waiting for a node.
        "pending" pending(c) -> i64 = c.pending;
        /// Replicas starting.
        "starting" starting(c) -> i64 = c.starting;
        /// Replicas running.
        "running" running(c) -> i64 = c.running;
        /// Replicas shutting down.
        "stopping" stopping(c) -> i64 = c.stopping;
        /// Replicas shut down.
        "stopped" stopped(c) -> i64 = c.stopped;
        /// Replicas that failed.
        "failed" failed(c) -> i64 = c.failed;
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
