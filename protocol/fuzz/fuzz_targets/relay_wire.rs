//! Feeds arbitrary bytes to every relay wire decoder that foreign bytes reach: sealed envelopes
//! (decoded and opened, as a device does), capability tokens (binary and text, then verified,
//! as the relay and the node do), and the JSON of enqueue and renounce requests and device
//! challenge answers (then their signatures checked). None may panic, whatever the verdict.
#![no_main]

use confab_protocol::relay::{
    b64_decode, open, verify_device_auth, CapabilityToken, ChallengePurpose, DeviceAuth, DeviceKey,
    EnqueueRequest, RenounceRequest, SealedEnvelope,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = SealedEnvelope::decode(data) {
        let _ = open([7; 32], &envelope);
    }
    let device = DeviceKey::from_seed([9; 32]).public();
    if let Ok(token) = CapabilityToken::decode(data) {
        let _ = token.verify(&device);
        let _ = CapabilityToken::from_text(&token.to_text());
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = CapabilityToken::from_text(text);
    let _ = b64_decode(text);
    if let Ok(request) = serde_json::from_str::<EnqueueRequest>(text) {
        let _ = request.verify_signature();
        let _ = request.capability.verify(&device);
    }
    if let Ok(request) = serde_json::from_str::<RenounceRequest>(text) {
        let _ = request.verify_signature();
    }
    if let Ok(auth) = serde_json::from_str::<DeviceAuth>(text) {
        if let Ok(challenge) = <[u8; 32]>::try_from(auth.challenge.as_slice()) {
            let _ = verify_device_auth(&device, ChallengePurpose::Fetch, &challenge, None, &auth.signature);
        }
    }
});
