//! A user's endpoints and their deliveries, as the GraphQL API reads and
//! changes them. Every function is scoped to the user: another user's
//! endpoint or delivery is NOT_FOUND, as a missing one is.

use chrono::{DateTime, Duration as Span, Utc};
use entity::{webhook_delivery as delivery, webhook_endpoint as endpoint};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::{
    DeliveryState, EventType, Webhooks, detect,
    events::message_id,
    outbox::{Subscription, outbox_row},
    signing, target,
};
use crate::{db::Db, error::ApiError, ids::UserId};

/// How long the secret before a rotation keeps signing.
pub const ROTATION_OVERLAP: Span = Span::hours(24);

/// A new endpoint.
#[derive(Debug)]
pub struct NewEndpoint {
    pub url: String,
    pub events: Vec<EventType>,
    pub deployment_ids: Option<Vec<String>>,
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub events: Option<Vec<EventType>>,
    /// `Some(None)`: all deployments.
    pub deployment_ids: Option<Option<Vec<String>>>,
    pub enabled: Option<bool>,
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Webhook endpoint {} not found or access denied",
        crate::error::echo(id)
    ))
}

fn delivery_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Webhook delivery {} not found or access denied",
        crate::error::echo(id)
    ))
}

async fn checked_url(webhooks: &Webhooks, url: &str) -> Result<String, ApiError> {
    let allow = webhooks.config.webhook_allow_private_targets;
    let parsed = target::parse_url(url, allow).map_err(ApiError::BadUserInput)?;
    target::check_resolves_publicly(&parsed, allow).await.map_err(ApiError::BadUserInput)?;
    Ok(parsed.to_string())
}

fn new_secret() -> Result<String, ApiError> {
    signing::new_secret().map_err(|err| {
        ApiError::Internal(std::sync::Arc::new(sea_orm::DbErr::Custom(err.to_string())))
    })
}

/// Creates an endpoint; answers it with its signing secret.
pub async fn create(
    db: &Db,
    webhooks: &Webhooks,
    user: UserId,
    new: NewEndpoint,
) -> Result<(endpoint::Model, String), ApiError> {
    let url = checked_url(webhooks, &new.url).await?;
    let events = Subscription::stored_events(&new.events)?;
    let deployment_ids = Subscription::stored_deployments(new.deployment_ids.as_deref())?;
    let count =
        endpoint::Entity::find().filter(endpoint::Column::UserId.eq(user.0)).count(db).await?;
    let max = webhooks.config.max_webhook_endpoints_per_user;
    if count >= max {
        return Err(ApiError::bad_input(format!(
            "you have {count} webhook endpoints, the most allowed (MAX_WEBHOOK_ENDPOINTS_PER_USER={max}); delete one first"
        )));
    }
    let secret = new_secret()?;
    let now = Utc::now();
    let txn = db.begin_write().await?;
    let model = endpoint::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(user.0),
        url: Set(url),
        events: Set(events),
        deployment_ids: Set(deployment_ids),
        enabled: Set(true),
        disabled_reason: Set(None),
        secret: Set(secret.clone()),
        previous_secret: Set(None),
        previous_secret_until: Set(None),
        failing_since: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    follow(&txn, user, model.id).await?;
    txn.commit().await?;
    Ok((model, secret))
}

/// The user's endpoints, oldest first.
pub async fn list(db: &Db, user: UserId) -> Result<Vec<endpoint::Model>, ApiError> {
    Ok(endpoint::Entity::find()
        .filter(endpoint::Column::UserId.eq(user.0))
        .order_by_asc(endpoint::Column::CreatedAt)
        .order_by_asc(endpoint::Column::Id)
        .all(db)
        .await?)
}

/// One of the user's endpoints.
pub async fn find(
    db: &impl ConnectionTrait,
    user: UserId,
    id: &str,
) -> Result<endpoint::Model, ApiError> {
    let uuid = Uuid::parse_str(id).map_err(|_| not_found(id))?;
    endpoint::Entity::find_by_id(uuid)
        .filter(endpoint::Column::UserId.eq(user.0))
        .one(db)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Changes an endpoint. Enabling one clears why it was disabled and its
/// failure streak; disabling one fails its pending deliveries.
pub async fn update(
    db: &Db,
    webhooks: &Webhooks,
    user: UserId,
    id: &str,
    changes: EndpointChanges,
) -> Result<endpoint::Model, ApiError> {
    let current = find(db, user, id).await?;
    let mut model = current.clone().into_active_model();
    if let Some(url) = &changes.url {
        model.url = Set(checked_url(webhooks, url).await?);
    }
    if let Some(events) = &changes.events {
        model.events = Set(Subscription::stored_events(events)?);
    }
    if let Some(ids) = &changes.deployment_ids {
        model.deployment_ids = Set(Subscription::stored_deployments(ids.as_deref())?);
    }
    match changes.enabled {
        Some(true) if !current.enabled => {
            model.enabled = Set(true);
            model.disabled_reason = Set(None);
            model.failing_since = Set(None);
        }
        Some(false) if current.enabled => {
            model.enabled = Set(false);
            model.disabled_reason = Set(None);
        }
        _ => {}
    }
    model.updated_at = Set(Utc::now());
    let txn = db.begin_write().await?;
    let updated = model.update(&txn).await?;
    if changes.enabled == Some(false) && current.enabled {
        fail_pending(&txn, current.id, "the endpoint was disabled").await?;
    }
    if changes.enabled == Some(true) && !current.enabled {
        follow(&txn, user, current.id).await?;
    }
    txn.commit().await?;
    Ok(updated)
}

/// Starts following the user's deployments when `endpoint` is their only
/// enabled one: the detector passes over the deployments of users without
/// endpoints, so what it recorded of these (if anything) is stale. Each is
/// described as it is now, without an event (its sequence goes on), so the
/// endpoint hears of the first change after its creation.
async fn follow(
    db: &impl ConnectionTrait,
    user: UserId,
    endpoint: Uuid,
) -> Result<(), sea_orm::DbErr> {
    let others = endpoint::Entity::find()
        .filter(endpoint::Column::UserId.eq(user.0))
        .filter(endpoint::Column::Enabled.eq(true))
        .filter(endpoint::Column::Id.ne(endpoint))
        .count(db)
        .await?;
    if others > 0 {
        return Ok(());
    }
    detect::describe_all_of(db, user.0).await
}

/// Fails an endpoint's pending deliveries not being attempted now.
pub async fn fail_pending(
    db: &impl ConnectionTrait,
    endpoint: Uuid,
    why: &str,
) -> Result<u64, sea_orm::DbErr> {
    let result = delivery::Entity::update_many()
        .col_expr(delivery::Column::State, DeliveryState::Failed.as_str().into())
        .col_expr(delivery::Column::LastError, why.into())
        .filter(delivery::Column::EndpointId.eq(endpoint))
        .filter(delivery::Column::State.eq(DeliveryState::Pending.as_str()))
        .filter(delivery::Column::Lease.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Deletes an endpoint and its deliveries.
pub async fn delete(db: &Db, user: UserId, id: &str) -> Result<Uuid, ApiError> {
    let endpoint = find(db, user, id).await?;
    let txn = db.begin_write().await?;
    delivery::Entity::delete_many()
        .filter(delivery::Column::EndpointId.eq(endpoint.id))
        .exec(&txn)
        .await?;
    endpoint::Entity::delete_by_id(endpoint.id).exec(&txn).await?;
    txn.commit().await?;
    Ok(endpoint.id)
}

/// A new secret; the one it replaces keeps signing for [`ROTATION_OVERLAP`].
pub async fn rotate(
    db: &Db,
    user: UserId,
    id: &str,
) -> Result<(endpoint::Model, String, DateTime<Utc>), ApiError> {
    let current = find(db, user, id).await?;
    let secret = new_secret()?;
    let now = Utc::now();
    let until = now + ROTATION_OVERLAP;
    let mut model = current.clone().into_active_model();
    model.previous_secret = Set(Some(current.secret));
    model.previous_secret_until = Set(Some(until));
    model.secret = Set(secret.clone());
    model.updated_at = Set(now);
    Ok((model.update(db).await?, secret, until))
}

/// Queues a WEBHOOK_TEST delivery to the endpoint.
pub async fn send_test(
    db: &Db,
    webhooks: &Webhooks,
    user: UserId,
    id: &str,
) -> Result<delivery::Model, ApiError> {
    let endpoint = find(db, user, id).await?;
    if !endpoint.enabled {
        return Err(ApiError::bad_input("the endpoint is disabled: enable it first"));
    }
    let at = Utc::now();
    let payload = serde_json::json!({
        "type": EventType::WebhookTest.as_str(),
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": { "endpointId": endpoint.id },
    });
    let row =
        outbox_row(&endpoint, &message_id(), EventType::WebhookTest, &payload.to_string(), at);
    let model = row.insert(db).await?;
    webhooks.wake.notify_one();
    Ok(model)
}

/// One page of an endpoint's deliveries, newest first: `first` rows after
/// the `after` cursor, and whether more follow.
pub async fn deliveries(
    db: &Db,
    user: UserId,
    endpoint_id: &str,
    first: u64,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Result<(Vec<delivery::Model>, bool), ApiError> {
    let endpoint = find(db, user, endpoint_id).await?;
    let mut query = delivery::Entity::find().filter(delivery::Column::EndpointId.eq(endpoint.id));
    if let Some((created_at, id)) = after {
        query = query.filter(
            Condition::any().add(delivery::Column::CreatedAt.lt(created_at)).add(
                Condition::all()
                    .add(delivery::Column::CreatedAt.eq(created_at))
                    .add(delivery::Column::Id.lt(id)),
            ),
        );
    }
    let mut rows = query
        .order_by_desc(delivery::Column::CreatedAt)
        .order_by_desc(delivery::Column::Id)
        .limit(first + 1)
        .all(db)
        .await?;
    let more = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok((rows, more))
}

/// Attempts a delivery again, now, from its first attempt (same `webhook-id`).
pub async fn redeliver(
    db: &Db,
    webhooks: &Webhooks,
    user: UserId,
    id: &str,
) -> Result<delivery::Model, ApiError> {
    let uuid = Uuid::parse_str(id).map_err(|_| delivery_not_found(id))?;
    let row = delivery::Entity::find_by_id(uuid)
        .filter(delivery::Column::UserId.eq(user.0))
        .one(db)
        .await?
        .ok_or_else(|| delivery_not_found(id))?;
    let endpoint = find(db, user, &row.endpoint_id.to_string()).await?;
    if !endpoint.enabled {
        return Err(ApiError::bad_input("the delivery's endpoint is disabled: enable it first"));
    }
    let mut model = row.into_active_model();
    model.state = Set(DeliveryState::Pending.as_str().to_owned());
    model.attempts = Set(0);
    model.next_attempt_at = Set(Utc::now());
    let updated = model.update(db).await?;
    webhooks.wake.notify_one();
    Ok(updated)
}
