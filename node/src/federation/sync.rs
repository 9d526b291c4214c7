//! Catch-up: answering peers' page requests for the documents they may fetch, and one sync run
//! per peer ([`Sync`]) that fetches, verifies and applies what the peer has and we lack.

use super::gossip::preverify;
use super::peers::org_of_peer;
use super::{Federation, FederationStats};
use crate::engine::Error;
use crate::engine::{self, Command, EngineHandle, RemoteVerdict};
use confab_net::{CatchupRequest, CatchupResponse, NetworkHandle, PeerId};
use confab_protocol::{ChatId, DocId, Preverified, SignedChange};
use std::sync::Arc;

impl Federation {
    /// Whether `peer` may fetch `doc`, and up to which epoch. Members get every document;
    /// former members only the control document (to learn that they were removed), and a
    /// removed organisation only up to the change that removed it.
    pub(super) fn may_fetch(&self, peer: &PeerId, doc: &DocId) -> (bool, Option<u64>) {
        let (Some(org), Some(orgs)) = (org_of_peer(peer), self.chats.get(&doc.chat)) else {
            return (false, None);
        };
        if orgs.current.contains(&org) {
            return (true, None);
        }
        let former = doc.kind == confab_protocol::DocKind::Control && orgs.former.contains(&org);
        (former, orgs.removed_at(&org))
    }

    pub(super) fn on_catchup_request(
        &self,
        peer: PeerId,
        request: CatchupRequest,
        responder: confab_net::CatchupResponder,
    ) {
        let (member, until_epoch) = self.may_fetch(&peer, &request.doc);
        let store = self.store.clone();
        let serving = self.serving.clone();
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let response = if member {
                let answer = tokio::task::spawn_blocking(move || {
                    serving.page(
                        store.as_ref(),
                        request.doc,
                        &request.heads,
                        &request.cursor,
                        &confab_net::CatchupLimits::default(),
                        until_epoch,
                    )
                })
                .await;
                match answer {
                    Ok(Ok(response)) => response,
                    Ok(Err(error)) => {
                        tracing::error!(%error, "catch-up answer failed");
                        CatchupResponse::Refused(confab_net::CatchupRefusal::Busy)
                    }
                    Err(_) => CatchupResponse::Refused(confab_net::CatchupRefusal::Busy),
                }
            } else {
                CatchupResponse::Refused(confab_net::CatchupRefusal::NotMember)
            };
            if let CatchupResponse::Page(page) = &response {
                stats.page_served(page);
            }
            if let Err(error) = responder.respond(response).await {
                tracing::debug!(%peer, %error, "catch-up answer failed");
            }
        });
    }

    /// Asks `peer` to sync with us (an index request is a poke).
    pub(super) fn poke(&self, peer: PeerId) {
        let net = self.net.clone();
        tokio::spawn(async move {
            if let Err(error) = net.poke(peer).await {
                tracing::debug!(%peer, %error, "poke failed");
            }
        });
        self.start_sync(peer);
    }

    /// Starts a sync with `peer` unless one runs; then it runs once more when it ends.
    pub(super) fn start_sync(&self, peer: PeerId) {
        {
            let mut syncing = self.syncing.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(again) = syncing.get_mut(&peer) {
                *again = true;
                return;
            }
            syncing.insert(peer, false);
        }
        let sync = Sync {
            net: self.net.clone(),
            engine: self.engine.clone(),
            stats: self.stats.clone(),
            pages_max: self.config.sync_pages_max,
            known: self
                .chats
                .iter()
                .filter(|(_, orgs)| {
                    org_of_peer(&peer).is_some_and(|org| orgs.current.contains(&org))
                })
                .map(|(chat, _)| *chat)
                .collect(),
        };
        let syncing = self.syncing.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = sync.with_peer(peer).await {
                    tracing::debug!(%peer, %error, "sync stopped");
                }
                let mut running = syncing.lock().unwrap_or_else(|e| e.into_inner());
                match running.get_mut(&peer) {
                    Some(again) if *again => *again = false,
                    _ => {
                        running.remove(&peer);
                        return;
                    }
                }
            }
        });
    }
}

/// One catch-up run with one peer.
struct Sync {
    net: NetworkHandle,
    engine: EngineHandle,
    stats: Arc<FederationStats>,
    pages_max: usize,
    /// Chats we know we share with the peer.
    known: Vec<ChatId>,
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("network: {0}")]
    Net(#[from] confab_net::NetError),
    #[error("engine: {0}")]
    Engine(#[from] Error),
}

impl Sync {
    async fn with_peer(&self, peer: PeerId) -> Result<(), SyncError> {
        let mut chats = self.net.index(peer).await?;
        for chat in &self.known {
            if !chats.contains(chat) {
                chats.push(*chat);
            }
        }
        // Every chat's control document and current bucket first (what makes it readable),
        // then the older buckets of all of them, newest first: a long history never delays
        // another chat's latest messages.
        let mut applied = 0usize;
        let mut older = Vec::with_capacity(chats.len());
        for chat in chats {
            let (latest, current_bucket) = self.latest(peer, chat).await?;
            applied += latest;
            older.push((chat, current_bucket));
        }
        for (chat, current_bucket) in older {
            for number in (1..current_bucket).rev() {
                applied += self.doc(peer, DocId::bucket(chat, number)).await?;
            }
        }
        if applied > 0 {
            tracing::info!(%peer, applied, "caught up");
        }
        let _ = self.net.set_peer_lag(peer, Some(0)).await;
        Ok(())
    }

    /// The control document, then the current bucket; returns the changes applied and the
    /// current bucket's number (0 when the chat is unknown).
    async fn latest(&self, peer: PeerId, chat: ChatId) -> Result<(usize, u32), SyncError> {
        let mut applied = self.doc(peer, DocId::control(chat)).await?;
        let Some(info) = self.heads(DocId::control(chat)).await? else {
            return Ok((applied, 0));
        };
        if info.current_bucket > 0 {
            applied += self.doc(peer, DocId::bucket(chat, info.current_bucket)).await?;
        }
        Ok((applied, info.current_bucket))
    }

    async fn heads(&self, doc: DocId) -> Result<Option<engine::DocHeads>, SyncError> {
        Ok(self.engine.call(|reply| Command::DocHeads { doc, reply }).await?)
    }

    /// Fetches and applies the changes of one document the peer has and we lack. Pages are
    /// pipelined: while the engine applies one, the next is fetched and its signatures are
    /// verified (the cursor alone says where the next page starts, so the heads of the first
    /// request serve for all of them).
    async fn doc(&self, peer: PeerId, doc: DocId) -> Result<usize, SyncError> {
        let limits = confab_net::CatchupLimits::default();
        let heads: Vec<[u8; 32]> = self
            .heads(doc)
            .await?
            .map(|h| h.heads)
            .unwrap_or_default()
            .into_iter()
            .take(limits.max_heads)
            .collect();
        let request = |cursor: Vec<u8>| CatchupRequest { doc, heads: heads.clone(), cursor };
        let mut next = self.fetch(peer, request(Vec::new())).await?;
        let mut applied = 0;
        for _ in 0..self.pages_max {
            let Some(page) = next.take() else {
                break;
            };
            let following = async {
                match page.more {
                    true => self.fetch(peer, request(page.cursor.clone())).await,
                    false => Ok(None),
                }
            };
            let (applied_now, following) =
                tokio::join!(self.apply(peer, doc, page.changes), following);
            applied += applied_now?;
            next = following?;
        }
        Ok(applied)
    }

    /// One page of `doc` from `peer`, decoded and its signatures verified; `None` when the
    /// peer refused.
    async fn fetch(
        &self,
        peer: PeerId,
        request: CatchupRequest,
    ) -> Result<Option<FetchedPage>, SyncError> {
        let doc = request.doc;
        let page = match self.net.catchup(peer, request).await? {
            CatchupResponse::Page(page) => page,
            CatchupResponse::Refused(_) | CatchupResponse::Index(_) => return Ok(None),
        };
        self.stats.page_received(&page);
        let limits = confab_net::CatchupLimits::default();
        let mut invalid = page.changes.len();
        let decoded: Vec<SignedChange> = page
            .changes
            .iter()
            .filter_map(|bytes| SignedChange::decode(bytes, limits.max_change_bytes).ok())
            .collect();
        let changes: Vec<Preverified> =
            preverify(decoded).await.into_iter().filter_map(Result::ok).collect();
        invalid -= changes.len();
        if invalid > 0 {
            tracing::warn!(%peer, %doc, invalid, "catch-up page held changes that do not decode or verify");
            self.report_invalid(peer, invalid).await;
        }
        Ok(Some(FetchedPage { changes, more: page.more, cursor: page.cursor }))
    }

    /// Counts invalid changes the peer served against it (it is blacklisted when they add up):
    /// an honest peer serves only changes it accepted, which are valid for every member.
    async fn report_invalid(&self, peer: PeerId, invalid: usize) {
        let count = u32::try_from(invalid).unwrap_or(u32::MAX);
        if let Err(error) = self.net.report_invalid(peer, count).await {
            tracing::debug!(%peer, %error, "could not report invalid changes");
        }
    }

    /// Hands verified changes to the engine; returns how many it accepted.
    async fn apply(
        &self,
        peer: PeerId,
        doc: DocId,
        changes: Vec<Preverified>,
    ) -> Result<usize, SyncError> {
        if changes.is_empty() {
            return Ok(0);
        }
        let verdicts = self.engine.call(|reply| Command::ApplyRemote { changes, reply }).await?;
        let rejected = verdicts.iter().filter(|v| matches!(v, RemoteVerdict::Rejected(_))).count();
        if rejected > 0 {
            tracing::warn!(%peer, %doc, rejected, "catch-up page held invalid changes");
            self.report_invalid(peer, rejected).await;
        }
        Ok(verdicts.iter().filter(|v| **v == RemoteVerdict::Accepted).count())
    }
}

/// A catch-up page whose changes decoded and verified.
struct FetchedPage {
    changes: Vec<Preverified>,
    more: bool,
    cursor: Vec<u8>,
}
