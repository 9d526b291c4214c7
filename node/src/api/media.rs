//! Media endpoints: `POST /media` streams an upload into the blob store, `GET /media/{id}`
//! serves a blob to those allowed to see it, and [`resolve_attachments`] turns the ids a client
//! names in a message into attachments built from the store's own knowledge.
//!
//! Who may fetch a blob (a file or one of its thumbnails): the user who uploaded it, and every
//! user who can read a chat where a message carrying it was posted (its members; for a public
//! channel, every user of the node, as they can read its history). Everyone else gets 403.

use super::{AppState, CurrentUser};
use crate::engine::Command;
use crate::error::{ApiError, ApiResult};
use crate::media::{self, is_blob_id, Attachment, MediaError};
use crate::model::{keys, MessageView, UserRecord};
use crate::store::{prefix_range, Tree};
use crate::views;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use confab_protocol::control::Visibility;
use confab_protocol::{ChatId, MessageId};
use serde::Deserialize;

/// Messages examined when deciding whether a user may see a blob posted in many places.
const REFS_SCANNED_MAX: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The file name the client shows; sanitised, never trusted for the type.
    pub name: Option<String>,
}

/// `POST /api/v1/media?name=…` with the file's bytes as the body.
pub async fn upload(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<UploadQuery>,
    body: Body,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let attachment =
        media::upload(&state.blobs, body, query.name, state.config.limits.upload_bytes_max).await?;
    let blobs = attachment.blob_ids().map(str::to_string).collect();
    state
        .engine
        .call(|reply| Command::RecordUpload { user: user.id.clone(), blobs, reply })
        .await?;
    tracing::info!(
        user = %user.id,
        blob = %attachment.id,
        mime = %attachment.mime,
        size_bytes = attachment.size_bytes,
        "upload stored"
    );
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "attachment": attachment }))))
}

/// `GET /api/v1/media/{id}`: the bytes, with ranges and caching (see [`media::download`]).
pub async fn download(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if !is_blob_id(&id) {
        return Err(ApiError::not_found("media"));
    }
    let access = access(&state, &user, &id)?;
    let mut meta = blob_meta(&state, &id).await?;
    // A file of another organisation's message: fetched from a member node the first time.
    if let (Err(MediaError::NotFound), Access::Posted(_, chat), Some(federation)) =
        (&meta, &access, &state.federation)
    {
        let fetched = crate::federation::media::fetch(
            &federation.net,
            &state.engine,
            &state.blobs,
            *chat,
            &id,
        )
        .await?;
        if fetched {
            meta = blob_meta(&state, &id).await?;
        }
    }
    let meta = match meta {
        Ok(meta) => meta,
        Err(MediaError::NotFound) => return Err(ApiError::not_found("media")),
        Err(error) => return Err(error.into()),
    };
    let name = match access {
        Access::None => {
            return Err(ApiError::forbidden(
                "forbidden",
                "this file was not shared in any chat you can read",
            ))
        }
        Access::Uploader => None,
        Access::Posted(name, _) => name,
    };
    media::download(&state.blobs, &id, &headers, name.as_deref(), &meta.mime).await
}

async fn blob_meta(
    state: &AppState,
    id: &str,
) -> ApiResult<Result<crate::media::BlobMeta, MediaError>> {
    let blobs = state.blobs.clone();
    let blob = id.to_string();
    tokio::task::spawn_blocking(move || blobs.meta(&blob)).await.map_err(ApiError::internal)
}

enum Access {
    None,
    Uploader,
    /// With the name it was posted under, when it is an attachment (not a thumbnail), and a
    /// chat the user can read where it was posted.
    Posted(Option<String>, ChatId),
}

fn access(state: &AppState, user: &UserRecord, blob: &str) -> ApiResult<Access> {
    let store = state.store.as_ref();
    let uploader = store.get(Tree::Uploads, &keys::upload(&user.id, blob))?.is_some();
    for (key, _) in
        store.range(Tree::MediaRefs, prefix_range(blob.as_bytes()), false, REFS_SCANNED_MAX)?
    {
        let rest = key.get(blob.len()..).unwrap_or_default();
        let (Some(chat), Some(message)) = (
            rest.get(..ChatId::LEN).and_then(ChatId::from_slice),
            rest.get(ChatId::LEN..).and_then(MessageId::from_slice),
        ) else {
            continue;
        };
        if can_read(state, user, &chat)? {
            let name = views::message(store, &chat, &message)?
                .and_then(|view| attachment_name(&view, blob));
            return Ok(Access::Posted(name, chat));
        }
    }
    // An upload the user may still post (also when the same bytes were posted elsewhere).
    Ok(if uploader { Access::Uploader } else { Access::None })
}

fn can_read(state: &AppState, user: &UserRecord, chat: &ChatId) -> ApiResult<bool> {
    let store = state.store.as_ref();
    if views::role(store, chat, &user.id)?.is_some() {
        return Ok(true);
    }
    Ok(views::chat(store, chat)?.is_some_and(|record| record.visibility == Visibility::Public))
}

fn attachment_name(view: &MessageView, blob: &str) -> Option<String> {
    view.attachments
        .iter()
        .find(|attachment| attachment.id == blob)
        .map(|attachment| attachment.name.clone())
}

/// An attachment as a client names it in a message.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRef {
    pub id: String,
    pub name: Option<String>,
}

/// The attachments for a message: each id must be a blob the user may attach (their own upload,
/// or a file already posted in a chat they can read); type, size, dimensions and thumbnails
/// come from the blob store.
pub async fn resolve_attachments(
    state: &AppState,
    user: &UserRecord,
    requested: Vec<AttachmentRef>,
) -> ApiResult<Vec<Attachment>> {
    if requested.len() > confab_protocol::bucket::ATTACHMENTS_PER_MESSAGE_MAX {
        return Err(ApiError::bad_request(
            "too_many_attachments",
            format!(
                "a message carries at most {} files",
                confab_protocol::bucket::ATTACHMENTS_PER_MESSAGE_MAX
            ),
        ));
    }
    let mut attachments = Vec::with_capacity(requested.len());
    for item in requested {
        if !is_blob_id(&item.id) {
            return Err(ApiError::bad_request(
                "invalid_attachment",
                "an attachment id is the 64 hex digits an upload answered",
            ));
        }
        if matches!(access(state, user, &item.id)?, Access::None) {
            return Err(ApiError::forbidden(
                "forbidden",
                "you can only attach files you uploaded or can already see",
            ));
        }
        let blobs = state.blobs.clone();
        let attachment =
            tokio::task::spawn_blocking(move || blobs.attachment(&item.id, item.name.as_deref()))
                .await
                .map_err(ApiError::internal)?;
        match attachment {
            Ok(attachment) => attachments.push(attachment),
            Err(MediaError::NotFound) => {
                return Err(ApiError::bad_request(
                    "invalid_attachment",
                    "the attached file is gone; upload it again",
                ))
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(attachments)
}
