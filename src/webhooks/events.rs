//! What a webhook tells: a deployment as the API shows it, the events a
//! change from one such view to the next makes, and the payload sent.

use chrono::{DateTime, SecondsFormat, Utc};
use entity::deployment;
use sea_orm::ActiveEnum;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::EventType;
use crate::service::health::{Health, ReplicaCounts};

/// A deployment as an event describes it, in the API's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentView {
    pub id: Uuid,
    pub name: String,
    pub status: String,
    pub health: String,
    pub target_replicas: i32,
    pub replica_counts: Counts,
}

/// `ReplicaCounts` as the API shows them: the total, and per status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: i64,
    #[serde(flatten)]
    pub by_status: ReplicaCounts,
}

impl DeploymentView {
    pub fn of(deployment: &deployment::Model, counts: &ReplicaCounts) -> Self {
        let health = match counts.health(deployment.target_replicas) {
            Health::Healthy => "HEALTHY",
            Health::Degraded => "DEGRADED",
            Health::Unhealthy => "UNHEALTHY",
        };
        Self {
            id: deployment.id,
            name: deployment.name.clone(),
            status: deployment.status.to_value().to_uppercase(),
            health: health.to_owned(),
            target_replicas: deployment.target_replicas,
            replica_counts: Counts { total: counts.total(), by_status: *counts },
        }
    }
}

/// A deployment as last described (`None`: never), and as it is now
/// (`None`: deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// No event has described it yet.
    New,
    /// It existed before webhooks did: described without an event.
    Undescribed,
    /// The last event's view, or deleted.
    Described(Option<DeploymentView>),
}

/// The events from `before` to `now`, in the order they are sent.
pub fn events(before: &Seen, now: Option<&DeploymentView>) -> Vec<EventType> {
    match (before, now) {
        (Seen::New, Some(_)) => vec![EventType::DeploymentCreated],
        (Seen::Described(Some(_)), None) => vec![EventType::DeploymentDeleted],
        (Seen::Described(Some(was)), Some(now)) => {
            let mut events = Vec::new();
            if was.status != now.status {
                events.push(EventType::DeploymentStatusChanged);
            }
            if was.target_replicas != now.target_replicas {
                events.push(EventType::DeploymentScaled);
            }
            if was.health != now.health {
                events.push(EventType::DeploymentHealthChanged);
            }
            events
        }
        _ => Vec::new(),
    }
}

/// The body of a delivery: `{type, timestamp, sequence, data: {deployment, previous}}`.
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub timestamp: String,
    /// The deployment's event count: a receiver drops an event whose
    /// sequence is below one it has already seen for the deployment.
    pub sequence: i64,
    pub data: PayloadData<'a>,
}

#[derive(Debug, Serialize)]
pub struct PayloadData<'a> {
    pub deployment: &'a DeploymentView,
    pub previous: Option<&'a DeploymentView>,
}

impl<'a> Payload<'a> {
    pub fn new(
        event_type: EventType,
        at: DateTime<Utc>,
        sequence: i64,
        deployment: &'a DeploymentView,
        previous: Option<&'a DeploymentView>,
    ) -> Self {
        Self {
            event_type,
            timestamp: at.to_rfc3339_opts(SecondsFormat::Millis, true),
            sequence,
            data: PayloadData { deployment, previous },
        }
    }
}

/// The `webhook-id` of a new message.
pub fn message_id() -> String {
    format!("msg_{}", Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(status: &str, health: &str, target: i32) -> DeploymentView {
        DeploymentView {
            id: Uuid::nil(),
            name: "web".into(),
            status: status.into(),
            health: health.into(),
            target_replicas: target,
            replica_counts: Counts { total: 0, by_status: ReplicaCounts::default() },
        }
    }

    #[test]
    fn a_view_reads_as_the_api_names_it_and_reads_back() {
        let mut view = view("RUNNING", "DEGRADED", 3);
        view.replica_counts.by_status.add(entity::ReplicaStatus::Failed, 1);
        view.replica_counts.total = 1;
        let text = serde_json::to_string(&view).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["replicaCounts"],
            serde_json::json!({ "total": 1, "pending": 0, "starting": 0, "running": 0,
                "stopping": 0, "stopped": 0, "failed": 1 })
        );
        assert_eq!(serde_json::from_str::<DeploymentView>(&text).unwrap(), view);
    }

    #[test]
    fn each_change_that_matters_is_one_event() {
        let healthy = view("RUNNING", "HEALTHY", 2);
        let now = Some(&healthy);
        assert_eq!(events(&Seen::New, now), [EventType::DeploymentCreated]);
        assert_eq!(events(&Seen::Undescribed, now), []);
        assert_eq!(events(&Seen::Described(Some(healthy.clone())), now), []);
        let degraded = view("RUNNING", "DEGRADED", 3);
        assert_eq!(
            events(&Seen::Described(Some(healthy.clone())), Some(&degraded)),
            [EventType::DeploymentScaled, EventType::DeploymentHealthChanged]
        );
        let stopped = view("STOPPED", "HEALTHY", 2);
        assert_eq!(
            events(&Seen::Described(Some(healthy.clone())), Some(&stopped)),
            [EventType::DeploymentStatusChanged]
        );
        assert_eq!(events(&Seen::Described(Some(healthy)), None), [EventType::DeploymentDeleted]);
        assert_eq!(events(&Seen::Described(None), None), []);
        assert_eq!(events(&Seen::New, None), []);
    }
}
