//! Media and search against a real node process over TCP: a multi-megabyte upload streamed in
//! and out byte-exact, ranges, a non-member's 403, and the search index catching up after
//! kill -9 (the writes the index had not committed come back from the event log).

use crate::common::*;
use serde_json::{json, Value};

/// Deterministic, incompressible-looking bytes.
fn file_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn http(client: &Client) -> (reqwest::Client, String, String) {
    let cookie = format!("confab_session={}", client.session_cookie().expect("logged in"));
    (reqwest::Client::new(), client.base().to_string(), cookie)
}

async fn search(client: &Client, query: &str) -> Value {
    let (http, base, cookie) = http(client);
    let response = http
        .get(format!("{base}/api/v1/search?{query}"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("search request");
    assert_eq!(response.status(), 200);
    response.json().await.expect("search json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_roundtrips_and_search_survives_kill9() {
    let (mut node, clients) = setup(&["alice", "bob", "eve"]).await;
    let (alice, bob, eve) = (&clients[0], &clients[1], &clients[2]);
    let chat = alice.create_channel("reports", "private").await.must("private");
    alice.invite(&chat.id, "bob@local", None).await.must("invite");
    let secret = alice.create_channel("board", "private").await.must("private");

    // 12 MiB streamed in; the node answers with the sniffed type and size.
    let bytes = file_bytes(12 * 1024 * 1024);
    let (http_alice, base, cookie_alice) = http(alice);
    let response = http_alice
        .post(format!("{base}/api/v1/media?name=q3-figures.bin"))
        .header("cookie", &cookie_alice)
        .header("origin", &base)
        .body(bytes.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 201);
    let answer: Value = response.json().await.expect("upload json");
    let id = answer["attachment"]["id"].as_str().expect("id").to_string();
    assert_eq!(answer["attachment"]["size_bytes"], bytes.len() as u64);
    assert_eq!(answer["attachment"]["mime"], "application/octet-stream");

    let response = http_alice
        .post(format!("{base}/api/v1/chats/{}/messages", secret.id))
        .header("cookie", &cookie_alice)
        .header("origin", &base)
        .json(&json!({"body": "quarterly figures for the board", "attachments": [{"id": id}]}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 201);
    let response = http_alice
        .post(format!("{base}/api/v1/chats/{}/messages", chat.id))
        .header("cookie", &cookie_alice)
        .header("origin", &base)
        .json(&json!({"body": "quarterly figures", "attachments": [{"id": id, "name": "q3.bin"}]}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 201);

    // Bob reads it back byte for byte, and a range of it.
    let (http_bob, _, cookie_bob) = http(bob);
    let url = format!("{base}/api/v1/media/{id}");
    let response = http_bob.get(&url).header("cookie", &cookie_bob).send().await.expect("download");
    assert_eq!(response.status(), 200);
    let disposition = response.headers()["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment; filename=\"q3.bin\""), "{disposition}");
    let body = response.bytes().await.expect("bytes");
    assert!(body[..] == bytes[..], "downloaded bytes differ");
    let response = http_bob
        .get(&url)
        .header("cookie", &cookie_bob)
        .header("range", "bytes=1048576-1048585")
        .send()
        .await
        .expect("range");
    assert_eq!(response.status(), 206);
    assert_eq!(response.bytes().await.unwrap()[..], bytes[1_048_576..1_048_586]);
    // Eve is in neither (private) chat: 403.
    let (http_eve, _, cookie_eve) = http(eve);
    let response = http_eve.get(&url).header("cookie", &cookie_eve).send().await.unwrap();
    assert_eq!(response.status(), 403);

    // Search: Bob finds only the #reports copy.
    let found = search(bob, "q=quarterly&has_attachment=true").await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["hits"][0]["chat_id"], chat.id.as_str());

    // A burst, then kill -9 before the index's next commit can be relied on.
    for n in 0..25 {
        alice.send(&chat.id, &format!("zebra crossing number {n}")).await.must("send");
    }
    node.kill9();
    node.start_again().await;
    let mut alice_again = alice.clone();
    alice_again.rebase(&node.base_url());
    if alice_again.me().await.is_err() {
        alice_again.login("alice", PASSWORD).await.must("login");
    }
    let found = search(&alice_again, "q=zebra").await;
    assert_eq!(found["total"], 25, "every acknowledged message is searchable after kill -9");
    let found = search(&alice_again, "q=quarterly").await;
    assert_eq!(found["total"], 2);
}
