//! The relay's HTTP API: `app(state) -> Router`, its handlers and the device WebSocket.
//! `spec/relay.md` is the contract; every refusal is an [`ApiError`].

use crate::error::{ApiError, ApiResult};
use crate::limits::retry_after_s;
use crate::metrics::Metrics;
use crate::push::{now_ms, PushJob};
use crate::store::{Caps, EnqueueOutcome, NewEnvelope, PushSubscription, StoredEnvelope};
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use confab_protocol::relay::{
    b64_encode, verify_device_auth, CapabilityId, CapabilityToken, ChallengePurpose, DeviceAuth,
    DevicePublicKey, EnqueueRequest, EnvelopeId, QueueId, RenounceRequest, Topic, Urgency,
    SEALED_VERSION, SEAL_OVERHEAD,
};
use confab_protocol::OrgId;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The router. Every route is under `/v1` except `/metrics` and `/healthz`.
pub fn app(state: Arc<AppState>) -> Router {
    let body_limit = state.config.limits.request_body_bytes_max;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/v1/vapid", get(vapid))
        .route("/v1/challenges", post(challenge))
        .route("/v1/queues", post(register))
        .route("/v1/queues/{queue}/envelopes", post(enqueue))
        .route("/v1/queues/{queue}/delete", post(delete_queue))
        .route("/v1/queues/{queue}/fetch", post(fetch))
        .route("/v1/queues/{queue}/ack", post(ack))
        .route("/v1/queues/{queue}/push", put(set_push))
        .route("/v1/queues/{queue}/revocations", post(revoke))
        .route("/v1/queues/{queue}/renunciations", post(renounce))
        .route("/v1/queues/{queue}/ws", get(websocket))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(cors))
        .with_state(state)
}

/// CORS for browser devices, whose pages and service workers live on their node's origin: any
/// origin may call the relay (`*`, no cookies: every request is authenticated by a signature, never
/// by ambient credentials). Preflights are answered here.
async fn cors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::{HeaderValue, Method};
    let preflight = request.method() == Method::OPTIONS;
    let mut response =
        if preflight { StatusCode::NO_CONTENT.into_response() } else { next.run(request).await };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT"),
        );
        headers
            .insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    response
}

/// A JSON body whose rejections are [`ApiError`]s.
#[derive(FromRequest)]
#[from_request(via(Json), rejection(ApiError))]
pub struct Body<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(
                "payload_too_large",
                "the request body is larger than the relay accepts",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_content_type",
                "the body must be application/json",
            ),
            _ => ApiError::bad_request("invalid_body", rejection.body_text()),
        }
    }
}

fn parse_queue(text: &str) -> ApiResult<QueueId> {
    text.parse().map_err(|_| {
        ApiError::bad_request("invalid_id", "queue id must be 26 characters of lowercase base32hex")
    })
}

fn next_challenge(state: &AppState) -> Option<String> {
    state.challenges.issue().ok().map(|c| b64_encode(&c))
}

/// Consumes the challenge and checks the device's signature for `purpose` on `queue`.
fn authenticate(
    state: &AppState,
    device: &DevicePublicKey,
    purpose: ChallengePurpose,
    queue: Option<QueueId>,
    auth: &DeviceAuth,
) -> ApiResult<()> {
    if !state.challenges.take(&auth.challenge) {
        return Err(ApiError::unauthorized(
            "challenge_invalid",
            "the challenge is unknown, expired or already used; ask for a new one",
        ));
    }
    let challenge: [u8; 32] = auth
        .challenge
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::unauthorized("challenge_invalid", "a challenge is 32 bytes"))?;
    verify_device_auth(device, purpose, &challenge, queue, &auth.signature).map_err(|_| {
        ApiError::unauthorized("bad_signature", "the device signature does not verify")
    })
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn vapid(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({ "vapid_public_key": state.pusher.vapid().public_key() }))
}

async fn challenge(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    state.challenge_limiter.check().map_err(|wait| ApiError::rate_limited(retry_after_s(wait)))?;
    let challenge = state.challenges.issue().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many outstanding challenges; try again shortly",
        )
    })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "challenge": b64_encode(&challenge),
            "expires_in_s": state.challenges.ttl().as_secs(),
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    device_key: DevicePublicKey,
    auth: DeviceAuth,
    #[serde(default)]
    push: Option<PushSubscription>,
}

fn check_push(state: &AppState, push: &Option<PushSubscription>) -> ApiResult<()> {
    if let Some(sub) = push {
        state
            .policy
            .check(sub)
            .map_err(|e| ApiError::bad_request("invalid_push_subscription", e.to_string()))?;
    }
    Ok(())
}

async fn register(
    State(state): State<Arc<AppState>>,
    Body(body): Body<RegisterBody>,
) -> ApiResult<Response> {
    state.register_limiter.check().map_err(|wait| ApiError::rate_limited(retry_after_s(wait)))?;
    authenticate(&state, &body.device_key, ChallengePurpose::Register, None, &body.auth)?;
    check_push(&state, &body.push)?;
    if state.store.queue_count() as u64 >= state.config.limits.queues_max {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "relay_full",
            "this relay holds as many queues as it accepts",
        ));
    }
    let mut failed = false;
    let queue = state
        .store
        .register(body.device_key, body.push, now_ms(), || {
            let mut bytes = [0u8; 16];
            failed |= getrandom::fill(&mut bytes).is_err();
            QueueId::from_bytes(bytes)
        })
        .await?;
    if failed {
        return Err(ApiError::internal("no randomness for a queue id"));
    }
    state.store.flush().await?;
    tracing::info!(%queue, "queue registered");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "queue": queue,
            "vapid_public_key": state.pusher.vapid().public_key(),
        })),
    )
        .into_response())
}

async fn enqueue(
    State(state): State<Arc<AppState>>,
    Path(queue): Path<String>,
    Body(request): Body<EnqueueRequest>,
) -> ApiResult<Response> {
    let limits = &state.config.limits;
    let queue = parse_queue(&queue)?;
    check_same_queue(&request.queue, &queue)?;
    if request.sealed.len() > limits.sealed_bytes_max {
        return Err(ApiError::too_large(
            "envelope_too_large",
            format!(
                "the sealed envelope is {} bytes; the limit is {}",
                request.sealed.len(),
                limits.sealed_bytes_max
            ),
        ));
    }
    if request.sealed.len() < SEAL_OVERHEAD || request.sealed[0] != SEALED_VERSION {
        return Err(ApiError::bad_request(
            "invalid_envelope",
            "sealed is not a version-1 sealed envelope",
        ));
    }
    if request.ttl_s == 0 || request.ttl_s > limits.ttl_s_max {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            format!("ttl_s must be 1 to {}", limits.ttl_s_max),
        ));
    }
    let now = now_ms();
    let skew_ms = limits.clock_skew_s_max.saturating_mul(1000);
    check_fresh(limits, request.sent_ms, now)?;
    request.verify_signature().map_err(|_| {
        ApiError::unauthorized("bad_signature", "the sender's signature does not verify")
    })?;
    let record = state.store.queue(&queue)?.ok_or_else(ApiError::unknown_queue)?;
    let cap = &request.capability;
    check_grant(cap, &queue, &request.sender, &record.device_key)?;
    if cap.not_after_ms < now {
        return Err(ApiError::forbidden("capability_expired", "the capability token has expired"));
    }
    if cap.not_after_ms > now.saturating_add(limits.capability_lifetime_s_max.saturating_mul(1000))
    {
        return Err(ApiError::forbidden(
            "capability_lifetime",
            format!(
                "capability tokens may be valid for at most {} s",
                limits.capability_lifetime_s_max
            ),
        ));
    }
    if state.store.is_revoked(&queue, &cap.id)? {
        return Err(ApiError::forbidden(
            "capability_revoked",
            "the device revoked this capability token",
        ));
    }
    if let Err(wait) = state.enqueue_limiter.check(&queue) {
        Metrics::inc(&state.metrics.rate_limited, 1);
        return Err(ApiError::rate_limited(retry_after_s(wait)));
    }
    let expires_ms = now + u64::from(request.ttl_s) * 1000;
    // The id must stay known for as long as this request could be replayed: after
    // `sent_ms + skew` the replay fails `stale_request` anyway (one second of margin).
    let keep_until_ms = request.sent_ms.saturating_add(skew_ms).saturating_add(1_000);
    let envelope = NewEnvelope {
        queue,
        envelope_id: request.envelope_id,
        sender: request.sender,
        expires_ms,
        keep_until_ms,
        urgency: request.urgency,
        topic: request.topic.clone(),
        sealed: request.sealed,
    };
    let caps = Caps { envelopes: limits.queue_envelopes_max, bytes: limits.queue_bytes_max };
    let outcome =
        state.store.enqueue(envelope, caps, now).await?.ok_or_else(ApiError::unknown_queue)?;
    // Nothing is acknowledged before it is on disk.
    state.store.flush().await?;
    match outcome {
        EnqueueOutcome::Queued { depth, collapsed } => {
            // Counted only now: `enqueued_total` promises envelopes on disk.
            Metrics::inc(&state.metrics.enqueued, 1);
            let _ = state.arrivals.send(queue);
            let push = match push_wanted(request.urgency, record.push.is_some()) {
                Err(reason) => reason,
                Ok(()) => {
                    let job = PushJob {
                        queue,
                        urgency: request.urgency,
                        ttl_s: request.ttl_s,
                        topic: request.topic,
                    };
                    if state.push_tx.try_send(job).is_err() {
                        Metrics::inc(&state.metrics.push_dropped, 1);
                        tracing::warn!(%queue, "push queue full; wake-up dropped (envelope kept)");
                        "dropped"
                    } else {
                        "queued"
                    }
                }
            };
            Ok((
                StatusCode::CREATED,
                Json(json!({
                    "status": "queued",
                    "envelope_id": request.envelope_id,
                    "expires_ms": expires_ms,
                    "depth": depth,
                    "collapsed": collapsed,
                    "push": push,
                })),
            )
                .into_response())
        }
        EnqueueOutcome::Duplicate { pending } => Ok((
            StatusCode::OK,
            Json(json!({
                "status": "duplicate",
                "envelope_id": request.envelope_id,
                "pending": pending,
                // The wake-up, if any, went with the first request; this says whether there
                // was one to send.
                "push": push_wanted(request.urgency, record.push.is_some())
                    .map_or_else(|reason| reason, |()| "subscribed"),
            })),
        )
            .into_response()),
        EnqueueOutcome::Overflow { depth, bytes } => Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "queue_full",
            format!(
                "the queue holds {depth} envelopes ({bytes} bytes); caps are {} envelopes and {} bytes. Nothing was stored",
                limits.queue_envelopes_max, limits.queue_bytes_max
            ),
        )),
    }
}

/// The URL and the signed body must name the same queue.
fn check_same_queue(named: &QueueId, url: &QueueId) -> ApiResult<()> {
    if named != url {
        return Err(ApiError::bad_request(
            "queue_mismatch",
            "the request names another queue than its URL",
        ));
    }
    Ok(())
}

/// How long a revocation is kept: until the token's expiry, but tokens valid longer than the
/// lifetime cap are refused anyway, so no longer than that.
fn revocation_keep_until(limits: &crate::Limits, not_after_ms: u64, now_ms: u64) -> u64 {
    not_after_ms.min(now_ms.saturating_add(limits.capability_lifetime_s_max.saturating_mul(1000)))
}

fn revocation_limit(limits: &crate::Limits) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "revocation_limit",
        format!(
            "a queue keeps at most {} revocations; register a new queue",
            limits.revocations_per_queue_max
        ),
    )
}

/// A signed request's `sent_ms` must be within the allowed skew of the relay's clock (which
/// bounds how long a captured request can be replayed).
fn check_fresh(limits: &crate::Limits, sent_ms: u64, now_ms: u64) -> ApiResult<()> {
    if sent_ms.abs_diff(now_ms) > limits.clock_skew_s_max.saturating_mul(1000) {
        return Err(ApiError::bad_request(
            "stale_request",
            format!(
                "sent_ms is more than {} s away from the relay's clock",
                limits.clock_skew_s_max
            ),
        ));
    }
    Ok(())
}

/// The capability must be the queue's device's grant to this sender for this queue.
fn check_grant(
    cap: &CapabilityToken,
    queue: &QueueId,
    sender: &OrgId,
    device_key: &DevicePublicKey,
) -> ApiResult<()> {
    if cap.queue != *queue || cap.sender != *sender || cap.verify(device_key).is_err() {
        return Err(ApiError::forbidden(
            "capability_invalid",
            "the capability token is not the device's grant for this sender and queue",
        ));
    }
    Ok(())
}

/// A sender gives up its capability (its user removed the device): the capability is revoked
/// and every envelope this sender still has in the queue is deleted.
async fn renounce(
    State(state): State<Arc<AppState>>,
    Path(queue): Path<String>,
    Body(request): Body<RenounceRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let limits = &state.config.limits;
    let queue = parse_queue(&queue)?;
    check_same_queue(&request.queue, &queue)?;
    let now = now_ms();
    check_fresh(limits, request.sent_ms, now)?;
    request.verify_signature().map_err(|_| {
        ApiError::unauthorized("bad_signature", "the sender's signature does not verify")
    })?;
    let record = state.store.queue(&queue)?.ok_or_else(ApiError::unknown_queue)?;
    // Expired or already revoked capabilities may still be renounced: the purge is the point.
    check_grant(&request.capability, &queue, &request.sender, &record.device_key)?;
    if let Err(wait) = state.enqueue_limiter.check(&queue) {
        Metrics::inc(&state.metrics.rate_limited, 1);
        return Err(ApiError::rate_limited(retry_after_s(wait)));
    }
    let keep_until = revocation_keep_until(limits, request.capability.not_after_ms, now);
    let purged = state
        .store
        .renounce(
            &queue,
            &request.capability.id,
            keep_until,
            &request.sender,
            limits.revocations_per_queue_max,
            now,
        )
        .await?
        .ok_or_else(|| revocation_limit(limits))?;
    state.store.flush().await?;
    tracing::info!(%queue, purged, "capability renounced by its sender");
    Ok(Json(json!({ "ok": true, "purged": purged })))
}

/// Whether an envelope wakes its device: `Err` names why not, as the enqueue answer's `push`.
fn push_wanted(urgency: Urgency, subscribed: bool) -> Result<(), &'static str> {
    if urgency == Urgency::VeryLow {
        Err("very_low")
    } else if !subscribed {
        Err("no_subscription")
    } else {
        Ok(())
    }
}

/// An envelope as a device receives it.
#[derive(Serialize)]
pub struct EnvelopeOut {
    envelope_id: EnvelopeId,
    sender: OrgId,
    received_ms: u64,
    expires_ms: u64,
    urgency: Urgency,
    topic: Option<Topic>,
    sealed: String,
}

impl From<StoredEnvelope> for EnvelopeOut {
    fn from(e: StoredEnvelope) -> Self {
        Self {
            envelope_id: e.envelope_id,
            sender: e.sender,
            received_ms: e.received_ms,
            expires_ms: e.expires_ms,
            urgency: e.urgency,
            topic: e.topic,
            sealed: b64_encode(&e.sealed),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchBody {
    auth: DeviceAuth,
    #[serde(default)]
    ack: Vec<EnvelopeId>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn device_queue(
    state: &AppState,
    queue: &QueueId,
    purpose: ChallengePurpose,
    auth: &DeviceAuth,
) -> ApiResult<crate::store::QueueRecord> {
    let record = state.store.queue(queue)?;
    let Some(record) = record else {
        // Consume the challenge anyway: one try per challenge.
        state.challenges.take(&auth.challenge);
        return Err(ApiError::unknown_queue());
    };
    authenticate(state, &record.device_key, purpose, Some(*queue), auth)?;
    Ok(record)
}

fn check_ack_len(state: &AppState, n: usize) -> ApiResult<()> {
    let max = state.config.limits.ack_ids_max;
    if n > max {
        return Err(ApiError::bad_request(
            "too_many_ids",
            format!("at most {max} envelope ids per acknowledgement"),
        ));
    }
    Ok(())
}

async fn fetch(
    State(state): State<Arc<AppState>>,
    Path(queue): Path<String>,
    Body(body): Body<FetchBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let queue = parse_queue(&queue)?;
    check_ack_len(&state, body.ack.len())?;
    device_queue(&state, &queue, ChallengePurpose::Fetch, &body.auth).await?;
    let now = now_ms();
    let acked = if body.ack.is_empty() {
        0
    } else {
        let n = state.store.ack(&queue, &body.ack, now).await?;
        state.store.flush().await?;
        n
    };
    let limits = &state.config.limits;
    let max_n =
        body.limit.unwrap_or(limits.fetch_envelopes_max).clamp(1, limits.fetch_envelopes_max);
    let envelopes =
        state.store.pending(&queue, now, &HashSet::new(), max_n, limits.fetch_bytes_max)?;
    let record = state.store.queue(&queue)?.ok_or_else(ApiError::unknown_queue)?;
    let depth = state.store.depth(&queue).await;
    let envelopes: Vec<EnvelopeOut> = envelopes.into_iter().map(EnvelopeOut::from).collect();
    Ok(Json(json!({
        "envelopes": envelopes,
        "acked": acked,
        "depth": depth,
        "overflowed": record.overflowed,
        "expired": record.expired,
        "next_challenge": next_challenge(&state),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    auth: DeviceAuth,
    envelope_ids: Vec<EnvelopeId>,
}

async fn ack(
    State(state): State<Arc<AppState>>,
    Path(queue): Path<String>,
    Body(body): Body<AckBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let queue = parse_queue(&queue)?;
    check_ack_len(&state, body.envelope_ids.len())?;
    device_queue(&state, &queue, ChallengePurpose::Fetch, &body.auth).await?;
    let acked = state.store.ack(&queue, &body.envelope_ids, now_ms()).await?;
    state.store.flush().await?;
    Ok(Json(json!({
        "acked": acked,
        "depth": state.store.depth(&queue).await,
        "next_challenge": next_challenge(&state),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    auth: DeviceAuth,
    subscription: Option<PushSubscription>,
}

async fn set_push(
    State(state): State<Arc<AppState>>,
    Path(queue): Path<String>,
    Body(body): Body<PushBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let queue = parse_queue(&queue)?;
    device_queue(&state, &queue, ChallengePurpose::Manage, &body.auth).await?;
    check_push(&state, &body.subscription)?;
    state.store.set_push(&queue, body.subscription).await?.ok_or_else(ApiError::unknown_queue)?;
    state.store.flush().await?;
    Ok(Json(json!({ "ok": true, "next_challenge": next_challenge(&state) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    auth: DeviceAuth,
    capability_id: CapabilityId,
    /// The token's `not_after_ms`: the revocation is kept until then.
    not_after_ms: u64,
}

async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(queue): Path<String>,
    Body(body): Body<RevokeBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let queue = parse_queue(&queue)?;
    device_queue(&state, &queue, ChallengePurpose::Manage, &body.auth).await?;
    let limits = &state.config.limits;
    let keep_until = revocation_keep_until(limits, body.not_after_ms, now_ms());
    if !state
        .store
        .revoke(&queue, &body.capability_id, keep_until, limits.revocations_per_queue_max)
        .await?
    {
        return Err(revocation_limit(limits));
    }
    state.store.flush().await?;
    Ok(Json(json!({ "ok": true, "next_challenge": next_challenge(&state) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManageBody {
    auth: DeviceAuth,
}

async fn delete_queue(
    State(state): State<Arc<AppState>>,
    Path(queue): Path<String>,
    Body(body): Body<ManageBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let queue = parse_queue(&queue)?;
    device_queue(&state, &queue, ChallengePurpose::Manage, &body.auth).await?;
    if !state.store.delete_queue(&queue).await? {
        return Err(ApiError::unknown_queue());
    }
    state.store.flush().await?;
    tracing::info!(%queue, "queue deleted");
    Ok(Json(json!({ "ok": true })))
}

// ------------------------------------------------------------------------------------------------
// WebSocket

/// Messages a device sends over the WebSocket.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Auth {
        #[serde(with = "sig_b64")]
        signature: confab_protocol::Signature,
    },
    Ack {
        envelope_ids: Vec<EnvelopeId>,
    },
}

mod sig_b64 {
    use confab_protocol::relay::b64_decode;
    use confab_protocol::Signature;
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Signature, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = b64_decode(&text)
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| serde::de::Error::custom("signature: 64 bytes of unpadded base64url"))?;
        Ok(Signature(bytes))
    }
}

async fn websocket(
    State(state): State<Arc<AppState>>,
    Path(queue): Path<String>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let queue = parse_queue(&queue)?;
    let record = state.store.queue(&queue)?.ok_or_else(ApiError::unknown_queue)?;
    let permit = state.ws_sessions.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many open WebSocket sessions; try again shortly",
        )
    })?;
    let max = state.config.limits.ws_message_bytes_max;
    Ok(ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| async move {
        if let Err(e) = ws_session(state, queue, record.device_key, socket).await {
            tracing::debug!(%queue, error = %e, "websocket session ended");
        }
        drop(permit);
    }))
}

async fn ws_send(socket: &mut WebSocket, value: serde_json::Value) -> Result<(), String> {
    socket.send(Message::Text(value.to_string().into())).await.map_err(|e| e.to_string())
}

async fn ws_error(socket: &mut WebSocket, code: &str, message: &str) -> String {
    let _ = ws_send(socket, json!({ "type": "error", "code": code, "message": message })).await;
    let _ = socket.send(Message::Close(None)).await;
    format!("{code}: {message}")
}

async fn ws_session(
    state: Arc<AppState>,
    queue: QueueId,
    device: DevicePublicKey,
    mut socket: WebSocket,
) -> Result<(), String> {
    let limits = state.config.limits.clone();
    let Ok(challenge) = state.challenges.issue() else {
        return Err(ws_error(&mut socket, "busy", "too many outstanding challenges").await);
    };
    ws_send(&mut socket, json!({ "type": "challenge", "challenge": b64_encode(&challenge) }))
        .await?;
    let first =
        tokio::time::timeout(Duration::from_secs(limits.ws_auth_timeout_s), socket.recv()).await;
    let signature = match first {
        Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str::<ClientMessage>(&text) {
            Ok(ClientMessage::Auth { signature }) => signature,
            _ => {
                return Err(ws_error(
                    &mut socket,
                    "invalid_message",
                    "expected {\"type\":\"auth\",…}",
                )
                .await)
            }
        },
        Err(_) => {
            return Err(
                ws_error(&mut socket, "auth_timeout", "no answer to the challenge in time").await
            )
        }
        _ => return Err("closed before auth".into()),
    };
    let auth = DeviceAuth { challenge: challenge.to_vec(), signature };
    if let Err(e) = authenticate(&state, &device, ChallengePurpose::Fetch, Some(queue), &auth) {
        return Err(ws_error(&mut socket, e.code, &e.message).await);
    }
    let mut arrivals = state.arrivals.subscribe();
    let mut shutdown = state.shutdown.clone();
    let mut inflight: HashSet<EnvelopeId> = HashSet::new();
    let mut reported: Option<(u64, u64)> = None;
    let mut need_fetch = true;
    loop {
        if need_fetch && inflight.len() < limits.ws_inflight_max {
            let room = (limits.ws_inflight_max - inflight.len()).min(limits.fetch_envelopes_max);
            let batch = state
                .store
                .pending(&queue, now_ms(), &inflight, room, limits.fetch_bytes_max)
                .map_err(|e| e.to_string())?;
            let record = state.store.queue(&queue).map_err(|e| e.to_string())?;
            let counters = record.map(|r| (r.overflowed, r.expired)).unwrap_or((0, 0));
            if !batch.is_empty() || reported != Some(counters) {
                reported = Some(counters);
                inflight.extend(batch.iter().map(|e| e.envelope_id));
                let envelopes: Vec<EnvelopeOut> =
                    batch.into_iter().map(EnvelopeOut::from).collect();
                ws_send(
                    &mut socket,
                    json!({
                        "type": "envelopes",
                        "envelopes": envelopes,
                        "depth": state.store.depth(&queue).await,
                        "overflowed": counters.0,
                        "expired": counters.1,
                    }),
                )
                .await?;
            }
        }
        need_fetch = false;
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientMessage>(&text) {
                    Ok(ClientMessage::Ack { envelope_ids }) => {
                        if envelope_ids.len() > limits.ack_ids_max {
                            return Err(ws_error(&mut socket, "too_many_ids", "too many envelope ids in one ack").await);
                        }
                        let acked = state.store.ack(&queue, &envelope_ids, now_ms()).await.map_err(|e| e.to_string())?;
                        state.store.flush().await.map_err(|e| e.to_string())?;
                        for id in &envelope_ids {
                            inflight.remove(id);
                        }
                        need_fetch = true;
                        ws_send(&mut socket, json!({ "type": "acked", "acked": acked })).await?;
                    }
                    _ => return Err(ws_error(&mut socket, "invalid_message", "expected {\"type\":\"ack\",…}").await),
                },
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
            },
            arrival = arrivals.recv() => match arrival {
                Ok(q) if q != queue => {}
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => need_fetch = true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = shutdown.changed() => {
                let _ = socket.send(Message::Close(None)).await;
                return Ok(());
            }
        }
    }
}
