//! Live propagation: gossipsub configuration, channel topics, message ids and peer scoring.
//!
//! One topic per chat, named `confab/v1/chat/<chat id>` (the chat id in its lowercase base32hex
//! text form); the topic hash is that string (identity hashing). A message id is the SHA-256 of
//! the payload (the encoded `SignedChange`), so the same change published twice or by two
//! nodes is one message. Messages are signed by the publishing node's key and checked in
//! `ValidationMode::Strict`; every message waits for the node's verdict (`validate_messages`)
//! before it is forwarded. Peer scoring is on; every channel topic is registered with
//! [`topic_score_params`], in which an invalid message (the node reported `Reject`) weighs
//! heavily, so a peer that keeps sending them falls below the graylist threshold and is ignored.

use std::time::Duration;

use confab_protocol::ChatId;
use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds,
    TopicHash, TopicScoreParams, ValidationMode,
};
use libp2p::identity::Keypair;
use sha2::{Digest, Sha256};

use crate::config::GossipConfig;

/// Prefix of every channel topic.
pub const TOPIC_PREFIX: &str = "confab/v1/chat/";

/// The inner gossipsub behaviour: every topic is allowed by the filter, but at most
/// `max_subscriptions_per_peer` per peer; per-peer membership is enforced by
/// [`crate::members::MemberGossip`], which the subscription filter cannot do.
pub type Gossipsub = gossipsub::Behaviour<
    gossipsub::IdentityTransform,
    gossipsub::MaxCountSubscriptionFilter<gossipsub::AllowAllSubscriptionFilter>,
>;

/// The topic of a chat.
pub fn topic_of(chat: &ChatId) -> IdentTopic {
    IdentTopic::new(format!("{TOPIC_PREFIX}{chat}"))
}

/// The chat of a topic hash, if it is a well-formed channel topic.
pub fn chat_of(topic: &TopicHash) -> Option<ChatId> {
    topic.as_str().strip_prefix(TOPIC_PREFIX)?.parse().ok()
}

/// The gossip message id of a payload: its SHA-256.
pub fn message_id_of(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Score parameters registered for every channel topic.
///
/// Only the invalid-message term (P4) is strong; mesh-delivery terms (P3, P3b) are off because
/// chat topics are often quiet and an honest peer must not be punished for silence; positive
/// terms are small and capped by `topic_score_cap` so they cannot outweigh rejections.
pub fn topic_score_params(config: &GossipConfig) -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: config.invalid_message_weight,
        invalid_message_deliveries_decay: config.invalid_message_decay,
        ..TopicScoreParams::default()
    }
}

fn peer_score_params() -> PeerScoreParams {
    PeerScoreParams {
        // Positive topic contributions never exceed this, so a few rejections always count.
        topic_score_cap: 20.0,
        // Peers are admitted one by one by their admins: many peers behind one IP address (or
        // on loopback in tests) are not a Sybil signal here.
        ip_colocation_factor_weight: 0.0,
        ..PeerScoreParams::default()
    }
}

/// Builds the gossipsub behaviour.
pub fn build(key: &Keypair, config: &GossipConfig) -> Result<Gossipsub, crate::NetError> {
    let gs_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|message: &gossipsub::Message| {
            MessageId::from(message_id_of(&message.data).to_vec())
        })
        .max_transmit_size(config.max_transmit_size)
        .heartbeat_interval(config.heartbeat_interval)
        .mesh_n(config.mesh_n)
        .mesh_n_low(config.mesh_n_low)
        .mesh_n_high(config.mesh_n_high)
        .mesh_outbound_min(config.mesh_outbound_min)
        .duplicate_cache_time(config.duplicate_cache_time)
        .build()
        .map_err(|e| crate::NetError::Config(format!("gossipsub: {e}")))?;
    let filter = gossipsub::MaxCountSubscriptionFilter {
        filter: gossipsub::AllowAllSubscriptionFilter {},
        max_subscribed_topics: config.max_subscriptions_per_peer,
        max_subscriptions_per_request: config.max_subscriptions_per_peer,
    };
    let mut behaviour = Gossipsub::new_with_subscription_filter(
        MessageAuthenticity::Signed(key.clone()),
        gs_config,
        filter,
    )
    .map_err(|e| crate::NetError::Config(format!("gossipsub: {e}")))?;
    let thresholds = PeerScoreThresholds {
        gossip_threshold: config.gossip_threshold,
        publish_threshold: config.publish_threshold,
        graylist_threshold: config.graylist_threshold,
        ..PeerScoreThresholds::default()
    };
    behaviour
        .with_peer_score(peer_score_params(), thresholds)
        .map_err(|e| crate::NetError::Config(format!("gossipsub scoring: {e}")))?;
    Ok(behaviour)
}
