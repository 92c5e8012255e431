//! Webhooks in the API: a user's endpoints, their deliveries, and the
//! mutations that manage them. The work is `webhooks::endpoints`'.

use std::sync::Arc;

use async_graphql::{
    Context, ErrorExtensions, ID, InputObject, MaybeUndefined, Object, Result, ResultExt,
    SimpleObject,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use entity::{webhook_delivery as delivery, webhook_endpoint as endpoint};
use uuid::Uuid;

use super::{
    connection::{PageInfo, PageState},
    mutation::writes,
    types::Timestamp,
};
use crate::{
    db::Db,
    error::ApiError,
    ids::UserId,
    webhooks::{
        DeliveryState, EventType, Webhooks,
        endpoints::{self, EndpointChanges, NewEndpoint},
        outbox::Subscription,
    },
};

/// Deliveries a page holds at most.
const MAX_PAGE: i32 = 100;

/// A URL deployment events are sent to, signed per Standard Webhooks.
#[derive(Debug)]
pub struct WebhookEndpoint(endpoint::Model);

#[Object]
impl WebhookEndpoint {
    /// Endpoint id (a UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Where deliveries are POSTed.
    async fn url(&self) -> &str {
        &self.0.url
    }

    /// The event types sent to it.
    async fn events(&self) -> Vec<EventType> {
        Subscription::of(&self.0).events
    }

    /// The deployments whose events are sent; null for all of yours.
    async fn deployment_ids(&self) -> Option<Vec<ID>> {
        Subscription::of(&self.0)
            .deployments
            .map(|ids| ids.iter().map(|id| ID(id.to_string())).collect())
    }

    /// Whether events are sent to it. The server disables an endpoint
    /// whose deliveries all failed for WEBHOOK_DISABLE_AFTER (5 days by
    /// default); `disabledReason` then says so.
    async fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// Why the server disabled it; null if it did not.
    async fn disabled_reason(&self) -> Option<&str> {
        self.0.disabled_reason.as_deref()
    }

    /// When its current run of failed attempts began; null after a success.
    async fn failing_since(&self) -> Option<Timestamp> {
        self.0.failing_since.map(Timestamp)
    }

    /// Until when the secret before the last rotation also signs; null
    /// when only one secret signs.
    async fn previous_secret_expires_at(&self) -> Option<Timestamp> {
        self.0.previous_secret_until.filter(|until| *until > Utc::now()).map(Timestamp)
    }

    /// When it was created.
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }
}

/// One event's delivery to one endpoint.
#[derive(Debug)]
pub struct WebhookDelivery(delivery::Model);

#[Object]
impl WebhookDelivery {
    /// Delivery id (a UUID), for `redeliverWebhook`.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The `webhook-id` header: the same on every attempt, so a receiver
    /// drops repeats.
    async fn webhook_id(&self) -> &str {
        &self.0.message_id
    }

    /// The endpoint it goes to.
    async fn endpoint_id(&self) -> ID {
        ID(self.0.endpoint_id.to_string())
    }

    /// What the event tells.
    async fn event_type(&self) -> Option<EventType> {
        EventType::parse(&self.0.event_type)
    }

    /// Where it stands.
    async fn state(&self) -> DeliveryState {
        DeliveryState::parse(&self.0.state)
    }

    /// Attempts made so far.
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }

    /// The HTTP status of the last attempt's answer; null without one
    /// (not attempted, or no answer: refused, timed out).
    async fn last_status_code(&self) -> Option<i32> {
        self.0.last_status_code
    }

    /// Why the last attempt failed; null after a success or before any.
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }

    /// When it is attempted next; null once SUCCEEDED or FAILED.
    async fn next_attempt_at(&self) -> Option<Timestamp> {
        (DeliveryState::parse(&self.0.state) == DeliveryState::Pending)
            .then_some(Timestamp(self.0.next_attempt_at))
    }

    /// The body sent (JSON text): `{type, timestamp, sequence, data}`.
    async fn payload(&self) -> &str {
        &self.0.payload
    }

    /// When the event was written.
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }
}

/// A page of an endpoint's deliveries, newest first.
#[derive(SimpleObject, Debug)]
pub struct WebhookDeliveryConnection {
    /// The deliveries of this page.
    pub nodes: Vec<WebhookDelivery>,
    /// Where this page sits: pass `endCursor` as `after` for the next.
    pub page_info: PageInfo,
}

/// A new endpoint and its signing secret.
#[derive(SimpleObject, Debug)]
pub struct CreatedWebhookEndpoint {
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
    /// The signing secret (`whsec_` and base64): shown only here and by
    /// `rotateWebhookSecret`; keep it where your receiver reads it.
    pub secret: String,
}

/// An endpoint's new signing secret.
#[derive(SimpleObject, Debug)]
pub struct RotatedWebhookSecret {
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
    /// The new signing secret, shown only here.
    pub secret: String,
    /// Until when the previous secret signs too (24 hours): deliveries
    /// carry both signatures meanwhile, so receivers switch at leisure.
    pub previous_secret_expires_at: Timestamp,
}

/// What remains of a deleted endpoint.
#[derive(SimpleObject, Debug)]
pub struct DeletedWebhookEndpoint {
    /// Id of the deleted endpoint.
    pub id: ID,
}

/// A new endpoint.
#[derive(InputObject, Debug)]
pub struct CreateWebhookEndpointInput {
    /// An `https` URL (`http` and private addresses only with
    /// WEBHOOK_ALLOW_PRIVATE_TARGETS); at most 2048 bytes.
    pub url: String,
    /// The event types to send; at least one.
    pub events: Vec<EventType>,
    /// Only these deployments' events (at most 100); omit or null for all of yours.
    pub deployment_ids: Option<Vec<ID>>,
}

/// Changes to an endpoint; an omitted field stays as it is.
#[derive(InputObject, Debug)]
pub struct UpdateWebhookEndpointInput {
    /// A new URL, checked as at creation.
    pub url: Option<String>,
    /// The event types to send; at least one.
    pub events: Option<Vec<EventType>>,
    /// Only these deployments' events; null for all of yours.
    pub deployment_ids: MaybeUndefined<Vec<ID>>,
    /// Enable or disable it. Enabling clears `disabledReason`; disabling
    /// fails its pending deliveries.
    pub enabled: Option<bool>,
}

fn ids(ids: Vec<ID>) -> Vec<String> {
    ids.into_iter().map(|id| id.0).collect()
}

/// `after` as a point in the list: the creation time and id of the last
/// delivery of the previous page.
fn parse_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let bad = || ApiError::bad_input("after: not a cursor of this list");
    let text = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(bad)?;
    let (micros, id) = text.split_once(':').ok_or_else(bad)?;
    let at = micros.parse().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(bad)?;
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

fn cursor(row: &delivery::Model) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", row.created_at.timestamp_micros(), row.id))
}

fn context<'c>(ctx: &Context<'c>) -> Result<(UserId, &'c Db, &'c Arc<Webhooks>)> {
    Ok((*ctx.data::<UserId>()?, ctx.data::<Db>()?, ctx.data::<Arc<Webhooks>>()?))
}

/// Your webhook endpoints and their deliveries.
#[derive(Debug, Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// Your webhook endpoints, oldest first.
    async fn webhook_endpoints(&self, ctx: &Context<'_>) -> Result<Vec<WebhookEndpoint>> {
        let (user, db, _) = context(ctx)?;
        Ok(endpoints::list(db, user).await.extend()?.into_iter().map(WebhookEndpoint).collect())
    }

    /// One of your endpoints' deliveries, newest first.
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint.")] endpoint_id: ID,
        #[graphql(desc = "How many, 1 to 100.", default = 20)] first: i32,
        #[graphql(desc = "The previous page's `endCursor`.")] after: Option<String>,
    ) -> Result<WebhookDeliveryConnection> {
        let (user, db, _) = context(ctx)?;
        if !(1..=MAX_PAGE).contains(&first) {
            return Err(ApiError::bad_input(format!("first: 1 to {MAX_PAGE}")).extend());
        }
        let after = after.as_deref().map(parse_cursor).transpose().extend()?;
        let (rows, more) =
            endpoints::deliveries(db, user, &endpoint_id, first as u64, after).await.extend()?;
        let page_info = PageInfo::new(PageState {
            has_next_page: more,
            has_previous_page: after.is_some(),
            start_cursor: rows.first().map(cursor),
            end_cursor: rows.last().map(cursor),
        });
        Ok(WebhookDeliveryConnection {
            nodes: rows.into_iter().map(WebhookDelivery).collect(),
            page_info,
        })
    }
}

/// Managing your webhook endpoints.
#[derive(Debug, Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Registers an endpoint for your deployments' events. The answer
    /// holds its signing secret, shown only here.
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint to create.")] input: CreateWebhookEndpointInput,
    ) -> Result<CreatedWebhookEndpoint> {
        let (user, _, webhooks) = context(ctx)?;
        let db = writes(ctx)?;
        let new = NewEndpoint {
            url: input.url,
            events: input.events,
            deployment_ids: input.deployment_ids.map(ids),
        };
        let (endpoint, secret) = endpoints::create(db, webhooks, user, new).await.extend()?;
        Ok(CreatedWebhookEndpoint { endpoint: WebhookEndpoint(endpoint), secret })
    }

    /// Changes an endpoint.
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint.")] id: ID,
        #[graphql(desc = "What to change.")] input: UpdateWebhookEndpointInput,
    ) -> Result<WebhookEndpoint> {
        let (user, _, webhooks) = context(ctx)?;
        let db = writes(ctx)?;
        let deployment_ids = match input.deployment_ids {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(list) => Some(Some(ids(list))),
        };
        let changes = EndpointChanges {
            url: input.url,
            events: input.events,
            deployment_ids,
            enabled: input.enabled,
        };
        Ok(WebhookEndpoint(endpoints::update(db, webhooks, user, &id, changes).await.extend()?))
    }

    /// Deletes an endpoint and its deliveries, pending ones included.
    async fn delete_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint.")] id: ID,
    ) -> Result<DeletedWebhookEndpoint> {
        let (user, _, _) = context(ctx)?;
        let db = writes(ctx)?;
        let id = endpoints::delete(db, user, &id).await.extend()?;
        Ok(DeletedWebhookEndpoint { id: ID(id.to_string()) })
    }

    /// Gives an endpoint a new signing secret. The previous one keeps
    /// signing alongside it for 24 hours.
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint.")] id: ID,
    ) -> Result<RotatedWebhookSecret> {
        let (user, _, _) = context(ctx)?;
        let db = writes(ctx)?;
        let (endpoint, secret, until) = endpoints::rotate(db, user, &id).await.extend()?;
        Ok(RotatedWebhookSecret {
            endpoint: WebhookEndpoint(endpoint),
            secret,
            previous_secret_expires_at: Timestamp(until),
        })
    }

    /// Sends a WEBHOOK_TEST event to an endpoint; its delivery is answered,
    /// to follow in `webhookDeliveries`.
    async fn send_test_webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint.")] id: ID,
    ) -> Result<WebhookDelivery> {
        let (user, _, webhooks) = context(ctx)?;
        let db = writes(ctx)?;
        Ok(WebhookDelivery(endpoints::send_test(db, webhooks, user, &id).await.extend()?))
    }

    /// Attempts a delivery again from its first attempt, now, with the
    /// same `webhook-id`.
    async fn redeliver_webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The delivery.")] delivery_id: ID,
    ) -> Result<WebhookDelivery> {
        let (user, _, webhooks) = context(ctx)?;
        let db = writes(ctx)?;
        Ok(WebhookDelivery(endpoints::redeliver(db, webhooks, user, &delivery_id).await.extend()?))
    }
}
