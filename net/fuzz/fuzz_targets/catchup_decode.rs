//! Fuzzes the catch-up decoders: they must never panic, never accept bytes beyond the limits,
//! and every accepted message must re-encode to exactly the input (one encoding per message).
#![no_main]

use confab_net::catchup::{decode_request, decode_response, encode_request, encode_response};
use confab_net::CatchupLimits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = CatchupLimits {
        max_heads: 8,
        max_cursor_bytes: 16,
        max_changes_per_page: 16,
        max_change_bytes: 256,
        max_response_bytes: 4096,
    };
    if let Ok(request) = decode_request(data, &limits) {
        assert!(request.heads.len() <= limits.max_heads);
        assert_eq!(encode_request(&request, &limits).as_deref(), Ok(data));
    }
    if let Ok(response) = decode_response(data, &limits) {
        assert_eq!(encode_response(&response, &limits).as_deref(), Ok(data));
    }
});
