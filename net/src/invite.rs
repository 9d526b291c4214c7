//! Invite tokens: a copy-pastable, signed description of how to reach an organisation's node.
//!
//! An admin issues a token with [`InviteToken::issue`] (signed by the organisation key, domain
//! `confab/v1/invite-token`) and hands its text to the other organisation's admin, who checks it
//! with [`InviteToken::verify`] and adds the peer it names ([`InviteToken::peer_id`],
//! [`InviteToken::addrs`]) to the allow-list. Peering is mutual: the issuer must allow-list the
//! other organisation too (by its token or address) before a connection is accepted.
//!
//! Binary layout (all integers big-endian): magic `CFIT` ‖ version `1` ‖ organisation public
//! key (32) ‖ expiry, seconds since the Unix epoch (u64) ‖ address count (u8, ≤
//! [`MAX_ADDRS`]) ‖ per address: length (u16, ≤ [`MAX_ADDR_BYTES`]) ‖ multiaddr bytes ‖
//! signature (64) over `confab/v1/invite-token ‖ 0x00 ‖ every preceding byte`. Text form:
//! [`TEXT_PREFIX`] followed by unpadded base64url of the bytes.

use data_encoding::BASE64URL_NOPAD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// Prefix of the text form.
pub const TEXT_PREFIX: &str = "confab-invite-1.";
/// Signature context.
pub const CONTEXT: &[u8] = b"confab/v1/invite-token";
/// Most addresses in a token.
pub const MAX_ADDRS: usize = 8;
/// Most bytes of one encoded multiaddr.
pub const MAX_ADDR_BYTES: usize = 256;
/// Most characters of a token's text form.
pub const MAX_TEXT_LEN: usize = 4096;

const MAGIC: &[u8; 4] = b"CFIT";
const VERSION: u8 = 1;

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// Not the text form of a token.
    #[error("not an invite token: {0}")]
    Malformed(&'static str),
    /// A version this code does not speak.
    #[error("unsupported invite token version {0}")]
    UnsupportedVersion(u8),
    /// Too many or too long addresses (when issuing or decoding).
    #[error("invite token limit exceeded: {0}")]
    Limit(&'static str),
    /// An address names another peer than the token's issuer.
    #[error("an address names another peer than the issuer")]
    ForeignAddress,
    /// The signature does not verify under the issuer's key.
    #[error("invite token signature does not verify")]
    BadSignature,
    /// The token expired.
    #[error("invite token expired at {expired_at} (now {now})")]
    Expired {
        /// Expiry, seconds since the Unix epoch.
        expired_at: u64,
        /// The time handed in.
        now: u64,
    },
}

/// A decoded invite token (verify it with [`InviteToken::verify`] before trusting it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteToken {
    org_key: [u8; 32],
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    expires_at: u64,
    signature: [u8; 64],
}

impl InviteToken {
    /// Issues a token for the organisation whose key seed is `seed`, reachable at `addrs`
    /// (a trailing `/p2p/<peer id>` is removed), valid until `expires_at` (Unix seconds).
    pub fn issue(
        seed: &[u8; 32],
        addrs: &[Multiaddr],
        expires_at: u64,
    ) -> Result<Self, InviteError> {
        let signing = SigningKey::from_bytes(seed);
        let org_key = signing.verifying_key().to_bytes();
        let peer = crate::peer_id_of(&org_key).map_err(|_| InviteError::Malformed("key"))?;
        if addrs.len() > MAX_ADDRS {
            return Err(InviteError::Limit("too many addresses"));
        }
        let mut clean = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let addr = strip_own_p2p(addr, &peer)?;
            if addr.to_vec().len() > MAX_ADDR_BYTES {
                return Err(InviteError::Limit("address too long"));
            }
            clean.push(addr);
        }
        let mut token = Self { org_key, peer, addrs: clean, expires_at, signature: [0; 64] };
        let message = signed_message(&token.body());
        token.signature = signing.sign(&message).to_bytes();
        Ok(token)
    }

    /// The issuer's organisation public key (its `OrgId` bytes).
    pub fn org_key(&self) -> [u8; 32] {
        self.org_key
    }

    /// The issuer's libp2p identity.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// The addresses to dial (without `/p2p`).
    pub fn addrs(&self) -> &[Multiaddr] {
        &self.addrs
    }

    /// Expiry, seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.org_key);
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.push(self.addrs.len() as u8);
        for addr in &self.addrs {
            let bytes = addr.to_vec();
            out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// The binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature);
        out
    }

    /// The copy-pastable text form.
    pub fn encode(&self) -> String {
        format!("{TEXT_PREFIX}{}", BASE64URL_NOPAD.encode(&self.to_bytes()))
    }

    /// Parses the text form without checking signature or expiry.
    pub fn decode_unverified(text: &str) -> Result<Self, InviteError> {
        let text = text.trim();
        if text.len() > MAX_TEXT_LEN {
            return Err(InviteError::Limit("token too long"));
        }
        let body = text.strip_prefix(TEXT_PREFIX).ok_or(InviteError::Malformed("prefix"))?;
        let bytes = BASE64URL_NOPAD
            .decode(body.as_bytes())
            .map_err(|_| InviteError::Malformed("base64url"))?;
        Self::from_bytes(&bytes)
    }

    /// Parses the binary form without checking signature or expiry.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InviteError> {
        let mut rest = bytes;
        let mut take = |n: usize| -> Result<&[u8], InviteError> {
            if rest.len() < n {
                return Err(InviteError::Malformed("truncated"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        if take(4)? != MAGIC {
            return Err(InviteError::Malformed("magic"));
        }
        let version = take(1)?[0];
        if version != VERSION {
            return Err(InviteError::UnsupportedVersion(version));
        }
        let mut org_key = [0u8; 32];
        org_key.copy_from_slice(take(32)?);
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(take(8)?);
        let count = take(1)?[0] as usize;
        if count > MAX_ADDRS {
            return Err(InviteError::Limit("too many addresses"));
        }
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count {
            let len = take(2)?;
            let len = u16::from_be_bytes([len[0], len[1]]) as usize;
            if len > MAX_ADDR_BYTES {
                return Err(InviteError::Limit("address too long"));
            }
            let addr = Multiaddr::try_from(take(len)?.to_vec())
                .map_err(|_| InviteError::Malformed("multiaddr"))?;
            addrs.push(addr);
        }
        let mut signature = [0u8; 64];
        signature.copy_from_slice(take(64)?);
        if !rest.is_empty() {
            return Err(InviteError::Malformed("trailing bytes"));
        }
        let peer = crate::peer_id_of(&org_key).map_err(|_| InviteError::Malformed("key"))?;
        for addr in &addrs {
            if addr.iter().any(|p| matches!(p, Protocol::P2p(_))) {
                strip_own_p2p(addr, &peer)?;
                return Err(InviteError::Malformed("address carries /p2p"));
            }
        }
        Ok(Self { org_key, peer, addrs, expires_at: u64::from_be_bytes(expiry), signature })
    }

    /// Parses the text form and checks the signature (strictly) and the expiry against `now`
    /// (Unix seconds, handed in). The only way to obtain a token fit for use.
    pub fn verify(text: &str, now: u64) -> Result<Self, InviteError> {
        let token = Self::decode_unverified(text)?;
        let key =
            VerifyingKey::from_bytes(&token.org_key).map_err(|_| InviteError::BadSignature)?;
        let signature = ed25519_dalek::Signature::from_bytes(&token.signature);
        key.verify_strict(&signed_message(&token.body()), &signature)
            .map_err(|_| InviteError::BadSignature)?;
        if now >= token.expires_at {
            return Err(InviteError::Expired { expired_at: token.expires_at, now });
        }
        Ok(token)
    }
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(CONTEXT.len() + 1 + body.len());
    message.extend_from_slice(CONTEXT);
    message.push(0);
    message.extend_from_slice(body);
    message
}

/// Removes `/p2p/<peer>` components naming `peer`; any other peer id is refused.
fn strip_own_p2p(addr: &Multiaddr, peer: &PeerId) -> Result<Multiaddr, InviteError> {
    let mut out = Multiaddr::empty();
    for part in addr.iter() {
        match part {
            Protocol::P2p(id) if id == *peer => {}
            Protocol::P2p(_) => return Err(InviteError::ForeignAddress),
            other => out.push(other),
        }
    }
    Ok(out)
}
