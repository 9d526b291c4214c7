//! Confab's protocol core: identities, keys and signatures, the channel-document schema, signed
//! changes and the validation pipeline that every change passes before it reaches automerge.
//!
//! This crate does no I/O, reads no clock and draws no randomness: time and random bytes are
//! handed in by the caller. That keeps every decision here deterministic, so every honest node
//! that sees the same inputs decides the same, and it lets the logic run in simulation.

pub mod bucket;
pub mod control;
pub mod devices;
pub mod e2ee;
pub mod encoding;
pub mod hlc;
pub mod ids;
pub mod keys;
pub mod relay;
pub mod signed_change;
pub mod validate;

pub use hlc::{Hlc, HlcTime};
pub use ids::{ChatId, DeviceId, DocId, DocKind, IdError, MessageId, OrgId, UserId};
pub use keys::{Domain, OrgKey, Signature};
pub use signed_change::{SignedChange, SignedChangeError};
pub use validate::{
    Checked, DocValidator, Limits, Membership, PendingReason, Preverified, Rejection, Verdict,
};
