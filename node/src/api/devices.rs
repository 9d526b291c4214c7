//! Devices and push: register a device's keys, list and forget devices, point a device at its
//! relay, publish a user's signed device list, and tell clients the node's push settings.

use super::{AppState, CurrentUser, JsonBody};
use crate::config::{normalise_relay_url, PushConfig};
use crate::engine::Command;
use crate::error::{ApiError, ApiResult};
use crate::model::{is_plain_text, now_ms, DeviceRecord, RelayRegistration};
use crate::views;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use confab_protocol::devices::{DeviceEntry, DeviceList, SealingKey, SignedDeviceList};
use confab_protocol::relay::{CapabilityToken, DevicePublicKey, QueueId};
use confab_protocol::{DeviceId, OrgKey, UserId};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    name: String,
    signing_key: DevicePublicKey,
    sealing_key: SealingKey,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayBody {
    /// `null` forgets the relay: the device is no longer pushed to.
    relay: Option<RelayFields>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayFields {
    url: String,
    queue: QueueId,
    capability: String,
}

/// A device as its user sees it.
#[derive(Serialize)]
pub struct DeviceView {
    id: DeviceId,
    name: String,
    signing_key: DevicePublicKey,
    sealing_key: SealingKey,
    created_ms: u64,
    relay: Option<RelayView>,
    /// Whether the device has a live WebSocket session now.
    live: bool,
}

#[derive(Serialize)]
pub struct RelayView {
    url: String,
    queue: QueueId,
}

impl DeviceView {
    fn new(state: &AppState, record: DeviceRecord) -> Self {
        Self {
            live: state.live_devices.is_live(&record.id),
            id: record.id,
            name: record.name,
            signing_key: record.signing_key,
            sealing_key: record.sealing_key,
            created_ms: record.created_ms,
            relay: record.relay.map(|relay| RelayView { url: relay.url, queue: relay.queue }),
        }
    }
}

/// `GET /push`: what a device needs to register with a relay for this node.
pub async fn push_settings(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
) -> ApiResult<Json<serde_json::Value>> {
    let key = org_key(&state)?;
    let push = &state.config.push;
    let offered = push.offered_relays();
    Ok(Json(serde_json::json!({
        "org": key.id(),
        "default_relay_url": push.default_relay_url.as_ref().and(offered.first()),
        "relay_urls": offered,
        "other_relays_allowed": push.other_relays_allowed,
        "envelope_ttl_s": push.envelope_ttl_s,
    })))
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<serde_json::Value>> {
    let devices: Vec<DeviceView> = views::devices(state.store.as_ref(), &user.id)?
        .into_iter()
        .map(|record| DeviceView::new(&state, record))
        .collect();
    Ok(Json(serde_json::json!({ "devices": devices })))
}

pub async fn register(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<NewDevice>,
) -> ApiResult<Response> {
    let name = body.name.trim().to_string();
    let name_max = state.config.push.device_name_chars_max;
    if !is_plain_text(&name, 1..=name_max) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("a device name has 1 to {name_max} characters and no control characters"),
        ));
    }
    // Keys that are not valid curve points, or X25519 keys of low order, are refused now
    // rather than at the first push.
    if ed25519_dalek::VerifyingKey::from_bytes(body.signing_key.as_bytes()).is_err() {
        return Err(ApiError::bad_request(
            "invalid_key",
            "signing_key is not an Ed25519 public key",
        ));
    }
    if confab_protocol::relay::seal(body.sealing_key.as_bytes(), b"", [1; 32]).is_err() {
        return Err(ApiError::bad_request(
            "invalid_key",
            "sealing_key is not a usable X25519 public key",
        ));
    }
    let record = DeviceRecord {
        id: DeviceId::from_bytes(crate::random::random_bytes()),
        user: user.id.clone(),
        name,
        signing_key: body.signing_key,
        sealing_key: body.sealing_key,
        created_ms: now_ms(),
        relay: None,
    };
    let devices_max = state.config.push.devices_per_user_max;
    let record = state
        .engine
        .call(|reply| Command::RegisterDevice { device: record, devices_max, reply })
        .await?;
    Ok((StatusCode::CREATED, Json(DeviceView::new(&state, record))).into_response())
}

pub async fn revoke(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device_id): Path<String>,
) -> ApiResult<Response> {
    let device = parse_device(&device_id)?;
    state
        .engine
        .call(|reply| Command::RevokeDevice {
            user: user.id.clone(),
            device,
            renunciations_max: state.config.push.renunciations_per_user_max,
            reply,
        })
        .await?;
    refresh_pusher(&state, &user.id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn set_relay(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device_id): Path<String>,
    JsonBody(body): JsonBody<RelayBody>,
) -> ApiResult<Json<DeviceView>> {
    let device = parse_device(&device_id)?;
    let current = views::device(state.store.as_ref(), &user.id, &device)?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let relay = match body.relay {
        None => None,
        Some(fields) => Some(check_relay(&state, &current, fields)?),
    };
    let record = state
        .engine
        .call(|reply| Command::SetDeviceRelay {
            user: user.id.clone(),
            device,
            relay,
            renunciations_max: state.config.push.renunciations_per_user_max,
            reply,
        })
        .await?;
    refresh_pusher(&state, &user.id);
    Ok(Json(DeviceView::new(&state, record)))
}

/// `GET /users/{user}/devices`: the user's devices, signed by the organisation.
pub async fn signed_list(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    Path(user_id): Path<String>,
) -> ApiResult<Json<SignedDeviceList>> {
    let user: UserId = user_id.parse().map_err(|e: confab_protocol::IdError| {
        ApiError::bad_request("invalid_id", e.to_string())
    })?;
    if user.org_name() != state.config.org_name
        || views::user(state.store.as_ref(), user.localpart())?.is_none()
    {
        return Err(ApiError::not_found("user"));
    }
    let devices = views::devices(state.store.as_ref(), &user)?
        .into_iter()
        .map(|record| DeviceEntry {
            device_id: record.id,
            signing_key: record.signing_key,
            sealing_key: record.sealing_key,
            created_ms: record.created_ms,
        })
        .collect();
    let key = org_key(&state)?;
    let list = DeviceList { org: key.id(), user, issued_ms: now_ms(), devices };
    list.sign(&key).map(Json).map_err(|error| ApiError::internal(error.to_string()))
}

fn check_relay(
    state: &AppState,
    device: &DeviceRecord,
    fields: RelayFields,
) -> ApiResult<RelayRegistration> {
    let url = check_relay_url(&state.config.push, &fields.url)?;
    let capability = CapabilityToken::from_text(&fields.capability).map_err(|error| {
        ApiError::bad_request("invalid_capability", format!("capability: {error}"))
    })?;
    let org = org_key(state)?.id();
    let problem = if capability.queue != fields.queue {
        Some("it names another queue")
    } else if capability.sender != org {
        Some("it is not issued to this node's organisation (see GET /api/v1/push)")
    } else if capability.not_after_ms <= now_ms() {
        Some("it has expired")
    } else if capability.verify(&device.signing_key).is_err() {
        Some("it is not signed by this device's key")
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(ApiError::bad_request(
            "invalid_capability",
            format!("capability refused: {problem}"),
        ));
    }
    Ok(RelayRegistration { url, queue: fields.queue, capability: fields.capability })
}

/// The relay URL as stored: one the node offers, or (when `other_relays_allowed`) any `https`
/// URL. The node makes requests to it, so nothing else is accepted.
fn check_relay_url(push: &PushConfig, url: &str) -> ApiResult<String> {
    let url_max = push.relay_url_bytes_max;
    let url = normalise_relay_url(url);
    let offered = push.offered_relays();
    if offered.contains(&url) {
        return Ok(url);
    }
    if !push.is_relay_url(&url) {
        return Err(ApiError::bad_request(
            "invalid_relay_url",
            format!("the relay URL is an http(s) URL of at most {url_max} bytes"),
        ));
    }
    if push.other_relays_allowed {
        return if url.starts_with("https://") {
            Ok(url)
        } else {
            Err(ApiError::bad_request(
                "invalid_relay_url",
                "a relay this node does not offer is reached over https only",
            ))
        };
    }
    let offered = if offered.is_empty() { "none".to_string() } else { offered.join(", ") };
    Err(ApiError::bad_request(
        "relay_not_offered",
        format!(
            "this node pushes only through the relays it offers ({offered}); see GET /api/v1/push"
        ),
    ))
}

fn parse_device(text: &str) -> ApiResult<DeviceId> {
    text.parse().map_err(|_| ApiError::not_found("device"))
}

/// After a device changed: the pusher re-reads the user's devices and renounces what the
/// change left to renounce.
fn refresh_pusher(state: &AppState, user: &UserId) {
    if let Some(pusher) = &state.pusher {
        if let Err(error) = pusher.refresh(user) {
            tracing::warn!(%error, "push: could not re-read a user's devices");
        }
        pusher.renounce_soon();
    }
}

/// The organisation key (made by the engine on first start).
fn org_key(state: &AppState) -> ApiResult<OrgKey> {
    crate::org_key::read_org_key(state.store.as_ref())
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("organisation key missing"))
}
