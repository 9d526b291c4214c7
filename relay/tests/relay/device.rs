//! Device authentication (Ed25519 challenge answers: wrong key, replayed, expired, wrong purpose)
//! and fetching over the WebSocket, live and with acknowledgements.

use crate::support::*;
use confab_protocol::relay::{b64_decode, b64_encode, ChallengePurpose, DeviceKey, EnvelopeId};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn challenge_auth_refuses_wrong_keys_replays_and_other_purposes() {
    let relay = TestRelay::start(|c| c.limits.challenge_ttl_s = 1).await;
    let client = relay.client();
    let device = client.register().await;
    let org = org();
    client.enqueue(&Send::new(&org, &device, b"secret").request()).await;
    let path = format!("/v1/queues/{}/fetch", device.queue);

    // Signed by another key.
    let challenge = client.challenge().await;
    let intruder = DeviceKey::from_seed(random());
    let sig = intruder.answer(ChallengePurpose::Fetch, &challenge, Some(device.queue));
    let answer = client
        .post(
            &path,
            &json!({ "auth": { "challenge": b64_encode(&challenge), "signature": b64_encode(&sig.0) } }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.code(), "bad_signature");
    assert!(answer.body.get("envelopes").is_none());

    // A good answer works once; replaying it is refused.
    let challenge = client.challenge().await;
    let sig = device.key.answer(ChallengePurpose::Fetch, &challenge, Some(device.queue));
    let body =
        json!({ "auth": { "challenge": b64_encode(&challenge), "signature": b64_encode(&sig.0) } });
    let answer = client.post(&path, &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(open_all(&device, &answer.body).len(), 1);
    let replay = client.post(&path, &body).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.code(), "challenge_invalid");

    // The answer's next_challenge is usable.
    let next = b64_decode(answer.body["next_challenge"].as_str().expect("next")).expect("b64");
    let next: [u8; 32] = next.try_into().expect("32");
    let sig = device.key.answer(ChallengePurpose::Fetch, &next, Some(device.queue));
    let answer = client
        .post(
            &path,
            &json!({ "auth": { "challenge": b64_encode(&next), "signature": b64_encode(&sig.0) } }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);

    // A made-up challenge, a wrong purpose, another queue.
    let made_up: [u8; 32] = random();
    let sig = device.key.answer(ChallengePurpose::Fetch, &made_up, Some(device.queue));
    let answer = client
        .post(
            &path,
            &json!({ "auth": { "challenge": b64_encode(&made_up), "signature": b64_encode(&sig.0) } }),
        )
        .await;
    assert_eq!(answer.code(), "challenge_invalid");
    let challenge = client.challenge().await;
    let sig = device.key.answer(ChallengePurpose::Manage, &challenge, Some(device.queue));
    let answer = client
        .post(
            &path,
            &json!({ "auth": { "challenge": b64_encode(&challenge), "signature": b64_encode(&sig.0) } }),
        )
        .await;
    assert_eq!(answer.code(), "bad_signature");

    // Expired challenge.
    let challenge = client.challenge().await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let sig = device.key.answer(ChallengePurpose::Fetch, &challenge, Some(device.queue));
    let answer = client
        .post(
            &path,
            &json!({ "auth": { "challenge": b64_encode(&challenge), "signature": b64_encode(&sig.0) } }),
        )
        .await;
    assert_eq!(answer.code(), "challenge_invalid");

    // Registration needs a valid answer too.
    let key = DeviceKey::from_seed(random());
    let challenge = client.challenge().await;
    let sig = intruder.answer(ChallengePurpose::Register, &challenge, None);
    let answer = client
        .post(
            "/v1/queues",
            &json!({
                "device_key": key.public(),
                "auth": { "challenge": b64_encode(&challenge), "signature": b64_encode(&sig.0) },
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.code(), "bad_signature");
    relay.stop().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("ok");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("json"),
            Message::Close(_) => return json!({ "type": "closed" }),
            _ => continue,
        }
    }
}

async fn connect(relay: &TestRelay, device: &Device, key: &DeviceKey) -> Ws {
    let url = format!("{}/v1/queues/{}/ws", relay.base.replace("http://", "ws://"), device.queue);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "challenge");
    let challenge: [u8; 32] = b64_decode(hello["challenge"].as_str().expect("challenge"))
        .expect("b64")
        .try_into()
        .expect("32");
    let sig = key.answer(ChallengePurpose::Fetch, &challenge, Some(device.queue));
    ws.send(Message::Text(
        json!({ "type": "auth", "signature": b64_encode(&sig.0) }).to_string().into(),
    ))
    .await
    .expect("send auth");
    ws
}

fn ids_of(batch: &Value) -> Vec<EnvelopeId> {
    batch["envelopes"]
        .as_array()
        .expect("envelopes")
        .iter()
        .map(|e| e["envelope_id"].as_str().expect("id").parse().expect("id"))
        .collect()
}

#[tokio::test]
async fn websocket_fetch_live_and_ack() {
    let relay = TestRelay::start(|_| {}).await;
    let client = relay.client();
    let device = client.register().await;
    let org = org();
    let first = Send::new(&org, &device, b"waiting");
    client.enqueue(&first.request()).await;

    // Wrong key: an error, then the socket closes; nothing is sent.
    let intruder = DeviceKey::from_seed(random());
    let mut ws = connect(&relay, &device, &intruder).await;
    let error = next_json(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "bad_signature");

    let mut ws = connect(&relay, &device, &device.key).await;
    let batch = next_json(&mut ws).await;
    assert_eq!(batch["type"], "envelopes");
    assert_eq!(open_all(&device, &batch), vec![(first.envelope_id, b"waiting".to_vec())]);
    // A new envelope arrives live.
    let second = Send::new(&org, &device, b"live");
    client.enqueue(&second.request()).await;
    let batch = next_json(&mut ws).await;
    assert_eq!(open_all(&device, &batch), vec![(second.envelope_id, b"live".to_vec())]);
    // Ack both; the relay deletes them only now.
    assert_eq!(client.fetch(&device, &[]).await.body["depth"], 2);
    ws.send(Message::Text(
        json!({ "type": "ack", "envelope_ids": [first.envelope_id, second.envelope_id] })
            .to_string()
            .into(),
    ))
    .await
    .expect("ack");
    let acked = loop {
        let message = next_json(&mut ws).await;
        if message["type"] == "acked" {
            break message;
        }
    };
    assert_eq!(acked["acked"], 2);
    assert_eq!(client.fetch(&device, &[]).await.body["depth"], 0);
    // An unacknowledged envelope is sent again on the next connection (at-least-once).
    let third = Send::new(&org, &device, b"again");
    client.enqueue(&third.request()).await;
    let batch = loop {
        let message = next_json(&mut ws).await;
        if message["type"] == "envelopes" && !ids_of(&message).is_empty() {
            break message;
        }
    };
    assert_eq!(ids_of(&batch), vec![third.envelope_id]);
    drop(ws);
    let mut ws = connect(&relay, &device, &device.key).await;
    let batch = next_json(&mut ws).await;
    assert_eq!(ids_of(&batch), vec![third.envelope_id]);
    // Garbage is answered with an error.
    ws.send(Message::Text("{\"type\":\"nonsense\"}".into())).await.expect("send");
    let error = next_json(&mut ws).await;
    assert_eq!(error["code"], "invalid_message");
    relay.stop().await;
}

#[tokio::test]
async fn browsers_on_other_origins_may_call_the_relay() {
    let relay = TestRelay::start(|_| {}).await;
    let client = relay.client();
    let response = client
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/challenges", relay.base))
        .header("origin", "https://node.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("preflight");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers["access-control-allow-methods"].to_str().expect("ascii").contains("POST"));
    assert_eq!(headers["access-control-allow-headers"], "content-type");
    let response = client
        .http
        .post(format!("{}/v1/challenges", relay.base))
        .header("origin", "https://node.example")
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    relay.stop().await;
}

#[tokio::test]
async fn relay_wide_limits_on_challenges_registrations_and_sockets() {
    let relay = TestRelay::start(|c| {
        c.limits.challenge_burst = 6.0;
        c.limits.challenge_rate_per_s = 0.01;
        c.limits.queues_max = 2;
        c.limits.ws_sessions_max = 1;
    })
    .await;
    let client = relay.client();
    let first = client.register().await;
    client.register().await;
    // The relay is full: a third registration is refused (its challenge is the 3rd).
    let (_, answer) = client.register_with(None).await;
    assert_eq!(answer.status, StatusCode::INSUFFICIENT_STORAGE, "{answer:?}");
    assert_eq!(answer.code(), "relay_full");
    // One WebSocket session at most (its challenge is not a POST: not counted).
    let _ws = connect(&relay, &first, &first.key).await;
    let url = format!("{}/v1/queues/{}/ws", relay.base.replace("http://", "ws://"), first.queue);
    let refused = tokio_tungstenite::connect_async(url).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503)
        }
        other => panic!("second session not refused: {other:?}"),
    }
    // Challenges: the burst of 6 POSTs is spent after 3 more; the next gets 429 with Retry-After.
    for _ in 0..3 {
        client.challenge().await;
    }
    let answer = client.post("/v1/challenges", &json!({})).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{answer:?}");
    assert_eq!(answer.code(), "rate_limited");
    assert!(answer.retry_after.is_some());
    relay.stop().await;
}
