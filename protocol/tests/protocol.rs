//! Integration tests of `confab-protocol`, one binary with a module per concern:
//!
//! - `end_to_end`: honest organisations writing, merging and replicating through the validator;
//! - `rejections`: every refusal, asserting the exact [`confab_protocol::Rejection`];
//! - `attacks`: the crafted automerge changes of design §4, shown rejected before `apply`;
//! - `properties`: proptest properties against a small model;
//! - `e2ee`: sender chains: round trips, the test vector, forged, replayed, moved and
//!   re-attributed ciphertexts, out-of-order delivery against a model;
//! - `golden`: byte-for-byte fixtures of every encoding (`CONFAB_BLESS=1` regenerates them).

#[path = "protocol/attacks.rs"]
mod attacks;
#[path = "protocol/e2ee.rs"]
mod e2ee;
#[path = "protocol/end_to_end.rs"]
mod end_to_end;
#[path = "protocol/golden.rs"]
mod golden;
#[path = "protocol/properties.rs"]
mod properties;
#[path = "protocol/rejections.rs"]
mod rejections;
#[path = "protocol/support.rs"]
mod support;
