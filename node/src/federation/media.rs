//! Files of shared chats across organisations (`/confab/media/1`, `spec/federation.md` §4b).
//!
//! A message from another organisation carries its files as SHA-256 blob ids; the bytes stay
//! on the nodes that have them. The first time a user downloads such a file here, this node
//! fetches it from a member node of the chat (the network checks the hash), stores it in the
//! blob store and serves it from then on, also when the other nodes are down. Serving: a member
//! peer gets a blob only if a message of that very chat carries it here.

use crate::engine::{Command, EngineHandle};
use crate::engine::{Error, Result};
use crate::media::BlobStore;
use crate::store::{prefix_range, KvStore, Tree};
use confab_net::{MediaRefusal, MediaResponder, MediaResponse, NetworkHandle};
use confab_protocol::{ChatId, DocId};
use std::sync::Arc;

fn blob_hex(blob: &[u8; 32]) -> String {
    data_encoding::HEXLOWER.encode(blob)
}

/// Answers a member peer's request for a blob of `chat`.
pub async fn serve(
    store: Arc<dyn KvStore>,
    blobs: BlobStore,
    chat: ChatId,
    blob: [u8; 32],
    max_bytes: usize,
    responder: MediaResponder,
) {
    let hex = blob_hex(&blob);
    let response = match read_if_posted(store, &blobs, chat, &hex, max_bytes).await {
        Ok(Some(bytes)) => MediaResponse::Found(bytes),
        Ok(None) => MediaResponse::Refused(MediaRefusal::NotFound),
        Err(error) => {
            tracing::warn!(%chat, blob = %hex, %error, "media answer failed");
            MediaResponse::Refused(MediaRefusal::Busy)
        }
    };
    if let Err(error) = responder.respond(response).await {
        tracing::debug!(%chat, blob = %hex, %error, "media answer not sent");
    }
}

/// The blob's bytes if a message of `chat` carries it here and it fits the limit.
async fn read_if_posted(
    store: Arc<dyn KvStore>,
    blobs: &BlobStore,
    chat: ChatId,
    hex: &str,
    max_bytes: usize,
) -> Result<Option<Vec<u8>>, String> {
    let mut prefix = hex.as_bytes().to_vec();
    prefix.extend_from_slice(chat.as_bytes());
    let posted = !store
        .range(Tree::MediaRefs, prefix_range(&prefix), false, 1)
        .map_err(|e| e.to_string())?
        .is_empty();
    if !posted {
        return Ok(None);
    }
    let Ok(path) = blobs.blob_path(hex) else {
        return Ok(None);
    };
    match tokio::fs::metadata(&path).await {
        Ok(meta) if meta.len() as usize <= max_bytes => {}
        _ => return Ok(None),
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error.to_string()),
    }
}

/// Fetches a blob posted in `chat` from one of the chat's member nodes and stores it. `false`
/// when no member node had it (or none is reachable).
pub async fn fetch(
    net: &NetworkHandle,
    engine: &EngineHandle,
    blobs: &BlobStore,
    chat: ChatId,
    hex: &str,
) -> Result<bool> {
    let mut blob = [0u8; 32];
    match data_encoding::HEXLOWER.decode(hex.as_bytes()) {
        Ok(bytes) if bytes.len() == 32 => blob.copy_from_slice(&bytes),
        _ => return Ok(false),
    }
    let Some(heads) =
        engine.call(|reply| Command::DocHeads { doc: DocId::control(chat), reply }).await?
    else {
        return Ok(false);
    };
    for org in heads.orgs.current {
        let Ok(peer) = confab_net::peer_id_of(org.as_bytes()) else {
            continue;
        };
        match net.fetch_media(peer, chat, blob).await {
            Ok(bytes) => {
                let blobs = blobs.clone();
                let stored = tokio::task::spawn_blocking(move || blobs.put_bytes(&bytes))
                    .await
                    .map_err(Error::internal)?
                    .map_err(Error::internal)?;
                if stored.hash != hex {
                    return Err(Error::internal("a fetched blob was stored under another hash"));
                }
                tracing::info!(%chat, blob = %hex, %peer, "media fetched from a member node");
                return Ok(true);
            }
            Err(error) => tracing::info!(%chat, blob = %hex, %peer, %error, "media fetch failed"),
        }
    }
    Ok(false)
}
