//! The group commit: the engine's loop gathers queued intents, stages each successful one's
//! writes, applies and flushes the group once, then answers the intents, publishes their events
//! and hands federation what it must send.

use super::{
    ChatOrgs, Command, Engine, Outbound, Reply, SearchOp, GROUP_MAX, LAZY_FLUSH, SLOW_GROUP,
};
use super::{Error, Result};
use crate::events::{Audience, Event, EventBody};
use crate::model::{keys, ChatRecord, MessageView};
use crate::store::{Tree, WriteBatch};
use confab_protocol::{ChatId, MessageId, UserId};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Default)]
pub(super) struct Dirty {
    pub(super) chats: HashMap<ChatId, ChatRecord>,
    pub(super) markers: HashMap<(UserId, ChatId), MessageId>,
    pub(super) hlc: Option<confab_protocol::HlcTime>,
}

impl Dirty {
    pub(super) fn take_batch(&mut self) -> WriteBatch {
        let mut batch = WriteBatch::default();
        for (id, record) in self.chats.drain() {
            batch.put(Tree::Chats, id.as_bytes().to_vec(), json(&record));
        }
        for ((user, chat), message) in self.markers.drain() {
            batch.put(
                Tree::ReadMarkers,
                keys::user_chat(&user, &chat),
                message.as_bytes().to_vec(),
            );
        }
        if let Some(time) = self.hlc.take() {
            batch.put(Tree::Meta, b"hlc".to_vec(), json(&time));
        }
        batch
    }
}

/// What one intent writes.
#[derive(Default)]
pub(super) struct Tx {
    pub(super) batch: WriteBatch,
    pub(super) events: Vec<Event>,
    /// Search index changes, kept only if the intent succeeds.
    pub(super) search: Vec<SearchOp>,
}

pub(super) type Done = Box<dyn FnOnce(bool) + Send>;

pub(super) fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

impl Engine {
    pub(super) async fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        let mut last_flush = std::time::Instant::now();
        while let Some(command) = receiver.recv().await {
            let mut done: Vec<Done> = Vec::new();
            let mut events = Vec::new();
            let started = std::time::Instant::now();
            let waiting = i64::try_from(receiver.len()).unwrap_or(i64::MAX);
            self.metrics.queue_depth.set(waiting);
            let mut urgent = !command.is_lazy();
            self.process(command, &mut done, &mut events);
            // Gather more intents before flushing: what is queued now; then, if something
            // waits for an answer, until `group_commit_interval_min_us` after the last flush
            // (so under load one flush serves many intents); if only lazy intents are here,
            // up to LAZY_FLUSH for company.
            let pacing = Duration::from_micros(self.limits.group_commit_interval_min_us);
            let lazy_deadline = tokio::time::Instant::now() + LAZY_FLUSH;
            while done.len() < GROUP_MAX {
                let next = match receiver.try_recv() {
                    Ok(command) => Some(command),
                    Err(_) => {
                        let until = if urgent {
                            tokio::time::Instant::from_std(last_flush + pacing)
                        } else {
                            lazy_deadline
                        };
                        if tokio::time::Instant::now() >= until {
                            break;
                        }
                        match tokio::time::timeout_at(until, receiver.recv()).await {
                            Ok(Some(command)) => Some(command),
                            Ok(None) | Err(_) => None,
                        }
                    }
                };
                let Some(command) = next else { break };
                urgent |= !command.is_lazy();
                self.process(command, &mut done, &mut events);
            }
            let processed = started.elapsed();
            let mut batch = self.staged.take();
            batch.append(self.dirty.take_batch());
            let outbound = self.outbound_of(&batch);
            self.trim_events(&mut batch);
            // A group that wrote nothing (reads such as federation's heads, refused intents)
            // has nothing to make durable.
            let nothing_written = batch.is_empty();
            let applied = if nothing_written { Ok(()) } else { self.store.apply(batch) };
            let applied_at = started.elapsed();
            let flush_result = match applied {
                Ok(()) if nothing_written => Ok(()),
                other => other.and_then(|()| self.store.flush_blocking()),
            };
            last_flush = std::time::Instant::now();
            let total = started.elapsed();
            tracing::debug!(
                intents = done.len(),
                process_us = processed.as_micros() as u64,
                apply_us = (applied_at - processed).as_micros() as u64,
                flush_us = (total - processed).as_micros() as u64,
                "group committed"
            );
            if total >= SLOW_GROUP {
                tracing::warn!(
                    intents = done.len(),
                    process_ms = processed.as_millis() as u64,
                    flush_ms = (total - processed).as_millis() as u64,
                    "slow group commit"
                );
            }
            let flushed = match flush_result {
                Ok(()) => true,
                Err(error) => {
                    tracing::error!(%error, "flush failed; failing the group");
                    self.chats.clear();
                    false
                }
            };
            self.metrics.group_intents.observe(done.len() as f64);
            if !nothing_written {
                self.metrics.flush_seconds.observe((total - processed).as_secs_f64());
            }
            if flushed {
                let created = events
                    .iter()
                    .filter(|event| matches!(event.body, EventBody::MessageCreated { .. }))
                    .count();
                self.metrics.messages_written.inc_by(created as u64);
                self.hub.publish(events);
                self.send_outbound(outbound);
                self.apply_search_ops();
            } else {
                self.search_ops.clear();
            }
            for finish in done {
                finish(flushed);
            }
        }
        if let Err(error) = self.store.flush_blocking() {
            tracing::error!(%error, "final flush failed");
        }
        tracing::info!("engine stopped");
    }

    /// What federation must hear of this group: own changes of shared chats, and the member
    /// organisations of chats whose control document changed.
    pub(super) fn outbound_of(&self, batch: &WriteBatch) -> Vec<Outbound> {
        if self.outbound.is_none() {
            return Vec::new();
        }
        let own = self.key.id();
        let mut out = Vec::new();
        let mut controls = Vec::new();
        for (key, value) in batch.puts(Tree::Changes) {
            let Some(doc) =
                key.get(..confab_protocol::DocId::LEN).and_then(confab_protocol::DocId::from_bytes)
            else {
                continue;
            };
            if doc.kind == confab_protocol::DocKind::Control && !controls.contains(&doc.chat) {
                controls.push(doc.chat);
            }
            let Some(docs) = self.chats.get(&doc.chat) else {
                continue;
            };
            let shared = docs.state.orgs.keys().any(|org| *org != own);
            // Only our own changes: gossipsub forwards others' itself.
            if shared && value.get(33..65) == Some(own.as_bytes().as_slice()) {
                out.push(Outbound::Publish { chat: doc.chat, change: value.to_vec() });
            }
        }
        for chat in controls {
            if let Some(docs) = self.chats.get(&chat) {
                out.push(Outbound::Members { chat, orgs: ChatOrgs::of(&docs.state, &own) });
            }
        }
        out
    }

    pub(super) fn send_outbound(&mut self, items: Vec<Outbound>) {
        let Some(sender) = &self.outbound else {
            return;
        };
        for item in items {
            if sender.try_send(item).is_err() {
                self.outbound_dropped += 1;
                if self.outbound_dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.outbound_dropped,
                        "federation queue full; peers will catch up"
                    );
                }
            }
        }
    }

    /// Stages the intent's writes if it succeeded (so later intents of the group read them;
    /// a failed intent writes nothing) and returns the closure that answers once the group's
    /// flush is done.
    pub(super) fn finish<T: Send + 'static>(
        &mut self,
        tx: Tx,
        result: Result<T>,
        reply: Reply<T>,
        events: &mut Vec<Event>,
    ) -> Done {
        if result.is_ok() {
            self.staged.stage(tx.batch);
            events.extend(tx.events);
            self.search_ops.extend(tx.search);
        }
        Box::new(move |flushed| {
            let answer = match result {
                Ok(_) if !flushed => Err(Error::internal("flush failed")),
                other => other,
            };
            let _ = reply.send(answer);
        })
    }

    pub(super) fn emit(&mut self, tx: &mut Tx, audience: Audience, body: EventBody) {
        let event = Event::new(self.next_cursor, audience, body);
        self.next_cursor += 1;
        tx.batch.put(Tree::Events, Event::key(event.cursor).to_vec(), json(&event));
        tx.events.push(event);
    }

    /// Stores a message's new view and tells the message's chat with `body`.
    pub(super) fn store_message_update(
        &mut self,
        tx: &mut Tx,
        view: &MessageView,
        body: EventBody,
    ) {
        let key = keys::message(&view.chat_id, &view.id);
        tx.batch.put(Tree::Messages, key, json(view));
        self.emit(tx, Audience::Chat(view.chat_id), body);
    }

    /// Tells the chat's members what the chat looks like now (name, topic, member count).
    pub(super) fn emit_chat_updated(&mut self, tx: &mut Tx, record: &crate::model::ChatRecord) {
        self.emit(
            tx,
            Audience::Chat(record.id),
            EventBody::ChatUpdated { chat: crate::model::ChatView::of(record, None) },
        );
    }

    /// Adds to the group's batch the deletion of the oldest events past the retention limit, a
    /// bounded number at a time.
    pub(super) fn trim_events(&self, batch: &mut WriteBatch) {
        let newest = self.next_cursor.saturating_sub(1);
        let Some(keep_from) = newest.checked_sub(self.limits.events_retained_max) else {
            return;
        };
        let range =
            (std::ops::Bound::Unbounded, std::ops::Bound::Excluded(Event::key(keep_from).to_vec()));
        match self.store.range(Tree::Events, range, false, 1000) {
            Ok(old) => {
                for (key, _) in old {
                    batch.delete(Tree::Events, key);
                }
            }
            Err(error) => tracing::warn!(%error, "reading the event log to trim it failed"),
        }
    }

    /// The store as this group's intents see it: with the writes staged so far.
    pub(super) fn reads(&self) -> crate::store::StagedRead<'_> {
        self.staged.over(self.store.as_ref())
    }
}
