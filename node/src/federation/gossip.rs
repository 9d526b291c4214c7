//! Gossip in: decoding a micro-batch, verifying its signatures off the task, handing it to the
//! engine and reporting each message's verdict to gossipsub; presence and typing batches both
//! ways.

use super::peers::org_of_peer;
use super::{ephemeral, Federation};
use crate::engine::{self, Command, RemoteVerdict};
use confab_net::Validation;
use confab_protocol::{DocId, Preverified, Rejection, SignedChange};
use std::collections::HashSet;

impl Federation {
    /// Queues a presence change or typing notice of one of this node's users for the shared
    /// chats it concerns.
    pub(super) fn on_local_ephemeral(&mut self, event: &crate::events::Ephemeral) {
        if event.about.org_name() != self.org_name {
            return;
        }
        let chats = &self.chats;
        self.ephemeral_out
            .push(event, |chat| chats.get(chat).is_some_and(|orgs| !orgs.current.is_empty()));
    }

    pub(super) async fn publish_ephemeral(&mut self) {
        for (chat, payload) in self.ephemeral_out.take() {
            let bytes = payload.len();
            match self.net.publish(chat, payload).await {
                Ok(_) => self.stats.published(bytes),
                Err(error) => tracing::debug!(%chat, %error, "ephemeral publish failed"),
            }
        }
    }

    /// A presence or typing batch from another organisation's node.
    pub(super) async fn on_remote_ephemeral(&mut self, message: &confab_net::GossipMessage) {
        let Some(publisher) = message.source else {
            return self.report(message, Validation::Reject).await;
        };
        if !self.ephemeral_in.allow(publisher, std::time::Instant::now()) {
            return self.report(message, Validation::Ignore).await;
        }
        let name = org_of_peer(&publisher).and_then(|org| {
            engine::peers(self.store.as_ref())
                .ok()?
                .into_iter()
                .find(|(known, _)| *known == org)
                .map(|(_, record)| record.name)
        });
        let Some(name) = name else {
            // A publisher we have not peered with (relayed by a member): we cannot tell
            // whose users it speaks for.
            return self.report(message, Validation::Ignore).await;
        };
        match ephemeral::decode(message.chat, &message.data, &name, crate::model::now_ms()) {
            Ok(events) => {
                for event in events {
                    self.hub.publish_ephemeral(event);
                }
                self.report(message, Validation::Accept).await;
            }
            Err(error) => {
                tracing::info!(%publisher, %error, "ephemeral batch refused");
                self.report(message, Validation::Reject).await;
            }
        }
    }

    pub(super) async fn on_gossip(&mut self, batch: Vec<confab_net::GossipMessage>) {
        let mut changes = Vec::new();
        let mut sources = Vec::new();
        for message in batch {
            self.stats.received(message.data.len());
            if ephemeral::is_ephemeral(&message.data) {
                self.on_remote_ephemeral(&message).await;
                continue;
            }
            let decoded = SignedChange::decode(
                &message.data,
                confab_protocol::validate::Limits::default().change_bytes_max
                    + confab_protocol::signed_change::HEADER_LEN,
            );
            match decoded {
                Ok(change) if change.doc.chat == message.chat => {
                    changes.push(change);
                    sources.push(message);
                }
                _ => self.report(&message, Validation::Reject).await,
            }
        }
        if changes.is_empty() {
            return;
        }
        let mut verified = Vec::with_capacity(changes.len());
        let mut verified_sources = Vec::with_capacity(changes.len());
        let mut results = preverify(changes).await.into_iter();
        for message in sources {
            match results.next() {
                Some(Ok(change)) => {
                    verified.push(change);
                    verified_sources.push(message);
                }
                Some(Err(rejection)) => {
                    tracing::info!(peer = %message.propagation_source, %rejection, "gossiped change rejected");
                    self.report(&message, Validation::Reject).await;
                }
                // Not verified (see `preverify`): no verdict on the sender.
                None => self.report(&message, Validation::Ignore).await,
            }
        }
        let (changes, sources) = (verified, verified_sources);
        if changes.is_empty() {
            return;
        }
        let docs: Vec<DocId> = changes.iter().map(|c| c.signed().doc).collect();
        let verdicts = match self.engine.call(|reply| Command::ApplyRemote { changes, reply }).await
        {
            Ok(verdicts) => verdicts,
            Err(error) => {
                tracing::warn!(%error, "engine did not take gossip; ignoring it");
                vec![RemoteVerdict::Pending(String::new()); sources.len()]
            }
        };
        let mut repair = HashSet::new();
        for ((message, verdict), doc) in sources.iter().zip(verdicts).zip(docs) {
            let validation = match verdict {
                RemoteVerdict::Accepted => Validation::Accept,
                RemoteVerdict::Rejected(_) => Validation::Reject,
                RemoteVerdict::Duplicate => Validation::Ignore,
                RemoteVerdict::Pending(_) => {
                    repair.insert(message.propagation_source);
                    let _ = doc;
                    Validation::Ignore
                }
            };
            self.report(message, validation).await;
        }
        // Something is missing before these changes: catch up with whoever relayed them.
        for peer in repair {
            self.start_sync(peer);
        }
    }

    pub(super) async fn report(&self, message: &confab_net::GossipMessage, validation: Validation) {
        if let Err(error) =
            self.net.report_validation(message.id, message.propagation_source, validation).await
        {
            tracing::debug!(%error, "validation report failed");
        }
    }
}

/// Changes in a batch below this many are verified on one thread.
const PARALLEL_VERIFY_MIN: usize = 64;

/// Parses remote changes and verifies their signatures (the stateless start of the validation
/// pipeline, [`Preverified::verify`]) on tokio's blocking threads, a batch split across the
/// machine's cores: signature checks were about half of the engine's time in a catch-up.
pub(super) async fn preverify(changes: Vec<SignedChange>) -> Vec<Result<Preverified, Rejection>> {
    let limits = confab_protocol::validate::Limits::default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parts = if changes.len() < PARALLEL_VERIFY_MIN {
        1
    } else {
        threads.min(changes.len() / (PARALLEL_VERIFY_MIN / 2)).max(1)
    };
    let per_part = changes.len().div_ceil(parts).max(1);
    let mut tasks = Vec::with_capacity(parts);
    let mut rest = changes.into_iter();
    loop {
        let part: Vec<SignedChange> = rest.by_ref().take(per_part).collect();
        if part.is_empty() {
            break;
        }
        let limits = limits.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            part.into_iter().map(|signed| Preverified::verify(signed, &limits)).collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        match task.await {
            Ok(results) => out.extend(results),
            // A panicking verifier (a bug) must not take the node down; the caller sees the
            // batch as shorter and treats the rest as not verified.
            Err(error) => {
                tracing::error!(%error, "signature verification task failed");
                break;
            }
        }
    }
    out
}
