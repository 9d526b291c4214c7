//! `GET /metrics`: the node's figures as OpenMetrics text ([`crate::metrics`]) for a Prometheus
//! scraper, behind the bearer token `metrics_token` of the config file (404 when it is unset);
//! and the middleware that counts every request by route and status.

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::metrics::{FederationFigures, PushFigures, RequestLabels};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Counts the request under the route the router matched (`unmatched` for none) and the
/// status of its answer.
pub(super) async fn count_request(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let response = next.run(request).await;
    let labels = RequestLabels { route, status: response.status().as_u16() };
    state.http_metrics.requests.get_or_create(&labels).inc();
    response
}

pub(super) async fn scrape(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some(expected) = &state.config.metrics_token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics_off",
            "metrics are off: set metrics_token in the node's configuration",
        ));
    };
    if !bearer_matches(&headers, expected) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "GET /metrics needs Authorization: Bearer <metrics_token>",
        ));
    }
    let federation = match &state.federation {
        Some(fed) => Some((fed, super::federation::peer_views(&state, fed).await?)),
        None => None,
    };
    let federation = federation.as_ref().map(|(fed, peers)| FederationFigures {
        stats: &fed.stats,
        peers: peers.len(),
        peers_connected: peers.iter().filter(|peer| peer.connected).count(),
        rejected_messages: peers.iter().map(|peer| u64::from(peer.rejected_messages)).sum(),
    });
    let sessions = state.websocket_sessions.total();
    let push = state
        .pusher
        .as_ref()
        .map(|pusher| PushFigures { counters: &pusher.counters, queued: pusher.queued() });
    let text = crate::metrics::render(
        &state.http_metrics,
        sessions,
        state.engine.metrics(),
        federation,
        push,
    )
    .map_err(ApiError::internal)?;
    let content_type = HeaderValue::from_static(crate::metrics::CONTENT_TYPE);
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

/// Whether the request carries `Authorization: Bearer <expected>`. The digests are compared,
/// so the time taken says nothing about how much of the token was right.
fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    Sha256::digest(given.trim().as_bytes()) == Sha256::digest(expected.as_bytes())
}
