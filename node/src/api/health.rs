//! Health endpoints for load balancers and orchestrators, outside `/api/v1` and without a
//! session: `GET /healthz` (the process serves HTTP) and `GET /readyz` (it can serve users:
//! not shutting down, the store reads, the engine answers in time).

use super::AppState;
use crate::engine::Command;
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;

/// How long `/readyz` waits for the engine to answer before it says "not ready".
const ENGINE_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: `200 {"status":"ok"}` whenever the HTTP server answers.
pub(super) async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: `200 {"status":"ready"}`, or `503` with code `not_ready` and the reason.
pub(super) async fn ready(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    if *state.shutdown.borrow() {
        return Err(not_ready("the node is shutting down"));
    }
    crate::views::settings(state.store.as_ref())
        .map_err(|error| not_ready(format!("the store cannot be read: {error}")))?;
    let answer = state.engine.call(|reply| Command::Ping { reply });
    match tokio::time::timeout(ENGINE_ANSWER_TIMEOUT, answer).await {
        Ok(Ok(())) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(_)) => Err(not_ready("the engine has stopped")),
        Err(_) => {
            let waited_s = ENGINE_ANSWER_TIMEOUT.as_secs();
            Err(not_ready(format!("the engine did not answer within {waited_s} s")))
        }
    }
}

fn not_ready(reason: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", reason)
}
