//! The platform's health verdict, in Rust (for resolved deployments) and in
//! SQL (for filtering the list without fetching every row).

use entity::{ReplicaStatus, deployment, deployment_replica};
use sea_orm::{
    ActiveEnum,
    sea_query::{Asterisk, Expr, ExprTrait, Query, SimpleExpr},
};

/// Overall health of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
}

/// How many replicas a deployment has in each status (serialized with the
/// API's field names, as webhook payloads carry them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaCounts {
    pub pending: i64,
    pub starting: i64,
    pub running: i64,
    pub stopping: i64,
    pub stopped: i64,
    pub failed: i64,
}

impl ReplicaCounts {
    pub fn total(&self) -> i64 {
        self.pending + self.starting + self.running + self.stopping + self.stopped + self.failed
    }

    /// The counts of `replicas`, every replica of one deployment.
    pub fn of(replicas: &[deployment_replica::Model]) -> Self {
        let mut counts = Self::default();
        for replica in replicas {
            counts.add(replica.status, 1);
        }
        counts
    }

    pub fn add(&mut self, status: ReplicaStatus, count: i64) {
        let slot = match status {
            ReplicaStatus::Pending => &mut self.pending,
            ReplicaStatus::Starting => &mut self.starting,
            ReplicaStatus::Running => &mut self.running,
            ReplicaStatus::Stopping => &mut self.stopping,
            ReplicaStatus::Stopped => &mut self.stopped,
            ReplicaStatus::Failed => &mut self.failed,
        };
        *slot += count;
    }

    /// The verdict: no replicas, or none running (which includes all failed),
    /// is UNHEALTHY; any failure or fewer running than the target is DEGRADED;
    /// otherwise HEALTHY.
    pub fn health(&self, target_replicas: i32) -> Health {
        if self.total() == 0 || self.running == 0 {
            Health::Unhealthy
        } else if self.failed > 0 || self.running < i64::from(target_replicas) {
            Health::Degraded
        } else {
            Health::Healthy
        }
    }
}

/// `(SELECT COUNT(*) FROM deployment_replicas WHERE deployment_id = deployments.id AND status = ?)`,
/// correlated with the outer `deployments` row; served by the
/// `(deployment_id, status)` index.
pub fn replica_count_expr(status: ReplicaStatus) -> SimpleExpr {
    use deployment_replica::{Column, Entity as Replicas};
    Query::select()
        .expr(Expr::col(Asterisk).count())
        .from(Replicas)
        .and_where(
            Expr::col((Replicas, Column::DeploymentId))
                .equals((deployment::Entity, deployment::Column::Id)),
        )
        .and_where(Expr::col((Replicas, Column::Status)).eq(status.to_value()))
        .to_owned()
        .into()
}

/// A condition on the `deployments` row that holds exactly when
/// [`ReplicaCounts::health`] would give `health`.
pub fn health_condition(health: Health) -> SimpleExpr {
    let running = replica_count_expr(ReplicaStatus::Running);
    let failed = replica_count_expr(ReplicaStatus::Failed);
    let target = Expr::col((deployment::Entity, deployment::Column::TargetReplicas));
    match health {
        Health::Unhealthy => running.eq(0),
        Health::Degraded => running.clone().gt(0).and(failed.gt(0).or(running.lt(target))),
        Health::Healthy => running.clone().gt(0).and(failed.eq(0)).and(running.gte(target)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(running: i64, failed: i64, other: i64) -> ReplicaCounts {
        ReplicaCounts { running, failed, pending: other, ..ReplicaCounts::default() }
    }

    #[test]
    fn no_replicas_is_unhealthy_even_with_target_zero() {
        assert_eq!(counts(0, 0, 0).health(0), Health::Unhealthy);
        assert_eq!(counts(0, 0, 0).health(3), Health::Unhealthy);
    }

    #[test]
    fn all_running_at_target_is_healthy() {
        assert_eq!(counts(3, 0, 0).health(3), Health::Healthy);
        assert_eq!(counts(4, 0, 0).health(3), Health::Healthy);
        assert_eq!(counts(1, 0, 0).health(0), Health::Healthy);
    }

    #[test]
    fn running_below_target_without_failure_is_degraded() {
        assert_eq!(counts(2, 0, 1).health(3), Health::Degraded);
    }

    #[test]
    fn a_failure_with_enough_running_is_degraded() {
        assert_eq!(counts(3, 1, 0).health(3), Health::Degraded);
    }

    #[test]
    fn nothing_running_is_unhealthy() {
        assert_eq!(counts(0, 0, 3).health(3), Health::Unhealthy);
        assert_eq!(counts(0, 3, 0).health(3), Health::Unhealthy);
        assert_eq!(counts(0, 0, 2).health(0), Health::Unhealthy);
    }

    #[test]
    fn total_sums_every_status() {
        let mut c = ReplicaCounts::default();
        for status in [ReplicaStatus::Pending, ReplicaStatus::Stopping, ReplicaStatus::Failed] {
            c.add(status, 2);
        }
        assert_eq!((c.total(), c.failed, c.running), (6, 2, 0));
    }
}
