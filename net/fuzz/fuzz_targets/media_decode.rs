//! Fuzzes the media decoders (requests, found blobs, refusals): they must never panic, never
//! accept a blob beyond the limit, and every accepted message must re-encode to exactly the
//! input (one encoding per message).
#![no_main]

use confab_net::media::{
    decode_request, decode_response, encode_request, encode_response, REQUEST_BYTES,
};
use confab_net::MediaResponse;
use libfuzzer_sys::fuzz_target;

const MAX_BYTES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_request(data) {
        assert_eq!(data.len(), REQUEST_BYTES);
        assert_eq!(encode_request(&request), data);
    }
    if let Ok(response) = decode_response(data, MAX_BYTES) {
        if let MediaResponse::Found(bytes) = &response {
            assert!(bytes.len() <= MAX_BYTES);
        }
        assert_eq!(encode_response(&response, MAX_BYTES).as_deref(), Ok(data));
    }
});
