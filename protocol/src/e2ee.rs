//! End-to-end encryption of chat messages with per-device sender chains (`spec/e2ee.md`).
//!
//! Each device that writes to an encrypted chat holds one [`SenderChain`] per chat and key
//! epoch: a chain key that a hash ratchet (HKDF-SHA256) moves forward once per message, each
//! step giving a fresh AES-256-GCM key and nonce used for exactly one message. The members'
//! devices get the chain's current state in a [`SenderKeyDistribution`], signed by the sending
//! device's Ed25519 key and sealed to each recipient device's X25519 key (`relay::seal`), and
//! read the chain's messages with a [`ReceiverChain`].
//!
//! What a ciphertext is bound to: the associated data covers the chat, the message id, the
//! sending device, the epoch and the chain iteration, and the whole ciphertext is signed by the
//! sending device. So a ciphertext moved to another message, chat, epoch or device does not
//! decrypt, one attributed to another device does not verify, and a changed byte fails both.
//! Messages may arrive out of order (federation does not order them): a receiver keeps the
//! keys of skipped iterations, at most [`SKIPPED_KEYS_MAX`] ahead; a key is deleted once used,
//! so a replayed ciphertext is refused.
//!
//! Like the rest of the crate this does no I/O and draws no randomness: chain seeds and
//! ephemeral secrets are handed in.

use crate::ids::{ChatId, DeviceId, MessageId};
use crate::keys::{sign_in_context, verify_in_context, Signature, SignatureError};
use crate::relay::{self, SealError, SealedEnvelope};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use ed25519_dalek::SigningKey;
use sha2::Sha256;
use std::collections::BTreeMap;

/// Version byte of [`EncryptedMessage`] and [`SenderKeyDistribution`].
pub const VERSION: u8 = 1;
/// Most iterations a receiver ratchets ahead to reach a message (and skipped keys it keeps):
/// a bound on the work and memory one forged iteration number can cost.
pub const SKIPPED_KEYS_MAX: u32 = 2_000;
/// Largest plaintext one message may carry (a message body with its attachment keys).
pub const PLAINTEXT_BYTES_MAX: usize = 64 * 1024;
/// The AES-GCM tag.
pub const TAG_BYTES: usize = 16;

const MESSAGE_KEY_INFO: &[u8] = b"confab/v1/e2ee/message-key";
const CHAIN_KEY_INFO: &[u8] = b"confab/v1/e2ee/chain-key";
const MESSAGE_CONTEXT: &[u8] = b"confab/v1/e2ee/message";
const DISTRIBUTION_CONTEXT: &[u8] = b"confab/v1/e2ee/sender-key";

/// Why a message or a distribution was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E2eeError {
    #[error("malformed: {0}")]
    Malformed(&'static str),
    #[error("unsupported version {0}")]
    Version(u8),
    #[error("the message is from another chain (chat, device or epoch) than this one")]
    WrongChain,
    #[error("the sending device's signature does not verify")]
    Signature(#[from] SignatureError),
    #[error("the message does not decrypt (changed, or bound to another message)")]
    Decrypt,
    #[error("iteration {0} was already read or is older than this device's copy of the chain")]
    Replayed(u32),
    #[error("iteration {iteration} is more than {SKIPPED_KEYS_MAX} ahead of {next}")]
    TooFarAhead { iteration: u32, next: u32 },
    #[error("the plaintext is longer than {PLAINTEXT_BYTES_MAX} bytes")]
    TooLarge,
    #[error("the chain is exhausted: start a new epoch")]
    Exhausted,
    #[error("the distribution is for another device")]
    NotForThisDevice,
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// One chain: a device's messages to a chat within one key epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainId {
    pub chat: ChatId,
    pub device: DeviceId,
    pub epoch: u64,
}

/// The AES-256-GCM key and nonce of one iteration.
#[derive(Clone, Copy)]
struct MessageKey {
    key: [u8; 32],
    nonce: [u8; 12],
}

/// One step of the ratchet: the message key of an iteration and the chain key after it.
struct Step {
    message: MessageKey,
    next: [u8; 32],
}

/// HKDF-SHA256 (extract with no salt, then expand) of the chain key: what WebCrypto's `HKDF`
/// derives, so the browser computes the same steps. The lengths used cannot fail.
fn step(chain_key: &[u8; 32]) -> Result<Step, E2eeError> {
    let hkdf_error = |_| E2eeError::Malformed("hkdf length");
    let hk = hkdf::Hkdf::<Sha256>::new(None, chain_key);
    let mut message = [0u8; 44];
    hk.expand(MESSAGE_KEY_INFO, &mut message).map_err(hkdf_error)?;
    let mut next = [0u8; 32];
    hk.expand(CHAIN_KEY_INFO, &mut next).map_err(hkdf_error)?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&message[..32]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&message[32..]);
    Ok(Step { message: MessageKey { key, nonce }, next })
}

/// `version ‖ chat (16) ‖ message (20) ‖ device (16) ‖ epoch (u64 BE) ‖ iteration (u32 BE)`.
fn associated_data(chain: &ChainId, message: &MessageId, iteration: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + 16 + 20 + 16 + 8 + 4);
    aad.push(VERSION);
    aad.extend_from_slice(chain.chat.as_bytes());
    aad.extend_from_slice(message.as_bytes());
    aad.extend_from_slice(chain.device.as_bytes());
    aad.extend_from_slice(&chain.epoch.to_be_bytes());
    aad.extend_from_slice(&iteration.to_be_bytes());
    aad
}

fn signed_part(aad: &[u8], ciphertext: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(aad.len() + ciphertext.len());
    payload.extend_from_slice(aad);
    payload.extend_from_slice(ciphertext);
    payload
}

/// An encrypted message as stored in the history bucket. The chat and message id are not in
/// it: they are where it is stored, and the associated data binds them.
///
/// Encoding: `version (1) ‖ device (16) ‖ epoch (u64 BE) ‖ iteration (u32 BE) ‖
/// ciphertext with tag ‖ signature (64)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedMessage {
    pub device: DeviceId,
    pub epoch: u64,
    pub iteration: u32,
    pub ciphertext: Vec<u8>,
    pub signature: Signature,
}

impl EncryptedMessage {
    const HEADER_BYTES: usize = 1 + 16 + 8 + 4;

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::HEADER_BYTES + self.ciphertext.len() + 64);
        out.push(VERSION);
        out.extend_from_slice(self.device.as_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.iteration.to_be_bytes());
        out.extend_from_slice(&self.ciphertext);
        out.extend_from_slice(&self.signature.0);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, E2eeError> {
        let rest = after_version(bytes)?;
        if bytes.len() < Self::HEADER_BYTES + TAG_BYTES + 64 {
            return Err(E2eeError::Malformed("shorter than a header, a tag and a signature"));
        }
        if bytes.len() > Self::HEADER_BYTES + PLAINTEXT_BYTES_MAX + TAG_BYTES + 64 {
            return Err(E2eeError::TooLarge);
        }
        let device = DeviceId::from_slice(&rest[..16]).ok_or(E2eeError::Malformed("device"))?;
        let epoch = u64::from_be_bytes(rest[16..24].try_into().map_err(|_| malformed())?);
        let iteration = u32::from_be_bytes(rest[24..28].try_into().map_err(|_| malformed())?);
        let (ciphertext, signature) = rest[28..].split_at(rest.len() - 28 - 64);
        let signature = Signature(signature.try_into().map_err(|_| malformed())?);
        Ok(Self { device, epoch, iteration, ciphertext: ciphertext.to_vec(), signature })
    }
}

/// The bytes after the leading version byte, which must be [`VERSION`].
fn after_version(bytes: &[u8]) -> Result<&[u8], E2eeError> {
    match bytes.split_first() {
        None => Err(E2eeError::Malformed("empty")),
        Some((&VERSION, rest)) => Ok(rest),
        Some((&version, _)) => Err(E2eeError::Version(version)),
    }
}

fn malformed() -> E2eeError {
    E2eeError::Malformed("field length")
}

/// The sending side of a chain, held only by its device.
pub struct SenderChain {
    id: ChainId,
    chain_key: [u8; 32],
    iteration: u32,
    signing: SigningKey,
}

impl SenderChain {
    /// A new chain from 32 fresh random bytes (`seed`) and the device's Ed25519 secret key.
    pub fn new(id: ChainId, seed: [u8; 32], device_signing_secret: [u8; 32]) -> Self {
        Self {
            id,
            chain_key: seed,
            iteration: 0,
            signing: SigningKey::from_bytes(&device_signing_secret),
        }
    }

    pub fn id(&self) -> ChainId {
        self.id
    }

    /// The next iteration this chain will use.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// Encrypts and signs `plaintext` as the message `message` of the chain's chat, and moves
    /// the chain on (the key is not kept: the sender cannot decrypt it again).
    pub fn encrypt(
        &mut self,
        message: &MessageId,
        plaintext: &[u8],
    ) -> Result<EncryptedMessage, E2eeError> {
        if plaintext.len() > PLAINTEXT_BYTES_MAX {
            return Err(E2eeError::TooLarge);
        }
        let iteration = self.iteration;
        let next_iteration = iteration.checked_add(1).ok_or(E2eeError::Exhausted)?;
        let Step { message: MessageKey { key, nonce }, next } = step(&self.chain_key)?;
        let aad = associated_data(&self.id, message, iteration);
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| E2eeError::Malformed("key"))?;
        let ciphertext = cipher
            .encrypt((&nonce).into(), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| E2eeError::TooLarge)?;
        let signature =
            sign_in_context(&self.signing, MESSAGE_CONTEXT, &signed_part(&aad, &ciphertext));
        self.chain_key = next;
        self.iteration = next_iteration;
        Ok(EncryptedMessage {
            device: self.id.device,
            epoch: self.id.epoch,
            iteration,
            ciphertext,
            signature,
        })
    }

    /// The chain's current state for `recipient`, signed by this device. It lets the recipient
    /// read this chain's messages from the current iteration on, not the earlier ones.
    pub fn distribution(&self, recipient: DeviceId) -> SenderKeyDistribution {
        let mut distribution = SenderKeyDistribution {
            recipient,
            chain: self.id,
            iteration: self.iteration,
            chain_key: self.chain_key,
            signature: Signature([0; 64]),
        };
        distribution.signature =
            sign_in_context(&self.signing, DISTRIBUTION_CONTEXT, &distribution.signed_payload());
        distribution
    }
}

/// A chain's state handed to one member device, inside a sealed to-device message.
///
/// Encoding (also the signed payload, less the signature): `version (1) ‖ recipient device (16)
/// ‖ chat (16) ‖ sending device (16) ‖ epoch (u64 BE) ‖ iteration (u32 BE) ‖ chain key (32) ‖
/// signature (64)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderKeyDistribution {
    pub recipient: DeviceId,
    pub chain: ChainId,
    pub iteration: u32,
    pub chain_key: [u8; 32],
    pub signature: Signature,
}

impl SenderKeyDistribution {
    pub const BYTES: usize = 1 + 16 + 16 + 16 + 8 + 4 + 32 + 64;

    fn signed_payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::BYTES);
        out.push(VERSION);
        out.extend_from_slice(self.recipient.as_bytes());
        out.extend_from_slice(self.chain.chat.as_bytes());
        out.extend_from_slice(self.chain.device.as_bytes());
        out.extend_from_slice(&self.chain.epoch.to_be_bytes());
        out.extend_from_slice(&self.iteration.to_be_bytes());
        out.extend_from_slice(&self.chain_key);
        out
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.signed_payload();
        out.extend_from_slice(&self.signature.0);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, E2eeError> {
        after_version(bytes)?;
        if bytes.len() != Self::BYTES {
            return Err(E2eeError::Malformed("a sender key distribution is 157 bytes"));
        }
        let id = |range: std::ops::Range<usize>| {
            DeviceId::from_slice(&bytes[range]).ok_or(E2eeError::Malformed("device"))
        };
        let recipient = id(1..17)?;
        let chat = ChatId::from_slice(&bytes[17..33]).ok_or(E2eeError::Malformed("chat"))?;
        let device = id(33..49)?;
        let epoch = u64::from_be_bytes(bytes[49..57].try_into().map_err(|_| malformed())?);
        let iteration = u32::from_be_bytes(bytes[57..61].try_into().map_err(|_| malformed())?);
        let chain_key: [u8; 32] = bytes[61..93].try_into().map_err(|_| malformed())?;
        let signature = Signature(bytes[93..157].try_into().map_err(|_| malformed())?);
        Ok(Self {
            recipient,
            chain: ChainId { chat, device, epoch },
            iteration,
            chain_key,
            signature,
        })
    }

    /// Seals the distribution to the recipient device's X25519 key (`ephemeral_secret`: 32
    /// fresh random bytes, never reused).
    pub fn seal(
        &self,
        recipient_sealing_key: &[u8; 32],
        ephemeral_secret: [u8; 32],
    ) -> Result<SealedEnvelope, E2eeError> {
        Ok(relay::seal(recipient_sealing_key, &self.to_bytes(), ephemeral_secret)?)
    }

    /// Opens a sealed distribution as device `me` and checks it was signed by the sending
    /// device's Ed25519 key `sender_signing_key` (from the sender's verified device list) and is
    /// meant for `me`.
    pub fn open(
        me: DeviceId,
        my_sealing_secret: [u8; 32],
        sender_signing_key: &[u8; 32],
        envelope: &SealedEnvelope,
    ) -> Result<Self, E2eeError> {
        let distribution = Self::from_bytes(&relay::open(my_sealing_secret, envelope)?)?;
        verify_in_context(
            sender_signing_key,
            DISTRIBUTION_CONTEXT,
            &distribution.signed_payload(),
            &distribution.signature,
        )?;
        if distribution.recipient != me {
            return Err(E2eeError::NotForThisDevice);
        }
        Ok(distribution)
    }
}

/// The receiving side of a chain, held by each member device that got its distribution.
pub struct ReceiverChain {
    id: ChainId,
    sender_signing_key: [u8; 32],
    /// The chain key of iteration `next`.
    chain_key: [u8; 32],
    next: u32,
    /// Keys and nonces of iterations below `next` not read yet (arrived out of order).
    skipped: BTreeMap<u32, MessageKey>,
}

impl ReceiverChain {
    /// A receiving chain from a distribution that [`SenderKeyDistribution::open`] checked, and
    /// the sending device's Ed25519 public key it was checked with.
    pub fn new(distribution: &SenderKeyDistribution, sender_signing_key: [u8; 32]) -> Self {
        Self {
            id: distribution.chain,
            sender_signing_key,
            chain_key: distribution.chain_key,
            next: distribution.iteration,
            skipped: BTreeMap::new(),
        }
    }

    pub fn id(&self) -> ChainId {
        self.id
    }

    /// Skipped keys held (at most [`SKIPPED_KEYS_MAX`]).
    pub fn skipped_keys(&self) -> usize {
        self.skipped.len()
    }

    /// Checks and decrypts `encrypted`, stored as message `message` of chat `chat`. On any
    /// error the chain is unchanged.
    pub fn decrypt(
        &mut self,
        chat: &ChatId,
        message: &MessageId,
        encrypted: &EncryptedMessage,
    ) -> Result<Vec<u8>, E2eeError> {
        if *chat != self.id.chat
            || encrypted.device != self.id.device
            || encrypted.epoch != self.id.epoch
        {
            return Err(E2eeError::WrongChain);
        }
        let iteration = encrypted.iteration;
        let aad = associated_data(&self.id, message, iteration);
        verify_in_context(
            &self.sender_signing_key,
            MESSAGE_CONTEXT,
            &signed_part(&aad, &encrypted.ciphertext),
            &encrypted.signature,
        )?;
        let (MessageKey { key, nonce }, advance) = self.key_for(iteration)?;
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| E2eeError::Malformed("key"))?;
        let plaintext = cipher
            .decrypt((&nonce).into(), Payload { msg: &encrypted.ciphertext, aad: &aad })
            .map_err(|_| E2eeError::Decrypt)?;
        // Only a message that decrypted moves the chain or uses up a skipped key.
        match advance {
            None => {
                self.skipped.remove(&iteration);
            }
            Some(Advance { skipped, chain_key }) => {
                self.skipped.extend(skipped);
                self.chain_key = chain_key;
                self.next = iteration + 1;
                while self.skipped.len() > SKIPPED_KEYS_MAX as usize {
                    self.skipped.pop_first();
                }
            }
        }
        Ok(plaintext)
    }

    /// The message key of `iteration`, and, when it is at or past `next`, how the chain moves
    /// (applied only once the message decrypted).
    fn key_for(&self, iteration: u32) -> Result<(MessageKey, Option<Advance>), E2eeError> {
        if iteration < self.next {
            let key = self.skipped.get(&iteration).ok_or(E2eeError::Replayed(iteration))?;
            return Ok((*key, None));
        }
        if iteration - self.next > SKIPPED_KEYS_MAX {
            return Err(E2eeError::TooFarAhead { iteration, next: self.next });
        }
        let mut chain_key = self.chain_key;
        let mut skipped = Vec::new();
        for i in self.next..iteration {
            let Step { message, next } = step(&chain_key)?;
            skipped.push((i, message));
            chain_key = next;
        }
        let Step { message, next } = step(&chain_key)?;
        Ok((message, Some(Advance { skipped, chain_key: next })))
    }
}

/// How a receiving chain moves to reach a message at or past its next iteration.
struct Advance {
    skipped: Vec<(u32, MessageKey)>,
    chain_key: [u8; 32],
}
