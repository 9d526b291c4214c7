//! The real `confab-relay` process: kill -9 right after (and while) it acknowledges envelopes,
//! restart, and check that every acknowledged envelope is still there (20+ cycles); then that
//! the relay's data directory and its debug logs never contain the canary sealed inside every
//! message; and that SIGTERM shuts it down cleanly.

use crate::support::*;
use confab_protocol::relay::EnvelopeId;
use reqwest::StatusCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CYCLES: usize = 22;

type Accepted = Arc<Mutex<Vec<(EnvelopeId, Vec<u8>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_envelope_and_leaks_no_canary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = dir.path().join("relay.log");
    let canary = format!("canary-{}", hex_of(&random::<16>()));
    let flags = ["--enqueue-rate-per-s", "1000000", "--enqueue-burst", "1000000"];
    let org = org();
    let mut device: Option<Device> = None;
    // Acknowledged by the relay (201), not yet acknowledged by the device.
    let mut expected: HashMap<EnvelopeId, Vec<u8>> = HashMap::new();
    let mut total_acked_by_relay = 0usize;
    for cycle in 0..CYCLES {
        let relay = BinRelay::spawn(&data, &log, &flags);
        let client = relay.client();
        if device.is_none() {
            device = Some(client.register().await);
        }
        let device = device.as_ref().expect("device");

        // Everything acknowledged before the last kill is there.
        let answer = client.fetch(device, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "cycle {cycle}: {answer:?}");
        let got: HashMap<EnvelopeId, Vec<u8>> =
            open_all(device, &answer.body).into_iter().collect();
        let depth = answer.body["depth"].as_u64().expect("depth") as usize;
        assert!(depth <= 100, "test keeps the queue small; depth {depth}");
        for (id, plain) in &expected {
            assert_eq!(
                got.get(id),
                Some(plain),
                "cycle {cycle}: acknowledged envelope {id} lost after kill -9"
            );
        }
        // The device stores and acknowledges half of what it got.
        let acked: Vec<EnvelopeId> =
            got.keys().copied().filter(|id| id.as_bytes()[0] % 2 == 0).collect();
        let answer = client.ack(device, &acked).await;
        assert_eq!(answer.status, StatusCode::OK);
        for id in &acked {
            expected.remove(id);
        }
        // Envelopes the relay acknowledged, sequentially...
        for i in 0..5 {
            let send =
                Send::new(&org, device, format!("{canary} cycle {cycle} msg {i}").as_bytes());
            let answer = client.enqueue(&send.request()).await;
            assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
            expected.insert(send.envelope_id, send.plaintext.clone());
            total_acked_by_relay += 1;
        }
        // ...and concurrently while the kill lands.
        let accepted: Accepted = Arc::default();
        let mut writers = Vec::new();
        for w in 0..2 {
            let client = client.clone();
            let accepted = accepted.clone();
            let requests: Vec<_> = (0..20)
                .map(|i| {
                    let send = Send::new(
                        &org,
                        device,
                        format!("{canary} cycle {cycle} writer {w} msg {i}").as_bytes(),
                    );
                    (send.envelope_id, send.plaintext.clone(), send.request())
                })
                .collect();
            writers.push(tokio::spawn(async move {
                for (id, plain, request) in requests {
                    let response = client
                        .http
                        .post(format!("{}/v1/queues/{}/envelopes", client.base, request.queue))
                        .json(&request)
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == StatusCode::CREATED => {
                            accepted.lock().expect("lock").push((id, plain));
                        }
                        _ => break,
                    }
                }
            }));
        }
        let delay = 2 + (random::<1>()[0] % 20) as u64;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        relay.kill9();
        for writer in writers {
            let _ = writer.await;
        }
        let accepted = std::mem::take(&mut *accepted.lock().expect("lock"));
        total_acked_by_relay += accepted.len();
        expected.extend(accepted);
        // Keep the queue small: the device drains fully every few cycles.
        if cycle % 4 == 3 {
            let relay = BinRelay::spawn(&data, &log, &flags);
            let client = relay.client();
            let answer = client.fetch(device, &[]).await;
            let got: HashMap<EnvelopeId, Vec<u8>> =
                open_all(device, &answer.body).into_iter().collect();
            for (id, plain) in &expected {
                assert_eq!(got.get(id), Some(plain), "cycle {cycle}: {id} lost");
            }
            let all: Vec<EnvelopeId> = got.keys().copied().collect();
            for chunk in all.chunks(500) {
                assert_eq!(client.ack(device, chunk).await.status, StatusCode::OK);
            }
            expected.clear();
            relay.kill9();
        }
    }
    assert!(total_acked_by_relay >= CYCLES * 5);

    // Final check after a last restart, then a graceful SIGTERM.
    let relay = BinRelay::spawn(&data, &log, &flags);
    let client = relay.client();
    let device = device.as_ref().expect("device");
    let got: HashMap<EnvelopeId, Vec<u8>> = client.drain(device).await.into_iter().collect();
    for (id, plain) in &expected {
        assert_eq!(got.get(id), Some(plain), "final: {id} lost");
    }
    let status = relay.terminate();
    assert!(status.success(), "graceful exit on SIGTERM: {status}");

    // Confidentiality: the relay only ever held ciphertext.
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(log_text.contains("queue registered"), "debug logs were captured");
    assert!(log_text.contains("shutdown signal received"));
    assert_eq!(count_in_dir(&data, canary.as_bytes()), 0, "canary in the data directory");
    assert_eq!(log_text.matches(&canary).count(), 0, "canary in the logs");
    // Positive control: the same scan finds what the relay does store (a pending envelope's id).
    let pending = expected.keys().next().expect("envelopes are pending at the end");
    assert!(count_in_dir(&data, pending.as_bytes()) > 0);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
