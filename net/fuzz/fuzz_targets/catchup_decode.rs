//! Fuzzes the catch-up decoders (document and chat index requests, pages, refusals and chat
//! indexes): they must never panic, never accept bytes beyond the limits, and every accepted
//! message must re-encode to exactly the input (one encoding per message).
#![no_main]

use confab_net::catchup::{
    decode_request, decode_response, encode_request, encode_response, Request,
};
use confab_net::{CatchupLimits, CatchupResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = CatchupLimits {
        max_heads: 8,
        max_cursor_bytes: 16,
        max_changes_per_page: 16,
        max_change_bytes: 256,
        max_response_bytes: 4096,
        max_index_chats: 32,
    };
    if let Ok(request) = decode_request(data, &limits) {
        match &request {
            Request::Document(document) => assert!(document.heads.len() <= limits.max_heads),
            Request::Index => assert_eq!(data, [confab_net::catchup::REQUEST_INDEX]),
            Request::Poke => assert_eq!(data, [confab_net::catchup::REQUEST_POKE]),
        }
        assert_eq!(encode_request(&request, &limits).as_deref(), Ok(data));
    }
    if let Ok(response) = decode_response(data, &limits) {
        if let CatchupResponse::Index(chats) = &response {
            assert!(chats.len() <= limits.max_index_chats);
            assert!(chats.windows(2).all(|pair| pair[0] < pair[1]));
        }
        assert_eq!(encode_response(&response, &limits).as_deref(), Ok(data));
    }
});
