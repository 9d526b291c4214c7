//! `SignedChange`: an automerge change with its document, epoch and the writing organisation's
//! signature. This is the unit that is stored, gossiped and served for catch-up; signatures are
//! kept beside the changes so any node can re-serve history with the original authors' proofs.
//!
//! Wire format (all integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `CFSC` |
//! | 1 | version, `1` |
//! | 20 | document id: chat id (16) ‖ document index (4; 0 = control, n = bucket n) |
//! | 8 | epoch the writer claims membership at |
//! | 32 | signer: the writing organisation's id |
//! | 64 | ed25519 signature, domain `confab/v1/signed-change`, over `doc id ‖ epoch ‖ change hash` |
//! | 4 | length of the change |
//! | n | the automerge change chunk (uncompressed) |

use crate::ids::{DocId, OrgId};
use crate::keys::{self, Domain, OrgKey, Signature, SignatureError};

const MAGIC: &[u8; 4] = b"CFSC";
const VERSION: u8 = 1;
/// Bytes before the change itself.
pub const HEADER_LEN: usize = 4 + 1 + DocId::LEN + 8 + 32 + 64 + 4;

/// A signed change, as stored and sent.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedChange {
    pub doc: DocId,
    pub epoch: u64,
    pub signer: OrgId,
    pub signature: Signature,
    /// The raw automerge change chunk.
    pub change: Vec<u8>,
}

impl std::fmt::Debug for SignedChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedChange")
            .field("doc", &self.doc)
            .field("epoch", &self.epoch)
            .field("signer", &self.signer)
            .field("change_len", &self.change.len())
            .finish()
    }
}

/// Why bytes are not a `SignedChange`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedChangeError {
    #[error("signed change is {len} bytes; the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("not a signed change (bad magic)")]
    BadMagic,
    #[error("unsupported signed change version {0}")]
    UnsupportedVersion(u8),
    #[error("signed change is truncated")]
    Truncated,
    #[error("signed change has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("bad document id")]
    BadDocId,
}

impl SignedChange {
    /// Signs `change` (raw chunk bytes whose automerge hash is `change_hash`) for `doc` at `epoch`.
    pub fn sign(
        key: &OrgKey,
        doc: DocId,
        epoch: u64,
        change: Vec<u8>,
        change_hash: &[u8; 32],
    ) -> Self {
        let signature = key.sign(Domain::SignedChange, &signing_payload(&doc, epoch, change_hash));
        Self { doc, epoch, signer: key.id(), signature, change }
    }

    /// Checks the signature against the given automerge change hash, strictly.
    pub fn verify(&self, change_hash: &[u8; 32]) -> Result<(), SignatureError> {
        keys::verify(
            &self.signer,
            Domain::SignedChange,
            &signing_payload(&self.doc, self.epoch, change_hash),
            &self.signature,
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.change.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.doc.to_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(self.signer.as_bytes());
        out.extend_from_slice(&self.signature.0);
        // Length fits: changes are capped far below 4 GiB by validation limits.
        out.extend_from_slice(&(self.change.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.change);
        out
    }

    /// Decodes, refusing anything over `size_bytes_max` before looking further.
    pub fn decode(bytes: &[u8], size_bytes_max: usize) -> Result<Self, SignedChangeError> {
        if bytes.len() > size_bytes_max {
            return Err(SignedChangeError::TooLarge { len: bytes.len(), max: size_bytes_max });
        }
        if bytes.len() < HEADER_LEN {
            return Err(if bytes.len() >= 4 && &bytes[..4] != MAGIC {
                SignedChangeError::BadMagic
            } else {
                SignedChangeError::Truncated
            });
        }
        if &bytes[..4] != MAGIC {
            return Err(SignedChangeError::BadMagic);
        }
        if bytes[4] != VERSION {
            return Err(SignedChangeError::UnsupportedVersion(bytes[4]));
        }
        let mut at = 5;
        let mut take = |n: usize| {
            let slice = &bytes[at..at + n];
            at += n;
            slice
        };
        let doc = DocId::from_bytes(take(DocId::LEN)).ok_or(SignedChangeError::BadDocId)?;
        let epoch = u64::from_be_bytes(fixed(take(8)));
        let signer = OrgId::from_bytes(fixed(take(32)));
        let signature = Signature(fixed(take(64)));
        let len = u32::from_be_bytes(fixed(take(4))) as usize;
        let rest = &bytes[HEADER_LEN..];
        if rest.len() < len {
            return Err(SignedChangeError::Truncated);
        }
        if rest.len() > len {
            return Err(SignedChangeError::TrailingBytes(rest.len() - len));
        }
        Ok(Self { doc, epoch, signer, signature, change: rest.to_vec() })
    }
}

fn fixed<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    out
}

fn signing_payload(doc: &DocId, epoch: u64, change_hash: &[u8; 32]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(DocId::LEN + 8 + 32);
    payload.extend_from_slice(&doc.to_bytes());
    payload.extend_from_slice(&epoch.to_be_bytes());
    payload.extend_from_slice(change_hash);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ChatId;

    fn sample() -> SignedChange {
        let key = OrgKey::from_seed([5; 32]);
        SignedChange::sign(
            &key,
            DocId::bucket(ChatId::from_bytes([1; 16]), 2),
            3,
            vec![1, 2, 3],
            &[9; 32],
        )
    }

    #[test]
    fn round_trip_and_verify() {
        let signed = sample();
        let bytes = signed.encode();
        assert_eq!(bytes.len(), HEADER_LEN + 3);
        let back = SignedChange::decode(&bytes, 1 << 20).unwrap();
        assert_eq!(back, signed);
        assert_eq!(back.verify(&[9; 32]), Ok(()));
        assert!(back.verify(&[8; 32]).is_err());
    }

    #[test]
    fn decode_refuses_bad_input() {
        let bytes = sample().encode();
        assert_eq!(
            SignedChange::decode(&bytes, 10),
            Err(SignedChangeError::TooLarge { len: bytes.len(), max: 10 })
        );
        assert_eq!(
            SignedChange::decode(&bytes[..bytes.len() - 1], 1 << 20),
            Err(SignedChangeError::Truncated)
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            SignedChange::decode(&longer, 1 << 20),
            Err(SignedChangeError::TrailingBytes(1))
        );
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(SignedChange::decode(&bad, 1 << 20), Err(SignedChangeError::BadMagic));
        let mut version = bytes;
        version[4] = 2;
        assert_eq!(
            SignedChange::decode(&version, 1 << 20),
            Err(SignedChangeError::UnsupportedVersion(2))
        );
        for len in 0..HEADER_LEN {
            assert!(SignedChange::decode(&sample().encode()[..len], 1 << 20).is_err());
        }
    }
}
