//! Wire types shared by nodes, devices and relays: sealed envelopes, the signed enqueue request,
//! the device-issued capability token and the device challenge signature.
//!
//! A relay stores [`SealedEnvelope`]s for offline devices and can never read them: the sending
//! node seals each payload to the recipient device's X25519 key with a fresh ephemeral key
//! (X25519, HKDF-SHA256, AES-256-GCM; the shared secret must be contributory). Nothing here draws
//! randomness: the ephemeral secret, ids and times are handed in.
//!
//! Signatures are ed25519 over `context ‖ 0x00 ‖ payload` with a fixed context string per kind
//! ([`RelayDomain`]), verified with `verify_strict`, exactly like [`crate::keys`]:
//!
//! - the **enqueue request** is signed by the sending node's organisation key;
//! - the **capability token** is signed by the recipient device's Ed25519 key and names the one
//!   organisation allowed to enqueue with it, so a leaked token is useless to anyone else;
//! - the **device challenge** answer is signed by the device key over a relay-issued nonce.
//!
//! Binary layouts are fixed-width and big-endian; the JSON forms carry ids in lowercase
//! base32hex (like every id in [`crate::ids`]) and byte strings in unpadded base64url.

use crate::ids::{malformed, IdError, OrgId};
use crate::keys::{sign_in_context, verify_in_context, OrgKey, Signature, SignatureError};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// The kinds of thing signed around a relay. Each has a fixed context string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayDomain {
    /// An [`EnqueueRequest`], signed by the sending organisation.
    Enqueue,
    /// A [`CapabilityToken`], signed by the recipient device.
    Capability,
    /// A device's answer to a relay challenge (see [`device_auth_payload`]).
    DeviceAuth,
    /// A user's [`crate::devices::DeviceList`], signed by their organisation.
    DeviceList,
    /// A [`RenounceRequest`], signed by the organisation giving up its capability.
    Renounce,
}

impl RelayDomain {
    pub const fn context(self) -> &'static [u8] {
        match self {
            RelayDomain::Enqueue => b"confab/v1/relay-enqueue",
            RelayDomain::Capability => b"confab/v1/relay-capability",
            RelayDomain::DeviceAuth => b"confab/v1/relay-device-auth",
            RelayDomain::DeviceList => b"confab/v1/device-list",
            RelayDomain::Renounce => b"confab/v1/relay-renounce",
        }
    }
}

fn sign_with(seed: &[u8; 32], domain: RelayDomain, payload: &[u8]) -> Signature {
    sign_in_context(&SigningKey::from_bytes(seed), domain.context(), payload)
}

/// Verifies `signature` by the ed25519 public key `signer` over `payload` in `domain`, strictly.
pub fn verify(
    signer: &[u8; 32],
    domain: RelayDomain,
    payload: &[u8],
    signature: &Signature,
) -> Result<(), SignatureError> {
    verify_in_context(signer, domain.context(), payload, signature)
}

/// Signs in a relay domain with an organisation key.
pub fn org_sign(org: &OrgKey, domain: RelayDomain, payload: &[u8]) -> Signature {
    org.sign_context(domain.context(), payload)
}

// ------------------------------------------------------------------------------------------------
// Identifiers

crate::ids::fixed_bytes_id!(
    /// A device's queue on a relay: 16 random bytes chosen by the relay at registration. Opaque:
    /// it says nothing about the device, its user or organisation.
    QueueId, 16, "26 characters"
);
crate::ids::fixed_bytes_id!(
    /// An envelope, chosen by the sending node (random). Enqueue is idempotent by this id.
    EnvelopeId, 16, "26 characters"
);
crate::ids::fixed_bytes_id!(
    /// A capability token, chosen by the device (random); revocation names it.
    CapabilityId, 16, "26 characters"
);
crate::ids::fixed_bytes_id!(
    /// A device's Ed25519 public key (used to authenticate to the relay and sign capabilities).
    DevicePublicKey, 32, "52 characters"
);

// ------------------------------------------------------------------------------------------------
// base64url helpers

/// Encodes bytes as unpadded base64url (RFC 4648 §5).
pub fn b64_encode(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

/// Decodes unpadded base64url; `None` for anything else.
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    data_encoding::BASE64URL_NOPAD.decode(text.as_bytes()).ok()
}

mod b64_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::b64_encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        super::b64_decode(&text)
            .ok_or_else(|| serde::de::Error::custom("expected unpadded base64url"))
    }
}

pub(crate) mod b64_signature {
    use crate::keys::Signature;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sig: &Signature, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::b64_encode(&sig.0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Signature, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let bytes = super::b64_decode(&text)
            .ok_or_else(|| serde::de::Error::custom("signature: expected unpadded base64url"))?;
        let bytes = <[u8; 64]>::try_from(bytes.as_slice())
            .map_err(|_| serde::de::Error::custom("signature: expected 64 bytes"))?;
        Ok(Signature(bytes))
    }
}

// ------------------------------------------------------------------------------------------------
// Device keys

/// A device's Ed25519 key (in the browser it lives in WebCrypto; this is the Rust side for tests,
/// tools and the node's own checks).
pub struct DeviceKey {
    seed: [u8; 32],
    public: DevicePublicKey,
}

impl DeviceKey {
    /// Builds the key from its 32-byte secret seed (handed in).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let public = DevicePublicKey(SigningKey::from_bytes(&seed).verifying_key().to_bytes());
        Self { seed, public }
    }

    pub fn public(&self) -> DevicePublicKey {
        self.public
    }

    pub fn sign(&self, domain: RelayDomain, payload: &[u8]) -> Signature {
        sign_with(&self.seed, domain, payload)
    }

    /// Answers a relay challenge (see [`device_auth_payload`]).
    pub fn answer(
        &self,
        purpose: ChallengePurpose,
        challenge: &[u8; CHALLENGE_LEN],
        queue: Option<QueueId>,
    ) -> Signature {
        let payload = device_auth_payload(purpose, challenge, queue, &self.public);
        self.sign(RelayDomain::DeviceAuth, &payload)
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKey({})", self.public)
    }
}

// ------------------------------------------------------------------------------------------------
// Device challenge

/// Length of a relay challenge nonce.
pub const CHALLENGE_LEN: usize = 32;

/// What a device proves its key for. Part of the signed payload, so an answer given for one
/// purpose can never be used for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengePurpose {
    /// Creating a queue (no queue id yet).
    Register,
    /// Fetching and acknowledging envelopes (HTTP poll or WebSocket).
    Fetch,
    /// Changing the queue: push subscription, capability revocation, deletion.
    Manage,
}

impl ChallengePurpose {
    pub const fn code(self) -> u8 {
        match self {
            ChallengePurpose::Register => 1,
            ChallengePurpose::Fetch => 2,
            ChallengePurpose::Manage => 3,
        }
    }
}

/// The payload a device signs (domain [`RelayDomain::DeviceAuth`]) to answer a challenge:
/// `purpose (1) ‖ challenge (32) ‖ queue id (16; zeros when registering) ‖ device key (32)`.
pub fn device_auth_payload(
    purpose: ChallengePurpose,
    challenge: &[u8; CHALLENGE_LEN],
    queue: Option<QueueId>,
    device: &DevicePublicKey,
) -> Vec<u8> {
    let mut payload = Vec::with_capacity(1 + CHALLENGE_LEN + QueueId::LEN + DevicePublicKey::LEN);
    payload.push(purpose.code());
    payload.extend_from_slice(challenge);
    payload.extend_from_slice(queue.map(|q| q.0).unwrap_or([0; QueueId::LEN]).as_slice());
    payload.extend_from_slice(device.as_bytes());
    payload
}

/// Verifies a device's challenge answer.
pub fn verify_device_auth(
    device: &DevicePublicKey,
    purpose: ChallengePurpose,
    challenge: &[u8; CHALLENGE_LEN],
    queue: Option<QueueId>,
    signature: &Signature,
) -> Result<(), SignatureError> {
    let payload = device_auth_payload(purpose, challenge, queue, device);
    verify(device.as_bytes(), RelayDomain::DeviceAuth, &payload, signature)
}

/// A device's answer to a challenge as sent over the wire (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAuth {
    /// The challenge the relay issued, base64url (32 bytes).
    #[serde(with = "b64_bytes")]
    pub challenge: Vec<u8>,
    /// The device's signature over [`device_auth_payload`], base64url (64 bytes).
    #[serde(with = "b64_signature")]
    pub signature: Signature,
}

// ------------------------------------------------------------------------------------------------
// Urgency and topic (RFC 8030 §5.3, §5.4)

/// How urgently the recipient should be woken (RFC 8030 §5.3). Ordered from least to most urgent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Urgency {
    VeryLow,
    Low,
    Normal,
    High,
}

impl Urgency {
    pub const fn code(self) -> u8 {
        match self {
            Urgency::VeryLow => 0,
            Urgency::Low => 1,
            Urgency::Normal => 2,
            Urgency::High => 3,
        }
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Urgency::VeryLow),
            1 => Some(Urgency::Low),
            2 => Some(Urgency::Normal),
            3 => Some(Urgency::High),
            _ => None,
        }
    }

    /// The value of the `Urgency` header (RFC 8030 §5.3).
    pub const fn header_value(self) -> &'static str {
        match self {
            Urgency::VeryLow => "very-low",
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::High => "high",
        }
    }
}

/// Maximum length of a [`Topic`] (RFC 8030 §5.4: at most 32 characters).
pub const TOPIC_MAX_LEN: usize = 32;

/// A collapse key (RFC 8030 §5.4): 1 to 32 characters of the base64url alphabet. A newer envelope
/// with the same topic in the same queue replaces the older one.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic(String);

impl Topic {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({})", self.0)
    }
}

impl FromStr for Topic {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        let ok = !text.is_empty()
            && text.len() <= TOPIC_MAX_LEN
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Topic(text.to_owned()))
        } else {
            Err(malformed("Topic", "1 to 32 characters of the base64url alphabet"))
        }
    }
}

impl Serialize for Topic {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

// ------------------------------------------------------------------------------------------------
// Sealed envelopes

/// Version byte of the sealed-envelope format described in [`SealedEnvelope`].
pub const SEALED_VERSION: u8 = 1;
/// HKDF `info` of the sealed-envelope key schedule.
pub const SEAL_INFO: &[u8] = b"confab/v1/sealed-envelope";
/// Bytes a sealed envelope adds to its plaintext: version (1), ephemeral key (32), GCM tag (16).
pub const SEAL_OVERHEAD: usize = 1 + 32 + 16;

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the X25519 shared secret is not contributory (low-order public key)")]
    NonContributory,
    #[error("sealed envelope is malformed: {0}")]
    Malformed(&'static str),
    #[error("sealed envelope does not decrypt (wrong key or tampered)")]
    Decrypt,
}

/// An end-to-end sealed payload. Binary layout:
/// `version (1) = 1 ‖ ephemeral X25519 public key (32) ‖ AES-256-GCM ciphertext ‖ tag (16)`.
///
/// Key schedule: `shared = X25519(ephemeral, recipient)` (must be contributory);
/// `okm = HKDF-SHA256(salt = ephemeral_public ‖ recipient_public, ikm = shared,
/// info = "confab/v1/sealed-envelope", 44 bytes)`; key = `okm[0..32]`, nonce = `okm[32..44]`;
/// associated data = `version ‖ ephemeral_public`. The ephemeral key is fresh per envelope, so
/// the derived nonce is never reused under one key.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedEnvelope {
    pub ephemeral: [u8; 32],
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedEnvelope({} bytes of ciphertext)", self.ciphertext.len())
    }
}

impl SealedEnvelope {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 32 + self.ciphertext.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&self.ephemeral);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses the binary layout (no decryption).
    pub fn decode(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() < SEAL_OVERHEAD {
            return Err(SealError::Malformed("shorter than the fixed overhead"));
        }
        if bytes[0] != SEALED_VERSION {
            return Err(SealError::Malformed("unknown version"));
        }
        let mut ephemeral = [0u8; 32];
        ephemeral.copy_from_slice(&bytes[1..33]);
        Ok(Self { ephemeral, ciphertext: bytes[33..].to_vec() })
    }
}

fn seal_key_schedule(
    shared: &x25519_dalek::SharedSecret,
    ephemeral_public: &[u8; 32],
    recipient_public: &[u8; 32],
) -> Result<(Aes256Gcm, [u8; 12]), SealError> {
    if !shared.was_contributory() {
        return Err(SealError::NonContributory);
    }
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral_public);
    salt[32..].copy_from_slice(recipient_public);
    let hk = hkdf::Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes());
    let mut okm = [0u8; 44];
    hk.expand(SEAL_INFO, &mut okm).map_err(|_| SealError::Malformed("hkdf length"))?;
    let cipher =
        Aes256Gcm::new_from_slice(&okm[..32]).map_err(|_| SealError::Malformed("key length"))?;
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..]);
    Ok((cipher, nonce))
}

fn seal_aad(ephemeral_public: &[u8; 32]) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[0] = SEALED_VERSION;
    aad[1..].copy_from_slice(ephemeral_public);
    aad
}

/// Seals `plaintext` to the recipient's X25519 public key. `ephemeral_secret` must be 32 fresh
/// random bytes from the caller (this crate draws no randomness) and must never be reused.
pub fn seal(
    recipient_public: &[u8; 32],
    plaintext: &[u8],
    ephemeral_secret: [u8; 32],
) -> Result<SealedEnvelope, SealError> {
    let secret = x25519_dalek::StaticSecret::from(ephemeral_secret);
    let ephemeral = x25519_dalek::PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*recipient_public));
    let (cipher, nonce) = seal_key_schedule(&shared, &ephemeral, recipient_public)?;
    let aad = seal_aad(&ephemeral);
    let ciphertext = cipher
        .encrypt((&nonce).into(), Payload { msg: plaintext, aad: &aad })
        .map_err(|_| SealError::Malformed("plaintext too long"))?;
    Ok(SealedEnvelope { ephemeral, ciphertext })
}

/// Opens a sealed envelope with the recipient's X25519 secret key.
pub fn open(recipient_secret: [u8; 32], envelope: &SealedEnvelope) -> Result<Vec<u8>, SealError> {
    let secret = x25519_dalek::StaticSecret::from(recipient_secret);
    let recipient_public = x25519_dalek::PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(envelope.ephemeral));
    let (cipher, nonce) = seal_key_schedule(&shared, &envelope.ephemeral, &recipient_public)?;
    let aad = seal_aad(&envelope.ephemeral);
    cipher
        .decrypt((&nonce).into(), Payload { msg: &envelope.ciphertext, aad: &aad })
        .map_err(|_| SealError::Decrypt)
}

/// The X25519 public key of a secret (for devices and tests).
pub fn x25519_public(secret: [u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret)).to_bytes()
}

// ------------------------------------------------------------------------------------------------
// Capability tokens

/// Version byte of the capability token layout.
pub const CAPABILITY_VERSION: u8 = 1;
/// Encoded length of a capability token.
pub const CAPABILITY_LEN: usize = 1 + 16 + 16 + 32 + 8 + 64;

/// Why a token or request could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayWireError {
    #[error("capability token is malformed: {0}")]
    Capability(&'static str),
}

/// Permission, issued (signed) by a device, for one organisation to enqueue into the device's
/// queue until `not_after_ms`. The device hands it to its node; the relay checks it on every
/// enqueue and the device can revoke it by id.
///
/// Layout (137 bytes): `version (1) = 1 ‖ queue id (16) ‖ capability id (16) ‖ sender org
/// id (32) ‖ not_after_ms (u64 BE) ‖ signature (64)`; the signature (domain
/// [`RelayDomain::Capability`], by the device key) covers the first 73 bytes. Text form:
/// unpadded base64url of the layout.
#[derive(Clone, PartialEq, Eq)]
pub struct CapabilityToken {
    pub queue: QueueId,
    pub id: CapabilityId,
    pub sender: OrgId,
    pub not_after_ms: u64,
    pub signature: Signature,
}

impl fmt::Debug for CapabilityToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapabilityToken({} for {} on {})", self.id, self.sender, self.queue)
    }
}

impl CapabilityToken {
    fn signed_part(
        queue: &QueueId,
        id: &CapabilityId,
        sender: &OrgId,
        not_after_ms: u64,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(CAPABILITY_LEN - 64);
        out.push(CAPABILITY_VERSION);
        out.extend_from_slice(queue.as_bytes());
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(sender.as_bytes());
        out.extend_from_slice(&not_after_ms.to_be_bytes());
        out
    }

    /// Issues a token with the device key.
    pub fn issue(
        device: &DeviceKey,
        queue: QueueId,
        id: CapabilityId,
        sender: OrgId,
        not_after_ms: u64,
    ) -> Self {
        let signature = device
            .sign(RelayDomain::Capability, &Self::signed_part(&queue, &id, &sender, not_after_ms));
        Self { queue, id, sender, not_after_ms, signature }
    }

    /// Verifies the device's signature.
    pub fn verify(&self, device: &DevicePublicKey) -> Result<(), SignatureError> {
        let part = Self::signed_part(&self.queue, &self.id, &self.sender, self.not_after_ms);
        verify(device.as_bytes(), RelayDomain::Capability, &part, &self.signature)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Self::signed_part(&self.queue, &self.id, &self.sender, self.not_after_ms);
        out.extend_from_slice(&self.signature.0);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RelayWireError> {
        if bytes.len() != CAPABILITY_LEN {
            return Err(RelayWireError::Capability("must be 137 bytes"));
        }
        if bytes[0] != CAPABILITY_VERSION {
            return Err(RelayWireError::Capability("unknown version"));
        }
        let short = || RelayWireError::Capability("truncated");
        let queue = QueueId::from_slice(&bytes[1..17]).ok_or_else(short)?;
        let id = CapabilityId::from_slice(&bytes[17..33]).ok_or_else(short)?;
        let sender = OrgId::from_slice(&bytes[33..65]).ok_or_else(short)?;
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&bytes[65..73]);
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&bytes[73..137]);
        Ok(Self {
            queue,
            id,
            sender,
            not_after_ms: u64::from_be_bytes(ms),
            signature: Signature(sig),
        })
    }

    pub fn to_text(&self) -> String {
        b64_encode(&self.encode())
    }

    pub fn from_text(text: &str) -> Result<Self, RelayWireError> {
        if text.len() > 2 * CAPABILITY_LEN {
            return Err(RelayWireError::Capability("too long"));
        }
        let bytes =
            b64_decode(text).ok_or(RelayWireError::Capability("expected unpadded base64url"))?;
        Self::decode(&bytes)
    }
}

impl Serialize for CapabilityToken {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for CapabilityToken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_text(&text).map_err(serde::de::Error::custom)
    }
}

// ------------------------------------------------------------------------------------------------
// Enqueue request

/// Version byte of the enqueue request's signed payload.
pub const ENQUEUE_VERSION: u8 = 1;

/// A node's request to put one sealed envelope into a device's queue. JSON on the wire (ids in
/// base32hex, `sealed`, `capability` and `signature` in base64url).
///
/// The signature (domain [`RelayDomain::Enqueue`], by the `sender` organisation's key) covers
/// [`EnqueueRequest::signed_payload`]: `version (1) = 1 ‖ queue (16) ‖ envelope id (16) ‖
/// sender (32) ‖ sent_ms (u64 BE) ‖ ttl_s (u32 BE) ‖ urgency (1) ‖ topic length (1) ‖ topic ‖
/// SHA-256(sealed) (32) ‖ SHA-256(capability token bytes) (32)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    pub queue: QueueId,
    pub envelope_id: EnvelopeId,
    pub sender: OrgId,
    /// The sender's clock when it signed (the relay refuses requests too far from its own clock,
    /// which bounds how long a captured request can be replayed).
    pub sent_ms: u64,
    /// Seconds the relay keeps the envelope (at least 1; the relay has a maximum).
    pub ttl_s: u32,
    pub urgency: Urgency,
    #[serde(default)]
    pub topic: Option<Topic>,
    /// The encoded [`SealedEnvelope`].
    #[serde(with = "b64_bytes")]
    pub sealed: Vec<u8>,
    pub capability: CapabilityToken,
    #[serde(with = "b64_signature")]
    pub signature: Signature,
}

/// The fields of an [`EnqueueRequest`] before signing.
#[derive(Clone, Debug)]
pub struct EnqueueFields {
    pub queue: QueueId,
    pub envelope_id: EnvelopeId,
    pub sent_ms: u64,
    pub ttl_s: u32,
    pub urgency: Urgency,
    pub topic: Option<Topic>,
    pub sealed: Vec<u8>,
    pub capability: CapabilityToken,
}

impl EnqueueRequest {
    #[allow(clippy::too_many_arguments)]
    fn payload(
        queue: &QueueId,
        envelope_id: &EnvelopeId,
        sender: &OrgId,
        sent_ms: u64,
        ttl_s: u32,
        urgency: Urgency,
        topic: Option<&Topic>,
        sealed: &[u8],
        capability: &CapabilityToken,
    ) -> Vec<u8> {
        let topic = topic.map(|t| t.as_str().as_bytes()).unwrap_or(&[]);
        let mut out = Vec::with_capacity(1 + 16 + 16 + 32 + 8 + 4 + 2 + topic.len() + 64);
        out.push(ENQUEUE_VERSION);
        out.extend_from_slice(queue.as_bytes());
        out.extend_from_slice(envelope_id.as_bytes());
        out.extend_from_slice(sender.as_bytes());
        out.extend_from_slice(&sent_ms.to_be_bytes());
        out.extend_from_slice(&ttl_s.to_be_bytes());
        out.push(urgency.code());
        // Topics are at most 32 bytes (checked when parsed).
        out.push(topic.len().min(255) as u8);
        out.extend_from_slice(topic);
        out.extend_from_slice(&Sha256::digest(sealed));
        out.extend_from_slice(&Sha256::digest(capability.encode()));
        out
    }

    /// The bytes the sender signs.
    pub fn signed_payload(&self) -> Vec<u8> {
        Self::payload(
            &self.queue,
            &self.envelope_id,
            &self.sender,
            self.sent_ms,
            self.ttl_s,
            self.urgency,
            self.topic.as_ref(),
            &self.sealed,
            &self.capability,
        )
    }

    /// Builds and signs a request with the sending organisation's key.
    pub fn sign(org: &OrgKey, fields: EnqueueFields) -> Self {
        let sender = org.id();
        let payload = Self::payload(
            &fields.queue,
            &fields.envelope_id,
            &sender,
            fields.sent_ms,
            fields.ttl_s,
            fields.urgency,
            fields.topic.as_ref(),
            &fields.sealed,
            &fields.capability,
        );
        let signature = org_sign(org, RelayDomain::Enqueue, &payload);
        Self {
            queue: fields.queue,
            envelope_id: fields.envelope_id,
            sender,
            sent_ms: fields.sent_ms,
            ttl_s: fields.ttl_s,
            urgency: fields.urgency,
            topic: fields.topic,
            sealed: fields.sealed,
            capability: fields.capability,
            signature,
        }
    }

    /// Verifies the sender's signature (not the capability: that needs the device key).
    pub fn verify_signature(&self) -> Result<(), SignatureError> {
        verify(
            self.sender.as_bytes(),
            RelayDomain::Enqueue,
            &self.signed_payload(),
            &self.signature,
        )
    }
}

// ------------------------------------------------------------------------------------------------
// Renounce request

/// Version byte of the renounce request's signed payload.
pub const RENOUNCE_VERSION: u8 = 1;

/// A node giving up its capability for a queue: sent when the device was removed from its
/// user's account. The relay revokes the capability and deletes every envelope this sender
/// still has queued there, so a lost or stolen device cannot fetch them any more.
///
/// The signature (domain [`RelayDomain::Renounce`], by `sender`) covers
/// [`RenounceRequest::signed_payload`]: `version (1) = 1 ‖ queue (16) ‖ sender (32) ‖ sent_ms
/// (u64 BE) ‖ SHA-256(capability token bytes) (32)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenounceRequest {
    pub queue: QueueId,
    pub sender: OrgId,
    /// The sender's clock when it signed (bounds replays, as for enqueue).
    pub sent_ms: u64,
    pub capability: CapabilityToken,
    #[serde(with = "b64_signature")]
    pub signature: Signature,
}

impl RenounceRequest {
    fn payload(
        queue: &QueueId,
        sender: &OrgId,
        sent_ms: u64,
        capability: &CapabilityToken,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 16 + 32 + 8 + 32);
        out.push(RENOUNCE_VERSION);
        out.extend_from_slice(queue.as_bytes());
        out.extend_from_slice(sender.as_bytes());
        out.extend_from_slice(&sent_ms.to_be_bytes());
        out.extend_from_slice(&Sha256::digest(capability.encode()));
        out
    }

    /// The bytes the sender signs.
    pub fn signed_payload(&self) -> Vec<u8> {
        Self::payload(&self.queue, &self.sender, self.sent_ms, &self.capability)
    }

    /// Builds and signs a request for the queue the capability names.
    pub fn sign(org: &OrgKey, capability: CapabilityToken, sent_ms: u64) -> Self {
        let sender = org.id();
        let queue = capability.queue;
        let payload = Self::payload(&queue, &sender, sent_ms, &capability);
        let signature = org_sign(org, RelayDomain::Renounce, &payload);
        Self { queue, sender, sent_ms, capability, signature }
    }

    /// Verifies the sender's signature (the capability is checked against the device key).
    pub fn verify_signature(&self) -> Result<(), SignatureError> {
        verify(
            self.sender.as_bytes(),
            RelayDomain::Renounce,
            &self.signed_payload(),
            &self.signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renounce_request_signs_and_refuses_tampering() {
        let org = OrgKey::from_seed([6; 32]);
        let device = DeviceKey::from_seed([7; 32]);
        let capability = CapabilityToken::issue(
            &device,
            QueueId::from_bytes([1; 16]),
            CapabilityId::from_bytes([2; 16]),
            org.id(),
            5_000,
        );
        let request = RenounceRequest::sign(&org, capability, 1_000);
        request.verify_signature().expect("verifies");
        let json = serde_json::to_string(&request).expect("json");
        let back: RenounceRequest = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, request);
        let mut later = request.clone();
        later.sent_ms += 1;
        assert!(later.verify_signature().is_err());
        let mut other = request;
        other.queue = QueueId::from_bytes([9; 16]);
        assert!(other.verify_signature().is_err());
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let recipient_secret = [3u8; 32];
        let recipient = x25519_public(recipient_secret);
        let sealed = seal(&recipient, b"hello canary", [5u8; 32]).expect("seal");
        assert_eq!(sealed.ciphertext.len(), 12 + 16);
        let bytes = sealed.encode();
        assert_eq!(bytes.len(), 12 + SEAL_OVERHEAD);
        let parsed = SealedEnvelope::decode(&bytes).expect("decode");
        assert_eq!(open(recipient_secret, &parsed).expect("open"), b"hello canary");
        let mut tampered = parsed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(open(recipient_secret, &tampered), Err(SealError::Decrypt));
        assert_eq!(open([4u8; 32], &parsed), Err(SealError::Decrypt));
        assert!(SealedEnvelope::decode(&bytes[..40]).is_err());
    }

    #[test]
    fn low_order_keys_are_refused() {
        // The all-zero point has small order: the shared secret would be all zeros.
        assert_eq!(seal(&[0u8; 32], b"x", [5u8; 32]), Err(SealError::NonContributory));
        let envelope = SealedEnvelope { ephemeral: [0u8; 32], ciphertext: vec![0; 20] };
        assert_eq!(open([3; 32], &envelope), Err(SealError::NonContributory));
    }

    #[test]
    fn capability_and_enqueue_signatures() {
        let device = DeviceKey::from_seed([1; 32]);
        let org = OrgKey::from_seed([2; 32]);
        let queue = QueueId::from_bytes([3; 16]);
        let cap =
            CapabilityToken::issue(&device, queue, CapabilityId::from_bytes([4; 16]), org.id(), 99);
        assert_eq!(cap.verify(&device.public()), Ok(()));
        let text = cap.to_text();
        assert_eq!(CapabilityToken::from_text(&text), Ok(cap.clone()));
        let other = DeviceKey::from_seed([9; 32]);
        assert!(cap.verify(&other.public()).is_err());
        let mut forged = cap.clone();
        forged.not_after_ms = 100;
        assert!(forged.verify(&device.public()).is_err());

        let request = EnqueueRequest::sign(
            &org,
            EnqueueFields {
                queue,
                envelope_id: EnvelopeId::from_bytes([5; 16]),
                sent_ms: 1,
                ttl_s: 60,
                urgency: Urgency::High,
                topic: Some("chat-1".parse().expect("topic")),
                sealed: vec![1, 2, 3],
                capability: cap,
            },
        );
        assert_eq!(request.verify_signature(), Ok(()));
        let json = serde_json::to_string(&request).expect("json");
        let back: EnqueueRequest = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, request);
        let mut changed = request.clone();
        changed.ttl_s = 61;
        assert!(changed.verify_signature().is_err());
        let mut changed = request;
        changed.sealed.push(4);
        assert!(changed.verify_signature().is_err());
    }

    #[test]
    fn challenge_answers_are_bound_to_purpose_and_queue() {
        let device = DeviceKey::from_seed([1; 32]);
        let queue = QueueId::from_bytes([3; 16]);
        let challenge = [7u8; 32];
        let sig = device.answer(ChallengePurpose::Fetch, &challenge, Some(queue));
        let public = device.public();
        assert_eq!(
            verify_device_auth(&public, ChallengePurpose::Fetch, &challenge, Some(queue), &sig),
            Ok(())
        );
        assert!(verify_device_auth(
            &public,
            ChallengePurpose::Manage,
            &challenge,
            Some(queue),
            &sig
        )
        .is_err());
        assert!(verify_device_auth(&public, ChallengePurpose::Fetch, &[8; 32], Some(queue), &sig)
            .is_err());
        assert!(verify_device_auth(
            &public,
            ChallengePurpose::Fetch,
            &challenge,
            Some(QueueId::from_bytes([4; 16])),
            &sig
        )
        .is_err());
    }

    #[test]
    fn topics() {
        assert!("a".parse::<Topic>().is_ok());
        assert!("A-z_09".parse::<Topic>().is_ok());
        assert!("".parse::<Topic>().is_err());
        assert!("a b".parse::<Topic>().is_err());
        assert!("x".repeat(33).parse::<Topic>().is_err());
        assert!("x".repeat(32).parse::<Topic>().is_ok());
    }
}
