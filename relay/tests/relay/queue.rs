//! Queue semantics over real HTTP: enqueue/fetch/ack, idempotency, TTL expiry, caps and the
//! overflow signal, topic collapse, capability revocation, bad signatures, rate limits, and bad
//! input that is refused with a clear error while nothing already queued is lost.

use crate::support::*;
use confab_protocol::relay::{
    b64_encode, CapabilityToken, ChallengePurpose, EnvelopeId, QueueId, RenounceRequest, Urgency,
};
use confab_protocol::OrgKey;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn enqueue_fetch_ack() {
    let relay = TestRelay::start(|_| {}).await;
    let client = relay.client();
    let device = client.register().await;
    let org = org();
    let mut ids = Vec::new();
    for i in 0..5 {
        let send = Send::new(&org, &device, format!("message {i}").as_bytes());
        let answer = client.enqueue(&send.request()).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        assert_eq!(answer.body["status"], "queued");
        assert_eq!(answer.body["depth"], i + 1);
        // Stored, but this device has no push subscription to wake it.
        assert_eq!(answer.body["push"], "no_subscription");
        ids.push(send.envelope_id);
    }
    // Fetching does not delete: at-least-once until acknowledged.
    for _ in 0..2 {
        let got = client.drain(&device).await;
        assert_eq!(got.len(), 5);
        for (i, (id, plain)) in got.iter().enumerate() {
            assert_eq!(*id, ids[i], "oldest first");
            assert_eq!(plain, format!("message {i}").as_bytes());
        }
    }
    let answer = client.ack(&device, &ids[..3]).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["acked"], 3);
    assert_eq!(answer.body["depth"], 2);
    assert!(answer.body["next_challenge"].is_string());
    // Acknowledging again is harmless.
    assert_eq!(client.ack(&device, &ids[..3]).await.body["acked"], 0);
    // Ack inside fetch.
    let answer = client.fetch(&device, &ids[3..4]).await;
    assert_eq!(answer.body["acked"], 1);
    let got = open_all(&device, &answer.body);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, ids[4]);
    assert_eq!(client.metric("confab_relay_enqueued_total").await, 5);
    assert_eq!(client.metric("confab_relay_delivered_total").await, 4);
    assert_eq!(client.metric("confab_relay_queue_depth").await, 1);
    // Survives a restart.
    let dir = relay.stop().await;
    let relay = TestRelay::start_in(dir, |_| {}).await;
    let client = relay.client();
    let got = client.drain(&device).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, b"message 4");
    relay.stop().await;
}

#[tokio::test]
async fn enqueue_is_idempotent_by_envelope_id() {
    let relay = TestRelay::start(|_| {}).await;
    let client = relay.client();
    let device = client.register().await;
    let org = org();
    let send = Send::new(&org, &device, b"once");
    let request = send.request();
    assert_eq!(client.enqueue(&request).await.status, StatusCode::CREATED);
    let again = client.enqueue(&request).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.body["pending"], true);
    assert_eq!(again.body["push"], "no_subscription");
    // A re-signed request with the same id (a retry after a lost answer) is a duplicate too.
    let retry = client.enqueue(&send.request()).await;
    assert_eq!(retry.body["status"], "duplicate");
    assert_eq!(client.drain(&device).await.len(), 1);
    // After the device acknowledged it, a replay is still a duplicate and stores nothing.
    client.ack(&device, &[send.envelope_id]).await;
    let replay = client.enqueue(&request).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.body["status"], "duplicate");
    assert_eq!(replay.body["pending"], false);
    assert!(client.drain(&device).await.is_empty());
    assert_eq!(client.metric("confab_relay_duplicates_total").await, 3);
    relay.stop().await;
}

#[tokio::test]
async fn expired_envelopes_are_dropped_and_counted() {
    let relay = TestRelay::start(|_| {}).await;
    let client = relay.client();
    let device = client.register().await;
    let org = org();
    let mut short = Send::new(&org, &device, b"short-lived");
    short.ttl_s = 1;
    assert_eq!(client.enqueue(&short.request()).await.status, StatusCode::CREATED);
    let long = Send::new(&org, &device, b"long-lived");
    assert_eq!(client.enqueue(&long.request()).await.status, StatusCode::CREATED);
    assert_eq!(client.drain(&device).await.len(), 2);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let mut expired = 0;
    for _ in 0..40 {
        expired = client.metric("confab_relay_expired_total").await;
        if expired == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(expired, 1);
    let answer = client.fetch(&device, &[]).await;
    let got = open_all(&device, &answer.body);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, b"long-lived");
    assert_eq!(answer.body["expired"], 1, "the device is told");
    assert_eq!(answer.body["depth"], 1);
    // TTL bounds.
    let mut zero = Send::new(&org, &device, b"x");
    zero.ttl_s = 0;
    let answer = client.enqueue(&zero.request()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.code(), "invalid_ttl");
    let mut huge = Send::new(&org, &device, b"x");
    huge.ttl_s = 7 * 24 * 3600 + 1;
    assert_eq!(client.enqueue(&huge.request()).await.code(), "invalid_ttl");
    relay.stop().await;
}

#[tokio::test]
async fn full_queue_answers_overflow_and_loses_nothing() {
    let relay = TestRelay::start(|c| {
        c.limits.queue_envelopes_max = 3;
        c.limits.queue_bytes_max = 10_000;
    })
    .await;
    let client = relay.client();
    let device = client.register().await;
    let org = org();
    let mut accepted = Vec::new();
    for i in 0..3 {
        let send = Send::new(&org, &device, format!("m{i}").as_bytes());
        assert_eq!(client.enqueue(&send.request()).await.status, StatusCode::CREATED);
        accepted.push(send.envelope_id);
    }
    let over = Send::new(&org, &device, b"one too many");
    let answer = client.enqueue(&over.request()).await;
    assert_eq!(answer.status, StatusCode::INSUFFICIENT_STORAGE, "{answer:?}");
    assert_eq!(answer.code(), "queue_full");
    // The device sees the overflow count; the three accepted are intact.
    let fetched = client.fetch(&device, &[]).await;
    assert_eq!(fetched.body["overflowed"], 1);
    let got = open_all(&device, &fetched.body);
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), accepted);
    assert_eq!(client.metric("confab_relay_overflowed_total").await, 1);
    // Byte cap: one envelope too large for what is left.
    client.ack(&device, &accepted).await;
    let big = Send::new(&org, &device, &vec![7u8; 9_000]);
    assert_eq!(client.enqueue(&big.request()).await.status, StatusCode::CREATED);
    let big2 = Send::new(&org, &device, &vec![7u8; 2_000]);
    let answer = client.enqueue(&big2.request()).await;
    assert_eq!(answer.code(), "queue_full");
    // After acknowledging, there is room again.
    client.ack(&device, &[big.envelope_id]).await;
    assert_eq!(client.enqueue(&over.request()).await.status, StatusCode::CREATED);
    relay.stop().await;
}

#[tokio::test]
async fn topic_collapse_replaces_the_older_envelope() {
    let relay = TestRelay::start(|c| c.limits.queue_envelopes_max = 2).await;
    let client = relay.client();
    let device = client.register().await;
    let org = org();
    let mut first = Send::new(&org, &device, b"typing 1");
    first.topic = Some("chat-7-typing".parse().expect("topic"));
    first.urgency = Urgency::Low;
    assert_eq!(client.enqueue(&first.request()).await.status, StatusCode::CREATED);
    let other = Send::new(&org, &device, b"unrelated");
    assert_eq!(client.enqueue(&other.request()).await.status, StatusCode::CREATED);
    // The queue is at its cap of 2, but a replacement does not grow it.
    let mut second = Send::new(&org, &device, b"typing 2");
    second.topic = first.topic.clone();
    second.urgency = Urgency::High;
    let answer = client.enqueue(&second.request()).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    assert_eq!(answer.body["collapsed"], json!(first.envelope_id));
    let fetched = client.fetch(&device, &[]).await;
    let got = open_all(&device, &fetched.body);
    let plains: Vec<&[u8]> = got.iter().map(|(_, p)| p.as_slice()).collect();
    assert_eq!(plains, vec![&b"unrelated"[..], &b"typing 2"[..]]);
    let envelopes = fetched.body["envelopes"].as_array().expect("array");
    assert_eq!(envelopes[1]["topic"], "chat-7-typing");
    assert_eq!(envelopes[1]["urgency"], "high");
    assert_eq!(client.metric("confab_relay_collapsed_total").await, 1);
    // The collapsed envelope's id stays a duplicate.
    let answer = client.enqueue(&first.request()).await;
    assert_eq!(answer.body["status"], "duplicate");
    relay.stop().await;
}

#[tokio::test]
async fn capabilities_are_checked_and_revocable() {
    let relay = TestRelay::start(|_| {}).await;
    let client = relay.client();
    let device = client.register().await;
    let other_device = client.register().await;
    let org = org();
    let other_org = self::org();
    let cap = device.capability(&org);
    let ok = Send::new(&org, &device, b"a").with_cap(&cap);
    assert_eq!(client.enqueue(&ok.request()).await.status, StatusCode::CREATED);

    // A token for another sender, another queue, or signed by another device: refused.
    let stolen = Send::new(&other_org, &device, b"b").with_cap(&cap);
    let answer = client.enqueue(&stolen.request()).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.code(), "capability_invalid");
    let wrong_queue = Send::new(&org, &other_device, b"c").with_cap(&cap);
    assert_eq!(client.enqueue(&wrong_queue.request()).await.code(), "capability_invalid");
    let forged =
        CapabilityToken::issue(&other_device.key, device.queue, cap.id, org.id(), cap.not_after_ms);
    let forged_send = Send::new(&org, &device, b"d").with_cap(&forged);
    assert_eq!(client.enqueue(&forged_send.request()).await.code(), "capability_invalid");
    // Expired, and too long-lived.
    let expired = device.capability_until(&org, now_ms() - 1_000);
    let answer = client.enqueue(&Send::new(&org, &device, b"e").with_cap(&expired).request()).await;
    assert_eq!(answer.code(), "capability_expired");
    let forever = device.capability_until(&org, u64::MAX);
    let answer = client.enqueue(&Send::new(&org, &device, b"f").with_cap(&forever).request()).await;
    assert_eq!(answer.code(), "capability_lifetime");

    // Revocation needs the device's Manage signature.
    let path = format!("/v1/queues/{}/revocations", device.queue);
    let fetch_auth = client.auth(&device, ChallengePurpose::Fetch).await;
    let answer = client
        .post(
            &path,
            &json!({ "auth": fetch_auth, "capability_id": cap.id, "not_after_ms": cap.not_after_ms }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert_eq!(answer.code(), "bad_signature");
    let auth = client.auth(&device, ChallengePurpose::Manage).await;
    let answer = client
        .post(
            &path,
            &json!({ "auth": auth, "capability_id": cap.id, "not_after_ms": cap.not_after_ms }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let after = Send::new(&org, &device, b"g").with_cap(&cap);
    let answer = client.enqueue(&after.request()).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.code(), "capability_revoked");
    // A fresh token still works, and what was accepted before the revocation stays.
    let fresh = Send::new(&org, &device, b"h");
    assert_eq!(client.enqueue(&fresh.request()).await.status, StatusCode::CREATED);
    let got = client.drain(&device).await;
    assert_eq!(
        got.iter().map(|(_, p)| p.as_slice()).collect::<Vec<_>>(),
        vec![&b"a"[..], &b"h"[..]]
    );
    // Revocations survive a restart.
    let dir = relay.stop().await;
    let relay = TestRelay::start_in(dir, |_| {}).await;
    let answer = relay.client().enqueue(&after.request()).await;
    assert_eq!(answer.code(), "capability_revoked");
    relay.stop().await;
}

/// A node whose user removed the device renounces its capability: the relay revokes it and
/// deletes that sender's queued envelopes (the device may be lost), keeping other senders'.
#[tokio::test]
async fn a_sender_renounces_its_capability_and_its_envelopes_go() {
    let relay = TestRelay::start(|_| {}).await;
    let client = relay.client();
    let device = client.register().await;
    let (org, other) = (org(), OrgKey::from_seed(random()));
    let cap = device.capability(&org);
    for body in [&b"mine 1"[..], b"mine 2"] {
        let send = Send::new(&org, &device, body).with_cap(&cap);
        assert_eq!(client.enqueue(&send.request()).await.status, StatusCode::CREATED);
    }
    let theirs = Send::new(&other, &device, b"theirs");
    assert_eq!(client.enqueue(&theirs.request()).await.status, StatusCode::CREATED);
    let path = format!("/v1/queues/{}/renunciations", device.queue);

    // Only the organisation the capability names, signing freshly, for this queue.
    let by_other = RenounceRequest::sign(&other, cap.clone(), now_ms());
    let answer = client.post(&path, &json!(by_other)).await;
    assert_eq!((answer.status, answer.code()), (StatusCode::FORBIDDEN, "capability_invalid"));
    let mut forged = RenounceRequest::sign(&org, cap.clone(), now_ms());
    forged.sent_ms += 1;
    let answer = client.post(&path, &json!(forged)).await;
    assert_eq!((answer.status, answer.code()), (StatusCode::UNAUTHORIZED, "bad_signature"));
    let stale = RenounceRequest::sign(&org, cap.clone(), now_ms() - 3_600_000);
    assert_eq!(client.post(&path, &json!(stale)).await.code(), "stale_request");
    let elsewhere = format!("/v1/queues/{}/renunciations", QueueId::from_bytes(random()));
    let good = RenounceRequest::sign(&org, cap.clone(), now_ms());
    assert_eq!(client.post(&elsewhere, &json!(good)).await.code(), "queue_mismatch");
    assert_eq!(client.metric("confab_relay_queue_depth").await, 3, "refusals change nothing");

    let answer = client.post(&path, &json!(good)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["purged"], 2);
    assert_eq!(client.metric("confab_relay_purged_total").await, 2);
    let answer = client.enqueue(&Send::new(&org, &device, b"after").with_cap(&cap).request()).await;
    assert_eq!(answer.code(), "capability_revoked");
    // Renouncing again is harmless.
    let again = RenounceRequest::sign(&org, cap.clone(), now_ms());
    assert_eq!(client.post(&path, &json!(again)).await.body["purged"], 0);
    // The other sender's envelope stays, and this survives a restart.
    let dir = relay.stop().await;
    let relay = TestRelay::start_in(dir, |_| {}).await;
    let client = relay.client();
    let got = client.drain(&device).await;
    assert_eq!(got.iter().map(|(_, p)| p.as_slice()).collect::<Vec<_>>(), vec![&b"theirs"[..]]);
    let answer = client.enqueue(&Send::new(&org, &device, b"later").with_cap(&cap).request()).await;
    assert_eq!(answer.code(), "capability_revoked");
    relay.stop().await;
}

#[tokio::test]
async fn bad_sender_signatures_are_refused() {
    let relay = TestRelay::start(|_| {}).await;
    let client = relay.client();
    let device = client.register().await;
    let org = org();
    let send = Send::new(&org, &device, b"signed");
    let good = send.request();
    let mut tampered = good.clone();
    tampered.ttl_s += 1;
    let answer = client.enqueue(&tampered).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.code(), "bad_signature");
    let mut tampered = good.clone();
    let last = tampered.sealed.len() - 1;
    tampered.sealed[last] ^= 1;
    assert_eq!(client.enqueue(&tampered).await.code(), "bad_signature");
    let mut tampered = good.clone();
    tampered.signature.0[0] ^= 1;
    assert_eq!(client.enqueue(&tampered).await.code(), "bad_signature");
    // Claiming another sender: the signature does not verify under that key.
    let mut tampered = good.clone();
    tampered.sender = self::org().id();
    assert_eq!(client.enqueue(&tampered).await.code(), "bad_signature");
    // A request from too far in the past (replay window).
    let mut stale = good.clone();
    stale.sent_ms -= 3_600_000;
    assert_eq!(client.enqueue(&stale).await.code(), "stale_request");
    assert!(client.drain(&device).await.is_empty());
    assert_eq!(client.enqueue(&good).await.status, StatusCode::CREATED);
    relay.stop().await;
}

#[tokio::test]
async fn per_recipient_rate_limit_answers_429_with_retry_after() {
    let relay = TestRelay::start(|c| {
        c.limits.enqueue_rate_per_s = 0.5;
        c.limits.enqueue_burst = 3.0;
    })
    .await;
    let client = relay.client();
    let device = client.register().await;
    let other = client.register().await;
    let org = org();
    let mut accepted = Vec::new();
    for i in 0..3 {
        let send = Send::new(&org, &device, format!("{i}").as_bytes());
        assert_eq!(client.enqueue(&send.request()).await.status, StatusCode::CREATED);
        accepted.push(send.envelope_id);
    }
    let send = Send::new(&org, &device, b"too fast");
    let answer = client.enqueue(&send.request()).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.code(), "rate_limited");
    let retry: u64 = answer.retry_after.as_deref().expect("Retry-After").parse().expect("seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Per recipient: another queue is not affected.
    assert_eq!(
        client.enqueue(&Send::new(&org, &other, b"x").request()).await.status,
        StatusCode::CREATED
    );
    // After waiting as told, it goes through; nothing accepted was lost.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(client.enqueue(&send.request()).await.status, StatusCode::CREATED);
    accepted.push(send.envelope_id);
    let got = client.drain(&device).await;
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), accepted);
    assert_eq!(client.metric("confab_relay_rate_limited_total").await, 1);
    relay.stop().await;
}

#[tokio::test]
async fn oversized_and_malformed_input_gets_clear_errors_and_loses_nothing() {
    let relay = TestRelay::start(|c| {
        c.limits.sealed_bytes_max = 4_096;
        c.limits.request_body_bytes_max = 16_384;
        c.limits.ack_ids_max = 10;
    })
    .await;
    let client = relay.client();
    let device = client.register().await;
    let org = org();
    let kept = Send::new(&org, &device, b"kept");
    assert_eq!(client.enqueue(&kept.request()).await.status, StatusCode::CREATED);
    let path = format!("/v1/queues/{}/envelopes", device.queue);

    // Sealed envelope over the limit (body still under the request limit).
    let big = Send::new(&org, &device, &vec![1u8; 5_000]);
    let answer = client.enqueue(&big.request()).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{answer:?}");
    assert_eq!(answer.code(), "envelope_too_large");
    // Body over the request limit.
    let huge = Send::new(&org, &device, &vec![1u8; 20_000]);
    let answer = client.enqueue(&huge.request()).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{answer:?}");
    assert_eq!(answer.code(), "payload_too_large");
    // Not JSON, wrong JSON, wrong content type.
    let answer = client.post_raw(&path, "application/json", b"{not json".to_vec()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.code(), "invalid_body");
    let answer = client.post(&path, &json!({ "queue": device.queue })).await;
    assert_eq!(answer.code(), "invalid_body");
    assert!(answer.body["message"].as_str().unwrap_or("").contains("missing field"));
    let answer = client.post_raw(&path, "text/plain", b"{}".to_vec()).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.code(), "bad_content_type");
    // Bad fields: sealed not base64url, a bad topic, a bad capability, an unknown field.
    let mut value = serde_json::to_value(kept.request()).expect("json");
    value["sealed"] = json!("***");
    assert_eq!(client.post(&path, &value).await.code(), "invalid_body");
    let mut value = serde_json::to_value(kept.request()).expect("json");
    value["topic"] = json!("has spaces");
    assert_eq!(client.post(&path, &value).await.code(), "invalid_body");
    let mut value = serde_json::to_value(kept.request()).expect("json");
    value["capability"] = json!("AAAA");
    assert_eq!(client.post(&path, &value).await.code(), "invalid_body");
    let mut value = serde_json::to_value(kept.request()).expect("json");
    value["extra"] = json!(1);
    assert_eq!(client.post(&path, &value).await.code(), "invalid_body");
    // Not a sealed envelope (signed correctly, but garbage inside).
    let mut garbage = Send::new(&org, &device, b"").request();
    garbage.sealed = vec![9u8; 10];
    let garbage = confab_protocol::relay::EnqueueRequest::sign(
        &org,
        confab_protocol::relay::EnqueueFields {
            queue: garbage.queue,
            envelope_id: EnvelopeId::from_bytes(random()),
            sent_ms: garbage.sent_ms,
            ttl_s: garbage.ttl_s,
            urgency: garbage.urgency,
            topic: None,
            sealed: garbage.sealed,
            capability: garbage.capability,
        },
    );
    let answer = client.enqueue(&garbage).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.code(), "invalid_envelope");
    // Bad ids in the path; unknown queue; URL/body mismatch.
    let answer = client
        .post(
            "/v1/queues/NOT-AN-ID/envelopes",
            &serde_json::to_value(kept.request()).expect("json"),
        )
        .await;
    assert_eq!(answer.code(), "invalid_id");
    let stranger = Device {
        key: confab_protocol::relay::DeviceKey::from_seed(random()),
        x25519_secret: random(),
        queue: confab_protocol::relay::QueueId::from_bytes(random()),
    };
    let answer = client.enqueue(&Send::new(&org, &stranger, b"x").request()).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.code(), "unknown_queue");
    let other = client.register().await;
    let answer = client
        .post(
            &format!("/v1/queues/{}/envelopes", other.queue),
            &serde_json::to_value(kept.request()).expect("json"),
        )
        .await;
    assert_eq!(answer.code(), "queue_mismatch");
    // Too many ids in one ack.
    let ids: Vec<EnvelopeId> = (0..11).map(|_| EnvelopeId::from_bytes(random())).collect();
    let answer = client.ack(&device, &ids).await;
    assert_eq!(answer.code(), "too_many_ids");
    // Unknown route.
    let answer = client.post("/v1/nothing", &json!({})).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.code(), "not_found");

    // Nothing was lost: the one good envelope is still there, and only it.
    let got = client.drain(&device).await;
    assert_eq!(got, vec![(kept.envelope_id, b"kept".to_vec())]);
    let _ = b64_encode(b"");
    relay.stop().await;
}

#[tokio::test]
async fn a_device_can_delete_its_queue() {
    let relay = TestRelay::start(|_| {}).await;
    let client = relay.client();
    let device = client.register().await;
    let other = client.register().await;
    let org = org();
    let mut topical = Send::new(&org, &device, b"one");
    topical.topic = Some("t".parse().expect("topic"));
    client.enqueue(&topical.request()).await;
    client.enqueue(&Send::new(&org, &device, b"two").request()).await;
    client.enqueue(&Send::new(&org, &other, b"kept").request()).await;
    assert_eq!(client.metric("confab_relay_queues").await, 2);
    let path = format!("/v1/queues/{}/delete", device.queue);
    let auth = client.auth(&device, ChallengePurpose::Fetch).await;
    let answer = client.post(&path, &json!({ "auth": auth })).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "a fetch answer is not enough");
    let auth = client.auth(&device, ChallengePurpose::Manage).await;
    let answer = client.post(&path, &json!({ "auth": auth })).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(client.metric("confab_relay_queues").await, 1);
    assert_eq!(client.metric("confab_relay_queue_depth").await, 1);
    let answer = client.enqueue(&Send::new(&org, &device, b"late").request()).await;
    assert_eq!(answer.code(), "unknown_queue");
    assert_eq!(client.fetch(&device, &[]).await.code(), "unknown_queue");
    assert_eq!(client.drain(&other).await.len(), 1, "other queues are untouched");
    // The sweeper copes with the deleted queue's leftover expiry entries; restart is clean.
    let dir = relay.stop().await;
    let relay = TestRelay::start_in(dir, |_| {}).await;
    let client = relay.client();
    assert_eq!(client.metric("confab_relay_queues").await, 1);
    assert_eq!(client.metric("confab_relay_queue_depth").await, 1);
    assert_eq!(client.drain(&other).await.len(), 1);
    relay.stop().await;
}

#[tokio::test]
async fn replays_after_the_tombstone_is_gone_are_stale() {
    let relay = TestRelay::start(|c| c.limits.clock_skew_s_max = 1).await;
    let client = relay.client();
    let device = client.register().await;
    let org = org();
    let send = Send::new(&org, &device, b"once only");
    let request = send.request();
    assert_eq!(client.enqueue(&request).await.status, StatusCode::CREATED);
    assert_eq!(client.ack(&device, &[send.envelope_id]).await.body["acked"], 1);
    assert_eq!(client.enqueue(&request).await.body["status"], "duplicate");
    // Past sent_ms + skew the tombstone is swept, and the replay is refused as stale instead.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let answer = client.enqueue(&request).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{answer:?}");
    assert_eq!(answer.code(), "stale_request");
    assert!(client.drain(&device).await.is_empty());
    relay.stop().await;
}
