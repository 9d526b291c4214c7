//! Peered organisations: invite tokens, checking and storing a new peer (through the engine)
//! and the network's allow-list, and the admin API's view of each peer.

use super::{FederationConfig, FederationError, FederationHandle};
use crate::engine::{Command, EngineHandle, PeerRecord};
use crate::engine::{Error, Result};
use confab_net::{Multiaddr, PeerId};
use confab_protocol::OrgId;
use serde::Serialize;

/// One peer as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerView {
    pub org_id: OrgId,
    pub peer_id: String,
    pub name: String,
    pub addrs: Vec<String>,
    pub connected: bool,
    pub last_seen_ms: Option<u64>,
    pub rtt_ms: Option<u64>,
    pub lag: Option<u64>,
    pub last_error: Option<String>,
    pub rejected_messages: u32,
    pub blacklisted: bool,
    pub score: Option<f64>,
}

impl FederationHandle {
    /// A signed invite token naming this node's organisation and addresses.
    pub async fn invite(&self, now_s: u64) -> Result<(String, u64)> {
        let listening = self.net.listen_addrs().await.map_err(Error::internal)?;
        invite_token(&self.seed, &self.config, listening, now_s)
    }

    /// Every peered organisation with its network state.
    pub async fn peers(&self, records: Vec<(OrgId, PeerRecord)>) -> Result<Vec<PeerView>> {
        let states = self.net.peers().await.map_err(Error::internal)?;
        let ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).ok()
        };
        Ok(records
            .into_iter()
            .map(|(org, record)| {
                let peer = confab_net::peer_id_of(org.as_bytes()).ok();
                let state = states.iter().find(|s| Some(s.peer) == peer);
                PeerView {
                    org_id: org,
                    peer_id: peer.map(|p| p.to_string()).unwrap_or_default(),
                    name: record.name,
                    addrs: record.addrs,
                    connected: state.is_some_and(|s| s.connected),
                    last_seen_ms: state.and_then(|s| s.last_seen).and_then(ms),
                    rtt_ms: state.and_then(|s| s.rtt).map(|d| d.as_millis() as u64),
                    lag: state.and_then(|s| s.lag),
                    last_error: state.and_then(|s| s.last_error.clone()),
                    rejected_messages: state.map_or(0, |s| s.rejected_messages),
                    blacklisted: state.is_some_and(|s| s.blacklisted),
                    score: state.and_then(|s| s.score),
                }
            })
            .collect())
    }
}

/// A signed invite token for the organisation of `seed`: its `public_addrs`, else `listening`
/// (at most 8), valid for `invite_ttl_s`. Returns the token and when it expires (Unix s).
pub fn invite_token(
    seed: &[u8; 32],
    config: &FederationConfig,
    listening: Vec<Multiaddr>,
    now_s: u64,
) -> Result<(String, u64)> {
    let mut addrs = parse_addrs(&config.public_addrs).map_err(Error::internal)?;
    if addrs.is_empty() {
        addrs = listening;
    }
    if addrs.is_empty() {
        return Err(Error::invalid(
            "no_address",
            "no address to put in the invite: set [federation] public_addrs (or listen on a fixed port)",
        ));
    }
    addrs.truncate(8);
    let expires = now_s + config.invite_ttl_s;
    let token = confab_net::InviteToken::issue(seed, &addrs, expires).map_err(Error::internal)?;
    Ok((token.encode(), expires))
}

/// The configured listen addresses that another node can dial as they are (a port 0 is only
/// known once listening).
pub fn fixed_listen_addrs(config: &FederationConfig) -> Result<Vec<Multiaddr>, FederationError> {
    Ok(parse_addrs(&config.listen)?
        .into_iter()
        .filter(|addr| {
            !addr.iter().any(|part| {
                matches!(
                    part,
                    libp2p::multiaddr::Protocol::Tcp(0) | libp2p::multiaddr::Protocol::Udp(0)
                )
            })
        })
        .collect())
}

/// Longest organisation name a peer may be given (as for this node's own).
pub const PEER_NAME_BYTES_MAX: usize = 63;

/// A new peer as an admin gives it (admin API or CLI): its organisation name (its users are
/// `someone@name`) and either an address ending in `/p2p/<peer id>` or an invite token its
/// admin made. Returns the organisation and the record to store.
pub fn new_peer(
    name: String,
    address: Option<&str>,
    invite: Option<&str>,
    now_ms: u64,
) -> Result<(OrgId, PeerRecord)> {
    if name.len() > PEER_NAME_BYTES_MAX || confab_protocol::ids::validate_org_name(&name).is_err() {
        return Err(Error::invalid(
            "invalid_body",
            "a peer's name is 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit",
        ));
    }
    let (org, addrs) = match (address, invite) {
        (Some(address), None) => {
            let (org, addr) = split_peer_address(address)
                .map_err(|message| Error::invalid("invalid_body", message))?;
            (org, vec![addr.to_string()])
        }
        (None, Some(invite)) => {
            let token = confab_net::InviteToken::verify(invite, now_ms / 1000)
                .map_err(|e| Error::invalid("invalid_invite", e.to_string()))?;
            let org = OrgId::from_bytes(token.org_key());
            (org, token.addrs().iter().map(|a| a.to_string()).collect())
        }
        _ => return Err(Error::invalid("invalid_body", "give either address or invite")),
    };
    let record = PeerRecord { name, addrs, added_ms: now_ms };
    Ok((org, record))
}

/// Whether `org` may be added to the peers `known` of organisation `own`.
pub fn check_new_peer(
    own: &OrgId,
    peers_max: usize,
    known: &[(OrgId, PeerRecord)],
    org: &OrgId,
) -> Result<()> {
    if org == own {
        return Err(Error::invalid("invalid_body", "that address is this node's own"));
    }
    if peer_of_org(org).is_none() {
        return Err(Error::invalid("invalid_body", "not an organisation key"));
    }
    if known.len() >= peers_max && !known.iter().any(|(o, _)| o == org) {
        return Err(Error::forbidden("peer_limit", format!("at most {peers_max} peers")));
    }
    Ok(())
}

pub(super) fn parse_addrs(texts: &[String]) -> Result<Vec<Multiaddr>, FederationError> {
    texts
        .iter()
        .map(|text| text.parse::<Multiaddr>().map_err(|_| FederationError::Address(text.clone())))
        .collect()
}

/// Splits `/ip4/…/tcp/…/p2p/<peer>` into the address without `/p2p` and the peer's
/// organisation.
pub fn split_peer_address(text: &str) -> Result<(OrgId, Multiaddr), String> {
    let mut addr: Multiaddr = text.parse().map_err(|_| format!("{text:?} is not a multiaddr"))?;
    let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.pop() else {
        return Err("the address must end with /p2p/<peer id>".into());
    };
    let org = org_of_peer(&peer).ok_or("the peer id is not an organisation key")?;
    Ok((org, addr))
}

pub(super) fn org_of_peer(peer: &PeerId) -> Option<OrgId> {
    confab_net::org_public_key_of(peer).map(OrgId::from_bytes)
}

pub(super) fn peer_of_org(org: &OrgId) -> Option<PeerId> {
    confab_net::peer_id_of(org.as_bytes()).ok()
}

/// Adds (or updates) a peer: the record through the engine, then the network's allow-list.
pub async fn add_peer(
    handle: &FederationHandle,
    engine: &EngineHandle,
    known: &[(OrgId, PeerRecord)],
    org: OrgId,
    record: PeerRecord,
) -> Result<()> {
    check_new_peer(&handle.own, handle.config.peers_max, known, &org)?;
    let addrs =
        parse_addrs(&record.addrs).map_err(|e| Error::invalid("invalid_body", e.to_string()))?;
    let peer = peer_of_org(&org)
        .ok_or_else(|| Error::invalid("invalid_body", "not an organisation key"))?;
    engine.call(|reply| Command::SetPeer { org, record: Some(record), reply }).await?;
    handle.net.add_peer(peer, addrs).await.map_err(Error::internal)
}

/// Removes a peer: refused from now on.
pub async fn remove_peer(
    handle: &FederationHandle,
    engine: &EngineHandle,
    org: OrgId,
) -> Result<()> {
    engine.call(|reply| Command::SetPeer { org, record: None, reply }).await?;
    if let Some(peer) = peer_of_org(&org) {
        handle.net.remove_peer(peer).await.map_err(Error::internal)?;
    }
    Ok(())
}
