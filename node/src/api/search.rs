//! `GET /api/v1/search`: full-text search over the messages of the chats the user is a member
//! of (never others: the chat filter is the user's memberships, read at query time, so leaving
//! a channel ends its hits at once).

use super::{AppState, CurrentUser};
use crate::error::{ApiError, ApiResult};
use crate::model::MessageView;
use crate::search::{SearchOrder, SearchQuery, SnippetPart, MAX_LIMIT};
use crate::views;
use axum::extract::{Query, State};
use axum::Json;
use confab_protocol::{ChatId, UserId};
use serde::{Deserialize, Serialize};

/// Hits per page when the client does not say.
const DEFAULT_LIMIT: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Words to find, all of them; empty: every message passing the filters.
    #[serde(default)]
    pub q: String,
    pub chat_id: Option<String>,
    pub author: Option<String>,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub has_attachment: Option<bool>,
    #[serde(default)]
    pub order: SearchOrder,
    #[serde(default)]
    pub offset: usize,
    pub limit: Option<usize>,
}

#[derive(Serialize)]
pub struct SearchHitView {
    pub chat_id: ChatId,
    pub message: MessageView,
    pub score: f32,
    pub snippet: Vec<SnippetPart>,
}

#[derive(Serialize)]
pub struct SearchResults {
    pub total: usize,
    pub hits: Vec<SearchHitView>,
}

pub async fn search(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(params): Query<SearchParams>,
) -> ApiResult<Json<SearchResults>> {
    let Some(index) = state.search.clone() else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "search_unavailable",
            "search is not enabled on this node",
        ));
    };
    let store = state.store.clone();
    let member_of = views::user_chats(store.as_ref(), &user.id)?;
    let chats = match &params.chat_id {
        Some(text) => {
            let chat: ChatId = text
                .parse()
                .map_err(|_| ApiError::bad_request("invalid_id", "chat_id is not a chat id"))?;
            // A chat the user is not in searches nothing (and says nothing about that chat).
            member_of.into_iter().filter(|c| *c == chat).collect()
        }
        None => member_of,
    };
    let author = params
        .author
        .as_deref()
        .map(|text| {
            text.parse::<UserId>()
                .map_err(|_| ApiError::bad_request("invalid_id", "author is not a user id"))
        })
        .transpose()?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit is at most {MAX_LIMIT}"),
        ));
    }
    let query = SearchQuery {
        text: params.q,
        chats,
        author,
        from_ms: params.from_ms,
        to_ms: params.to_ms,
        has_attachment: params.has_attachment,
        order: params.order,
        offset: params.offset,
        limit,
    };
    let page = tokio::task::spawn_blocking(move || index.search(&query))
        .await
        .map_err(ApiError::internal)?
        .map_err(|error| {
            if error.is_bad_query() {
                ApiError::bad_request("invalid_query", error.to_string())
            } else {
                ApiError::internal(error)
            }
        })?;
    let mut hits = Vec::with_capacity(page.hits.len());
    for hit in page.hits {
        // The view is the truth: a message deleted since the index commit is skipped.
        let Some(message) = views::message(store.as_ref(), &hit.chat, &hit.message)? else {
            continue;
        };
        if message.deleted {
            continue;
        }
        hits.push(SearchHitView {
            chat_id: hit.chat,
            message,
            score: hit.score,
            snippet: hit.snippet,
        });
    }
    Ok(Json(SearchResults { total: page.total, hits }))
}
