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
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::OnConflict,
};
use uuid::Uuid;

use super::{
    Webhooks,
    endpoints::Subscription,
    events::{DeploymentView, Payload, Seen, events, message_id},
    outbox::outbox_row,
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
        .filter(
            state::Column::DeploymentId.not_in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(deployment::Column::Id)
                    .from(deployment::Entity)
                    .to_owned(),
            ),
        )
        .into_tuple()
        .all(db)
        .await?;
    for ids in gone.chunks(PAGE as usize) {
        detect(webhooks, db, ids).await?;
    }
    Ok(())
}

/// Each deployment of `ids` as it is now (`None`: deleted or gone).
async fn current(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, (deployment::Model, DeploymentView)>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let deployments = deployment::Entity::find()
        .filter(deployment::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?;
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

/// What the last event said of a deployment.
fn seen(row: Option<&state::Model>) -> Seen {
    match row {
        None => Seen::New,
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

/// Compares `ids` with their states; writes those that changed.
async fn detect(webhooks: &Webhooks, db: &Db, ids: &[Uuid]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let now = current(db, ids).await?;
    let states: HashMap<Uuid, state::Model> = state::Entity::find()
        .filter(state::Column::DeploymentId.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|row| (row.deployment_id, row))
        .collect();
    let mut written = false;
    for id in ids {
        let view = now.get(id).filter(|(model, _)| model.deleted_at.is_none()).map(|(_, v)| v);
        if needs_writing(&seen(states.get(id)), view) {
            written |= write(webhooks, db, *id).await?;
        }
    }
    if written {
        webhooks.wake.notify_one();
    }
    Ok(())
}

/// Writes one deployment's events, under its state row's lock; true if
/// any was written.
async fn write(webhooks: &Webhooks, db: &Db, id: Uuid) -> Result<bool, DbErr> {
    let txn = db.begin_write().await?;
    let at = Utc::now();
    let row = state::Entity::find_by_id(id).lock_exclusive().one(&txn).await?;
    let now = current(&txn, &[id]).await?;
    let model = now.get(&id).map(|(model, _)| model);
    let view = now.get(&id).filter(|(model, _)| model.deleted_at.is_none()).map(|(_, v)| v);
    let mut before = seen(row.as_ref());
    if row.is_none() {
        let Some(model) = model else { return Ok(false) };
        // Another instance may be inserting it too: the loser waits for the
        // winner's commit, inserts nothing, and reads the winner's row.
        let inserted = state::Entity::insert(state::ActiveModel {
            deployment_id: Set(id),
            user_id: Set(model.user_id),
            sequence: Set(0),
            snapshot: Set(None),
            deleted: Set(false),
            updated_at: Set(at),
        })
        .on_conflict(OnConflict::column(state::Column::DeploymentId).do_nothing().to_owned())
        .exec_without_returning(&txn)
        .await?;
        if inserted == 0 {
            let row = state::Entity::find_by_id(id).lock_exclusive().one(&txn).await?;
            before = seen(row.as_ref());
        }
    }
    let user = match (&row, model) {
        (_, Some(model)) => model.user_id,
        (Some(row), None) => row.user_id,
        (None, None) => return Ok(false),
    };
    let types = events(&before, view);
    let mut sequence = row.as_ref().map_or(0, |row| row.sequence);
    // A deleted deployment's payload shows it as it was last seen.
    let last = match &before {
        Seen::Described(Some(view)) => Some(view.clone()),
        _ => None,
    };
    let shown = view.cloned().or_else(|| now.get(&id).map(|(_, v)| v.clone())).or(last.clone());
    if !types.is_empty() {
        let endpoints = webhook_endpoint::Entity::find()
            .filter(webhook_endpoint::Column::UserId.eq(user))
            .filter(webhook_endpoint::Column::Enabled.eq(true))
            .all(&txn)
            .await?;
        let mut deliveries = Vec::new();
        for event_type in &types {
            sequence += 1;
            let Some(shown) = shown.as_ref() else { continue };
            let payload = serde_json::to_string(&Payload::new(
                *event_type,
                at,
                sequence,
                shown,
                last.as_ref(),
            ))
            .map_err(|err| DbErr::Custom(err.to_string()))?;
            let message = message_id();
            for endpoint in &endpoints {
                if Subscription::of(endpoint).wants(*event_type, id) {
                    deliveries.push(outbox_row(endpoint, &message, *event_type, &payload, at));
                }
            }
            webhooks.metrics.webhook_event(event_type.as_str());
        }
        if !deliveries.is_empty() {
            webhook_delivery::Entity::insert_many(deliveries).exec_without_returning(&txn).await?;
        }
    }
    let snapshot = match view {
        Some(view) => {
            Some(serde_json::to_string(view).map_err(|err| DbErr::Custom(err.to_string()))?)
        }
        None => last.as_ref().and_then(|last| serde_json::to_string(last).ok()),
    };
    state::Entity::update(state::ActiveModel {
        deployment_id: Set(id),
        user_id: Set(user),
        sequence: Set(sequence),
        snapshot: Set(snapshot),
        deleted: Set(view.is_none()),
        updated_at: Set(at),
    })
    .exec(&txn)
    .await?;
    txn.commit().await?;
    Ok(!types.is_empty())
}
