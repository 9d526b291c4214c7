//! Federation administration (node admins only): this node's identity and invite tokens, and
//! the peered organisations (add by address or invite token, list with their state, remove,
//! lift a blacklisting). Answers 404 `federation_off` when the node does not federate.

use super::admin::require_admin;
use super::{AppState, CurrentUser, JsonBody};
use crate::error::{ApiError, ApiResult};
use crate::federation::{self, FederationHandle, FederationStats, PeerView};
use crate::model::{now_ms, UserRecord};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use confab_protocol::OrgId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

fn handle(state: &AppState) -> ApiResult<&FederationHandle> {
    state.federation.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "federation_off",
            "this node does not federate: set [federation] listen in its configuration",
        )
    })
}

#[derive(Serialize)]
pub struct FederationInfo {
    org_id: OrgId,
    org_name: String,
    peer_id: String,
    listen_addrs: Vec<String>,
    /// The federation task's traffic counters since the node started.
    #[serde(serialize_with = "FederationStats::serialize")]
    stats: Arc<FederationStats>,
}

pub async fn info(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<FederationInfo>> {
    require_admin(&user)?;
    let fed = handle(&state)?;
    let addrs = fed.net.listen_addrs().await.map_err(ApiError::internal)?;
    Ok(Json(FederationInfo {
        org_id: fed.own,
        org_name: state.config.org_name.clone(),
        peer_id: fed.net.local_peer_id().to_string(),
        listen_addrs: addrs.iter().map(|a| a.to_string()).collect(),
        stats: fed.stats.clone(),
    }))
}

#[derive(Serialize)]
pub struct Invite {
    token: String,
    expires_s: u64,
}

pub async fn invite(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<(StatusCode, Json<Invite>)> {
    require_admin(&user)?;
    let (token, expires_s) = handle(&state)?.invite(now_ms() / 1000).await?;
    Ok((StatusCode::CREATED, Json(Invite { token, expires_s })))
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<PeerView>>> {
    require_admin(&user)?;
    Ok(Json(peer_views(&state, handle(&state)?).await?))
}

/// The peered organisations as stored, with the federation task's view of each.
pub(super) async fn peer_views(
    state: &AppState,
    fed: &FederationHandle,
) -> ApiResult<Vec<PeerView>> {
    let records = crate::engine::peers(state.store.as_ref())?;
    Ok(fed.peers(records).await?)
}

/// A new peer: its organisation name (its users are `someone@name`) and either an address
/// ending in `/p2p/<peer id>` or an invite token its admin made.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPeer {
    name: String,
    address: Option<String>,
    invite: Option<String>,
}

pub async fn add(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<NewPeer>,
) -> ApiResult<(StatusCode, Json<PeerView>)> {
    require_admin(&user)?;
    let fed = handle(&state)?;
    let (org, record) =
        federation::new_peer(body.name, body.address.as_deref(), body.invite.as_deref(), now_ms())?;
    let known = crate::engine::peers(state.store.as_ref())?;
    federation::add_peer(fed, &state.engine, &known, org, record).await?;
    let view = peer_views(&state, fed)
        .await?
        .into_iter()
        .find(|peer| peer.org_id == org)
        .ok_or_else(|| ApiError::internal("peer vanished after adding it"))?;
    Ok((StatusCode::CREATED, Json(view)))
}

fn parse_org(text: &str) -> ApiResult<OrgId> {
    text.parse().map_err(|_| ApiError::bad_request("invalid_path", "not an organisation id"))
}

/// The checks of a request on one peer, in order: the caller is a node admin, the path names
/// an organisation, and the node federates.
fn admin_on_peer<'a>(
    state: &'a AppState,
    user: &UserRecord,
    org: &str,
) -> ApiResult<(&'a FederationHandle, OrgId)> {
    require_admin(user)?;
    let org = parse_org(org)?;
    Ok((handle(state)?, org))
}

pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(org): Path<String>,
) -> ApiResult<StatusCode> {
    let (fed, org) = admin_on_peer(&state, &user, &org)?;
    let known = crate::engine::peers(state.store.as_ref())?;
    if !known.iter().any(|(peer, _)| *peer == org) {
        return Err(ApiError::not_found("peer"));
    }
    federation::remove_peer(fed, &state.engine, org).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn unblock(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(org): Path<String>,
) -> ApiResult<StatusCode> {
    let (fed, org) = admin_on_peer(&state, &user, &org)?;
    let peer = confab_net::peer_id_of(org.as_bytes())
        .map_err(|_| ApiError::bad_request("invalid_path", "not an organisation key"))?;
    fed.net
        .unblock_peer(peer)
        .await
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}
