//! Node administration: registration settings and disabling or enabling users (federation's
//! admin API is in `federation.rs`).

use super::caller::{user_view, Caller};
use super::extract::{parse_user, JsonBody};
use crate::engine::Command;
use crate::error::{ApiError, ApiResult};
use crate::model::{Settings, UserRecord, UserView};
use crate::views;
use axum::extract::Path;
use axum::Json;
use serde::Deserialize;

pub(super) fn require_admin(user: &UserRecord) -> ApiResult<()> {
    if user.is_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("forbidden", "only a node admin can do this"))
    }
}

pub(super) async fn get_settings(caller: Caller) -> ApiResult<Json<Settings>> {
    require_admin(&caller.user)?;
    Ok(Json(views::settings(caller.state.store.as_ref())?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingsBody {
    registration_open: bool,
}

pub(super) async fn patch_settings(
    caller: Caller,
    JsonBody(body): JsonBody<SettingsBody>,
) -> ApiResult<Json<Settings>> {
    require_admin(&caller.user)?;
    let open = body.registration_open;
    caller.ask(Json, |_, reply| Command::SetRegistrationOpen { open, reply }).await
}

async fn set_disabled(admin: Caller, user_id: String, disabled: bool) -> ApiResult<Json<UserView>> {
    require_admin(&admin.user)?;
    let user = parse_user(&admin.state, &user_id)?;
    if user == admin.user.id && disabled {
        return Err(ApiError::bad_request("bad_request", "you cannot disable yourself"));
    }
    admin.ask(user_view, |_, reply| Command::SetDisabled { user, disabled, reply }).await
}

pub(super) async fn disable_user(
    admin: Caller,
    Path(user_id): Path<String>,
) -> ApiResult<Json<UserView>> {
    set_disabled(admin, user_id, true).await
}

pub(super) async fn enable_user(
    admin: Caller,
    Path(user_id): Path<String>,
) -> ApiResult<Json<UserView>> {
    set_disabled(admin, user_id, false).await
}
