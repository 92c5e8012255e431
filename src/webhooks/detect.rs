//! Events from the change capture. Every deployment the capture reports
//! changed is compared with its last described view
//! (`webhook_deployment_states`); a difference that makes events is
//! written, with one outbox row per event and matching endpoint, in one
//! transaction that holds the state row's lock. An instance that saw the
//! same change then finds nothing left to tell, so each transition makes
//! one event across instances and restarts. At start, and whenever the
//! capture may have missed changes, every deployment is compared.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::Utc;
use entity::{
    ReplicaStatus, deployment, deployment_replica, webhook_delivery,
    webhook_deployment_state as state, webhook_endpoint,
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, OnConflict, Query, SelectStatement},
};
use uuid::Uuid;

use super::{
    EventType, Webhooks,
    events::{DeploymentView, Payload, Seen, events, message_id},
    outbox::{Subscription, outbox_row},
};
use crate::{db::Db, live::Tap, service::health::ReplicaCounts};

/// Deployments compared per statement in a sweep.
const PAGE: u64 = 500;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Takes changes from `tap` and turns them into events, for as long as
/// the server runs.
pub async fn detect_forever(webhooks: Arc<Webhooks>, db: Db, tap: Arc<Tap>) {
    tap.listen();
    let mut backoff = Duration::from_millis(100);
    loop {
        let changed = tap.take().await;
        let result = if changed.everything {
            sweep(&webhooks, &db).await
        } else {
            let ids: Vec<Uuid> = changed.deployments.iter().copied().collect();
            detect(&webhooks, &db, &ids).await
        };
        match result {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(err) => {
                tracing::warn!(error = %err, "cannot compute webhook events; retrying");
                tap.put_back(changed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Compares every deployment, and every described one whose row is gone.
async fn sweep(webhooks: &Webhooks, db: &Db) -> Result<(), DbErr> {
    let mut after: Option<Uuid> = None;
    loop {
        let mut page = deployment::Entity::find()
            .select_only()
            .column(deployment::Column::Id)
            .filter(deployment::Column::UserId.in_subquery(with_endpoints()))
            .order_by_asc(deployment::Column::Id)
            .limit(PAGE);
        if let Some(after) = after {
            page = page.filter(deployment::Column::Id.gt(after));
        }
        let ids: Vec<Uuid> = page.into_tuple().all(db).await?;
        detect(webhooks, db, &ids).await?;
        match ids.last() {
            Some(last) if ids.len() as u64 == PAGE => after = Some(*last),
            _ => break,
        }
    }
    // Rows removed outright (not soft-deleted) by another writer.
    let gone: Vec<Uuid> = state::Entity::find()
        .select_only()
        .column(state::Column::DeploymentId)
        .filter(state::Column::Deleted.eq(false))
        .filter(state::Column::UserId.in_subquery(with_endpoints()))
        .filter(state::Column::DeploymentId.not_in_subquery(
            Query::select().column(deployment::Column::Id).from(deployment::Entity).to_owned(),
        ))
        .into_tuple()
        .all(db)
        .await?;
    for ids in gone.chunks(PAGE as usize) {
        detect(webhooks, db, ids).await?;
    }
    Ok(())
}

/// The users with an enabled endpoint: only their deployments are
/// followed (see `endpoints::follow`), so webhooks cost the writes of
/// everyone else nothing.
fn with_endpoints() -> SelectStatement {
    Query::select()
        .column(webhook_endpoint::Column::UserId)
        .from(webhook_endpoint::Entity)
        .and_where(Expr::col(webhook_endpoint::Column::Enabled).eq(true))
        .to_owned()
}

/// Whose deployments a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whose {
    /// Those of users with an enabled endpoint.
    Followed,
    Anyone,
}

/// Each deployment of `ids` as it is now (`None`: deleted or gone).
async fn current(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    whose: Whose,
) -> Result<HashMap<Uuid, (deployment::Model, DeploymentView)>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut deployments =
        deployment::Entity::find().filter(deployment::Column::Id.is_in(ids.iter().copied()));
    if whose == Whose::Followed {
        deployments = deployments.filter(deployment::Column::UserId.in_subquery(with_endpoints()));
    }
    let deployments = deployments.all(db).await?;
    if deployments.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = deployments.iter().map(|deployment| deployment.id).collect();
    let counted: Vec<(Uuid, ReplicaStatus, i64)> = deployment_replica::Entity::find()
        .select_only()
        .column(deployment_replica::Column::DeploymentId)
        .column(deployment_replica::Column::Status)
        .column_as(deployment_replica::Column::Id.count(), "count")
        .filter(deployment_replica::Column::DeploymentId.is_in(ids.iter().copied()))
        .group_by(deployment_replica::Column::DeploymentId)
        .group_by(deployment_replica::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let mut counts: HashMap<Uuid, ReplicaCounts> = HashMap::new();
    for (id, status, count) in counted {
        counts.entry(id).or_default().add(status, count);
    }
    Ok(deployments
        .into_iter()
        .map(|model| {
            let view =
                DeploymentView::of(&model, &counts.get(&model.id).copied().unwrap_or_default());
            (model.id, (model, view))
        })
        .collect())
}

/// A placeholder's sequence: the row this transaction inserted for a
/// deployment first seen now. Never committed: the same transaction writes
/// the real row.
const PLACEHOLDER: i64 = -1;

/// Records every deployment of `user` as it is now, without events: the
/// user starts being followed (their first enabled endpoint).
pub async fn describe_all_of(db: &impl ConnectionTrait, user: Uuid) -> Result<(), DbErr> {
    let ids: Vec<Uuid> = deployment::Entity::find()
        .select_only()
        .column(deployment::Column::Id)
        .filter(deployment::Column::UserId.eq(user))
        .order_by_asc(deployment::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    let at = Utc::now();
    for ids in ids.chunks(ROWS_PER_INSERT) {
        let now = current(db, ids, Whose::Anyone).await?;
        let mut rows = Vec::new();
        for (model, view) in ids.iter().filter_map(|id| now.get(id)) {
            let deleted = model.deleted_at.is_some();
            rows.push(state::ActiveModel {
                deployment_id: Set(model.id),
                user_id: Set(model.user_id),
                sequence: Set(0),
                snapshot: Set(if deleted { None } else { Some(json(view)?) }),
                deleted: Set(deleted),
                updated_at: Set(at),
            });
        }
        if rows.is_empty() {
            continue;
        }
        // The sequence goes on where it was.
        let columns = [state::Column::Snapshot, state::Column::Deleted, state::Column::UpdatedAt];
        state::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(state::Column::DeploymentId).update_columns(columns).to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// What the last event said of a deployment.
fn seen(row: Option<&state::Model>) -> Seen {
    match row {
        None => Seen::New,
        Some(row) if row.sequence == PLACEHOLDER => Seen::New,
        Some(row) if row.deleted => Seen::Described(None),
        Some(row) => match row.snapshot.as_deref().and_then(|s| serde_json::from_str(s).ok()) {
            Some(view) => Seen::Described(Some(view)),
            None => Seen::Undescribed,
        },
    }
}

/// Whether the state row must be written: events to tell, or a view to
/// record without one.
fn needs_writing(before: &Seen, now: Option<&DeploymentView>) -> bool {
    match before {
        Seen::Undescribed => true,
        Seen::New => now.is_some(),
        Seen::Described(_) => !events(before, now).is_empty(),
    }
}

/// The view of a live deployment; `None` for a deleted or missing one.
fn live(
    now: &HashMap<Uuid, (deployment::Model, DeploymentView)>,
    id: Uuid,
) -> Option<&DeploymentView> {
    now.get(&id).filter(|(model, _)| model.deleted_at.is_none()).map(|(_, view)| view)
}

/// Compares `ids` with their states (read without locks: most changes
/// make no event) and writes those that differ, a batch at a time.
async fn detect(webhooks: &Webhooks, db: &Db, ids: &[Uuid]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let now = current(db, ids, Whose::Followed).await?;
    let states: HashMap<Uuid, state::Model> = state::Entity::find()
        .filter(state::Column::DeploymentId.is_in(ids.iter().copied()))
        .filter(state::Column::UserId.in_subquery(with_endpoints()))
        .all(db)
        .await?
        .into_iter()
        .map(|row| (row.deployment_id, row))
        .collect();
    // Deployments of users without endpoints are in neither.
    let mut changed: Vec<Uuid> = ids
        .iter()
        .copied()
        .filter(|id| now.contains_key(id) || states.contains_key(id))
        .filter(|id| needs_writing(&seen(states.get(id)), live(&now, *id)))
        .collect();
    // One order for every instance's locks: no deadlock between two.
    changed.sort_unstable();
    let mut written = false;
    for batch in changed.chunks(BATCH) {
        written |= write(webhooks, db, batch).await?;
    }
    if written {
        webhooks.wake.notify_one();
    }
    Ok(())
}

/// Deployments written per transaction.
const BATCH: usize = 100;
/// Rows per INSERT: well under SQLite's 32,766 bound values.
const ROWS_PER_INSERT: usize = 500;

/// Writes the events of `ids` (sorted) in one transaction that holds their
/// state rows' locks, reading them as they are under the locks; true if
/// any event was written.
async fn write(webhooks: &Webhooks, db: &Db, ids: &[Uuid]) -> Result<bool, DbErr> {
    let txn = db.begin_write().await?;
    let at = Utc::now();
    // Rows for deployments never seen: another instance inserting the same
    // waits for this one's commit, then finds them written.
    let placeholders: Vec<state::ActiveModel> = ids
        .iter()
        .map(|id| state::ActiveModel {
            deployment_id: Set(*id),
            user_id: Set(Uuid::nil()),
            sequence: Set(PLACEHOLDER),
            snapshot: Set(None),
            deleted: Set(false),
            updated_at: Set(at),
        })
        .collect();
    state::Entity::insert_many(placeholders)
        .on_conflict(OnConflict::column(state::Column::DeploymentId).do_nothing().to_owned())
        .exec_without_returning(&txn)
        .await?;
    let rows: HashMap<Uuid, state::Model> = state::Entity::find()
        .filter(state::Column::DeploymentId.is_in(ids.iter().copied()))
        .order_by_asc(state::Column::DeploymentId)
        .lock_exclusive()
        .all(&txn)
        .await?
        .into_iter()
        .map(|row| (row.deployment_id, row))
        .collect();
    let now = current(&txn, ids, Whose::Anyone).await?;
    let users: Vec<Uuid> = now.values().map(|(model, _)| model.user_id).collect();
    let endpoints = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::UserId.is_in(users))
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .all(&txn)
        .await?;
    // Each endpoint's subscription read once, not once per event.
    let endpoints: Vec<(webhook_endpoint::Model, Subscription)> = endpoints
        .into_iter()
        .map(|endpoint| {
            let subscription = Subscription::of(&endpoint);
            (endpoint, subscription)
        })
        .collect();
    let mut deliveries = Vec::new();
    let mut states = Vec::new();
    for id in ids {
        let Some(row) = rows.get(id) else { continue };
        let before = seen(Some(row));
        let view = live(&now, *id);
        let user = now.get(id).map_or(row.user_id, |(model, _)| model.user_id);
        let Some((state, events)) = describe(*id, user, row, &before, view, now.get(id), at)?
        else {
            continue;
        };
        for (event_type, message, payload) in events {
            for (endpoint, subscription) in &endpoints {
                if endpoint.user_id == user && subscription.wants(event_type, *id) {
                    deliveries.push(outbox_row(endpoint, &message, event_type, &payload, at));
                }
            }
            webhooks.metrics.webhook_event(event_type.as_str());
        }
        states.push(state);
    }
    let written = !deliveries.is_empty();
    for rows in deliveries.chunks(ROWS_PER_INSERT) {
        webhook_delivery::Entity::insert_many(rows.to_vec()).exec_without_returning(&txn).await?;
    }
    // Every row of the batch was written above (a placeholder at least):
    // the upsert replaces them with what this batch found.
    let columns = [
        state::Column::UserId,
        state::Column::Sequence,
        state::Column::Snapshot,
        state::Column::Deleted,
        state::Column::UpdatedAt,
    ];
    for rows in states.chunks(ROWS_PER_INSERT) {
        state::Entity::insert_many(rows.to_vec())
            .on_conflict(
                OnConflict::column(state::Column::DeploymentId).update_columns(columns).to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    // A placeholder left (the deployment vanished in between) goes.
    state::Entity::delete_many()
        .filter(state::Column::DeploymentId.is_in(ids.iter().copied()))
        .filter(state::Column::Sequence.eq(PLACEHOLDER))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(written)
}

/// An event: its type, `webhook-id` and payload.
type Event = (EventType, String, String);

/// The state row a deployment gets, and its events; `None` when nothing
/// is to be written (a deployment gone before it was ever seen).
fn describe(
    id: Uuid,
    user: Uuid,
    row: &state::Model,
    before: &Seen,
    view: Option<&DeploymentView>,
    found: Option<&(deployment::Model, DeploymentView)>,
    at: chrono::DateTime<Utc>,
) -> Result<Option<(state::ActiveModel, Vec<Event>)>, DbErr> {
    if *before == Seen::New && found.is_none() {
        return Ok(None);
    }
    let types = events(before, view);
    let mut sequence = Ord::max(row.sequence, 0);
    // A deleted deployment's payload shows it as it was last seen.
    let last = match before {
        Seen::Described(Some(view)) => Some(view),
        _ => None,
    };
    let shown = view.or(found.map(|(_, view)| view)).or(last);
    let mut told = Vec::new();
    for event_type in types {
        sequence += 1;
        let Some(shown) = shown else { continue };
        let payload = json(&Payload::new(event_type, at, sequence, shown, last))?;
        told.push((event_type, message_id(), payload));
    }
    let snapshot = match view.or(last) {
        Some(view) => Some(json(view)?),
        None => None,
    };
    let state = state::ActiveModel {
        deployment_id: Set(id),
        user_id: Set(user),
        sequence: Set(sequence),
        snapshot: Set(snapshot),
        deleted: Set(view.is_none()),
        updated_at: Set(at),
    };
    Ok(Some((state, told)))
}

fn json(value: &impl serde::Serialize) -> Result<String, DbErr> {
    serde_json::to_string(value).map_err(|err| DbErr::Custom(err.to_string()))
}
