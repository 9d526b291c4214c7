//! Integration tests of `confab-relay`, one binary with a module per concern. Every test runs a
//! real relay on 127.0.0.1:0 with sled on disk (in this process, or the built binary for kill -9).
//!
//! - `queue`: enqueue/fetch/ack, idempotency, TTL, caps and overflow, topics, capabilities,
//!   signatures, rate limits, bad input;
//! - `device`: challenge authentication and the WebSocket;
//! - `crash`: kill -9 of the relay process (≥ 20 cycles), confidentiality of data and logs;
//! - `push`: Web Push against a fake push service and the independent referee;
//! - `robustness`: proptest-mutated bodies on every endpoint (4xx in the error shape, never 5xx);
//! - `golden`: byte-for-byte fixtures of the wire formats.

#[path = "relay/crash.rs"]
mod crash;
#[path = "relay/device.rs"]
mod device;
#[path = "relay/golden.rs"]
mod golden;
#[path = "relay/push.rs"]
mod push;
#[path = "relay/queue.rs"]
mod queue;
#[path = "relay/robustness.rs"]
mod robustness;
#[path = "relay/support.rs"]
mod support;
