//! Organisation keys and domain-separated ed25519 signatures.
//!
//! Every signature covers `context ‖ 0x00 ‖ payload`, where the context string names the kind of
//! thing signed, so a signature over one kind can never be replayed as another. Verification uses
//! `verify_strict`, which rejects small-order keys and non-canonical signatures.

use crate::ids::OrgId;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use std::fmt;

/// The kinds of thing an organisation signs. Each has a fixed context string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// A change to a channel document (see `signed_change`).
    SignedChange,
}

impl Domain {
    pub const fn context(self) -> &'static [u8] {
        match self {
            Domain::SignedChange => b"confab/v1/signed-change",
        }
    }
}

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", crate::encoding::encode(&self.0[..8]))
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signer's public key is not a valid ed25519 point")]
    BadKey,
    #[error("the signature does not verify")]
    Invalid,
}

/// An organisation's signing key. Its public half is the [`OrgId`].
pub struct OrgKey {
    signing: SigningKey,
    id: OrgId,
}

impl OrgKey {
    /// Builds the key from its 32-byte secret seed (handed in: this crate draws no randomness).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let id = OrgId::from_bytes(signing.verifying_key().to_bytes());
        Self { signing, id }
    }

    pub fn id(&self) -> OrgId {
        self.id
    }

    /// The secret seed, for persisting the key.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn sign(&self, domain: Domain, payload: &[u8]) -> Signature {
        sign_in_context(&self.signing, domain.context(), payload)
    }

    /// Signs under another context string (the relay's domains, `crate::relay`).
    pub(crate) fn sign_context(&self, context: &[u8], payload: &[u8]) -> Signature {
        sign_in_context(&self.signing, context, payload)
    }
}

impl fmt::Debug for OrgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgKey({})", self.id)
    }
}

/// Verifies `signature` by `signer` over `payload` in `domain`, strictly.
pub fn verify(
    signer: &OrgId,
    domain: Domain,
    payload: &[u8],
    signature: &Signature,
) -> Result<(), SignatureError> {
    verify_in_context(signer.as_bytes(), domain.context(), payload, signature)
}

/// Signs `context ‖ 0x00 ‖ payload`.
pub(crate) fn sign_in_context(key: &SigningKey, context: &[u8], payload: &[u8]) -> Signature {
    Signature(key.sign(&in_context(context, payload)).to_bytes())
}

/// Verifies a signature by the ed25519 public key `signer` over `context ‖ 0x00 ‖ payload`,
/// strictly.
pub(crate) fn verify_in_context(
    signer: &[u8; 32],
    context: &[u8],
    payload: &[u8],
    signature: &Signature,
) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(signer).map_err(|_| SignatureError::BadKey)?;
    let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(&in_context(context, payload), &signature)
        .map_err(|_| SignatureError::Invalid)
}

fn in_context(context: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(context.len() + 1 + payload.len());
    message.extend_from_slice(context);
    message.push(0);
    message.extend_from_slice(payload);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_domain_separation() {
        let key = OrgKey::from_seed([1; 32]);
        let signature = key.sign(Domain::SignedChange, b"payload");
        assert_eq!(verify(&key.id(), Domain::SignedChange, b"payload", &signature), Ok(()));
        assert_eq!(
            verify(&key.id(), Domain::SignedChange, b"payloaD", &signature),
            Err(SignatureError::Invalid)
        );
        let other = OrgKey::from_seed([2; 32]);
        assert_eq!(
            verify(&other.id(), Domain::SignedChange, b"payload", &signature),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn small_order_keys_are_refused() {
        // The identity point: a small-order key that plain `verify` can be tricked with.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let signer = OrgId::from_bytes(identity);
        let mut forged = [0u8; 64];
        forged[0] = 1;
        assert!(verify(&signer, Domain::SignedChange, b"x", &Signature(forged)).is_err());
    }
}
