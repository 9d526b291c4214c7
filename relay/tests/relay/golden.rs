//! Golden fixtures of every relay wire format, byte for byte (`relay/tests/fixtures/`): the
//! sealed envelope, the capability token, the signed enqueue and renounce requests, the device
//! challenge answer and the stored envelope record. A fixture changes only when a format changes on
//! purpose; `CONFAB_BLESS=1 cargo test -p confab-relay --test relay golden` regenerates them.

use confab_protocol::relay::{
    b64_encode, device_auth_payload, open, seal, x25519_public, CapabilityId, CapabilityToken,
    ChallengePurpose, DeviceKey, EnqueueFields, EnqueueRequest, EnvelopeId, QueueId,
    RenounceRequest, SealedEnvelope, Urgency,
};
use confab_protocol::OrgKey;
use confab_relay::store::StoredEnvelope;
use serde_json::{json, Value};
use std::path::PathBuf;

fn check(name: &str, value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("json") + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    if std::env::var_os("CONFAB_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).expect("write fixture");
        return;
    }
    let stored = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (CONFAB_BLESS=1 creates it)", path.display()));
    assert!(
        stored == text,
        "{name} differs from the fixture:\n--- stored\n{stored}\n--- now\n{text}"
    );
}

#[test]
fn relay_wire_formats() {
    let org = OrgKey::from_seed([7; 32]);
    let device = DeviceKey::from_seed([8; 32]);
    let recipient_secret = [9u8; 32];
    let recipient = x25519_public(recipient_secret);
    let queue = QueueId::from_bytes([0x11; 16]);
    let sealed = seal(&recipient, b"hello, device", [10u8; 32]).expect("seal");
    let sealed_bytes = sealed.encode();
    assert_eq!(
        open(recipient_secret, &SealedEnvelope::decode(&sealed_bytes).expect("decode"))
            .expect("open"),
        b"hello, device"
    );
    let capability = CapabilityToken::issue(
        &device,
        queue,
        CapabilityId::from_bytes([0x22; 16]),
        org.id(),
        1_800_000_000_000,
    );
    let renounce = RenounceRequest::sign(&org, capability.clone(), 1_700_000_000_000);
    renounce.verify_signature().expect("renounce verifies");
    let request = EnqueueRequest::sign(
        &org,
        EnqueueFields {
            queue,
            envelope_id: EnvelopeId::from_bytes([0x33; 16]),
            sent_ms: 1_700_000_000_000,
            ttl_s: 86_400,
            urgency: Urgency::High,
            topic: Some("chat-1".parse().expect("topic")),
            sealed: sealed_bytes.clone(),
            capability: capability.clone(),
        },
    );
    assert_eq!(request.verify_signature(), Ok(()));
    assert_eq!(capability.verify(&device.public()), Ok(()));
    let challenge = [0x44u8; 32];
    let answer = device.answer(ChallengePurpose::Fetch, &challenge, Some(queue));
    let stored = StoredEnvelope {
        envelope_id: request.envelope_id,
        sender: org.id(),
        received_ms: 1_700_000_000_100,
        expires_ms: 1_700_086_400_100,
        keep_until_ms: 1_700_087_000_100,
        urgency: Urgency::High,
        topic: request.topic.clone(),
        sealed: sealed_bytes.clone(),
    };
    assert_eq!(StoredEnvelope::decode(&stored.encode()).expect("decode"), stored);
    check(
        "relay_wire.json",
        &json!({
            "org_seed": hex::encode([7u8; 32]),
            "device_seed": hex::encode([8u8; 32]),
            "recipient_x25519_secret": hex::encode(recipient_secret),
            "recipient_x25519_public": hex::encode(recipient),
            "sealed_envelope": {
                "plaintext": "hello, device",
                "ephemeral_secret": hex::encode([10u8; 32]),
                "encoded": hex::encode(&sealed_bytes),
            },
            "capability_token": {
                "encoded": hex::encode(capability.encode()),
                "text": capability.to_text(),
            },
            "enqueue_request": {
                "signed_payload": hex::encode(request.signed_payload()),
                "json": serde_json::to_value(&request).expect("json"),
            },
            "device_auth": {
                "purpose": "fetch",
                "challenge": b64_encode(&challenge),
                "payload": hex::encode(device_auth_payload(ChallengePurpose::Fetch, &challenge, Some(queue), &device.public())),
                "signature": b64_encode(&answer.0),
            },
            "stored_envelope": hex::encode(stored.encode()),
            "renounce_request": {
                "signed_payload": hex::encode(renounce.signed_payload()),
                "json": serde_json::to_value(&renounce).expect("json"),
            },
        }),
    );
}
