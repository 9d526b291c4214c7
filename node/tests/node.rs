//! The node's own integration tests: the router driven with `oneshot`, the engine driven
//! directly, on a real sled store in a temporary directory.

mod node {
    pub mod api;
    pub mod harness;
    pub mod live;
    pub mod media;
    pub mod rebuild;
    pub mod search;
}
