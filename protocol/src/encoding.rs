//! Text encodings shared by every identifier.
//!
//! Binary ids are written in lowercase base32hex without padding (`0-9a-v`): it is case-free,
//! URL-safe, and for fixed-length values it keeps the byte order, so message ids sort by time as
//! strings as well as bytes.

use data_encoding::{Encoding, Specification};
use std::sync::OnceLock;

fn base32hex_lower() -> &'static Encoding {
    static ENCODING: OnceLock<Encoding> = OnceLock::new();
    ENCODING.get_or_init(|| {
        let mut spec = Specification::new();
        spec.symbols.push_str("0123456789abcdefghijklmnopqrstuv");
        // A valid static specification; failure here would be a programming error caught by
        // every test run.
        spec.encoding().unwrap_or_else(|_| data_encoding::BASE32HEX_NOPAD.clone())
    })
}

/// Encodes bytes as lowercase base32hex without padding.
pub fn encode(bytes: &[u8]) -> String {
    base32hex_lower().encode(bytes)
}

/// Decodes lowercase base32hex without padding; `None` for anything else (including uppercase,
/// so that every id has exactly one spelling).
pub fn decode(text: &str) -> Option<Vec<u8>> {
    base32hex_lower().decode(text.as_bytes()).ok()
}

/// Number of characters `encode` produces for `len` bytes.
pub const fn encoded_len(len: usize) -> usize {
    (len * 8).div_ceil(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        let a = encode(&[0, 1, 2, 255]);
        assert_eq!(decode(&a).as_deref(), Some(&[0, 1, 2, 255][..]));
        assert!(encode(&[1, 0]) < encode(&[1, 1]));
        assert!(encode(&[1, 255]) < encode(&[2, 0]));
        assert_eq!(decode("ABC"), None);
        assert_eq!(encoded_len(16), 26);
        assert_eq!(encoded_len(20), 32);
        assert_eq!(encoded_len(32), 52);
    }
}
