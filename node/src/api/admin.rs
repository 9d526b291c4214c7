//! Node administration: registration settings and disabling or enabling users (federation's
//! admin API is in `federation.rs`).

use super::extract::{parse_user, JsonBody};
use super::session::CurrentUser;
use super::AppState;
use crate::engine::Command;
use crate::error::{ApiError, ApiResult};
use crate::model::{Settings, UserRecord, UserView};
use crate::views;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

pub(super) fn require_admin(user: &UserRecord) -> ApiResult<()> {
    if user.is_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "forbidden",
            "only a node admin can do this",
        ))
    }
}

pub(super) async fn get_settings(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Settings>> {
    require_admin(&user)?;
    Ok(Json(views::settings(state.store.as_ref())?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingsBody {
    registration_open: bool,
}

pub(super) async fn patch_settings(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<SettingsBody>,
) -> ApiResult<Json<Settings>> {
    require_admin(&user)?;
    let settings = state
        .engine
        .call(|reply| Command::SetRegistrationOpen {
            open: body.registration_open,
            reply,
        })
        .await?;
    Ok(Json(settings))
}

async fn set_disabled(
    state: AppState,
    admin: UserRecord,
    user_id: String,
    disabled: bool,
) -> ApiResult<Json<UserView>> {
    require_admin(&admin)?;
    let user = parse_user(&state, &user_id)?;
    if user == admin.id && disabled {
        return Err(ApiError::bad_request(
            "bad_request",
            "you cannot disable yourself",
        ));
    }
    let user = state
        .engine
        .call(|reply| Command::SetDisabled {
            user,
            disabled,
            reply,
        })
        .await?;
    Ok(Json(UserView::from(&user)))
}

pub(super) async fn disable_user(
    State(state): State<AppState>,
    CurrentUser(admin): CurrentUser,
    Path(user_id): Path<String>,
) -> ApiResult<Json<UserView>> {
    set_disabled(state, admin, user_id, true).await
}

pub(super) async fn enable_user(
    State(state): State<AppState>,
    CurrentUser(admin): CurrentUser,
    Path(user_id): Path<String>,
) -> ApiResult<Json<UserView>> {
    set_disabled(state, admin, user_id, false).await
}
