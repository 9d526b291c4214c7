//! Randomness for ids, salts, tokens and actor suffixes, from the operating system.

use sha2::{Digest, Sha256};

/// `N` bytes from the OS generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator failing is not recoverable; fall back to time-derived bytes rather than
    // panic, and log loudly.
    if let Err(error) = getrandom::fill(&mut bytes) {
        tracing::error!(%error, "OS random generator failed");
        let seed =
            Sha256::digest(format!("{:?}{}", std::time::SystemTime::now(), std::process::id()));
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = seed[i % 32];
        }
    }
    bytes
}
