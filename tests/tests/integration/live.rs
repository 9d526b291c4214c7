//! The WebSocket: hello, ping, send frames, resuming with a cursor.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_ping_and_send_frames() {
    let (_node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let chat = public_channel(alice, "general", &[bob]).await;
    let mut alice_ws = alice.ws_ok(None).await;
    let mut bob_ws = bob.ws_ok(None).await;
    assert!(
        alice_ws.hello.get("cursor").is_some_and(Value::is_u64),
        "hello carries a numeric cursor: {}",
        alice_ws.hello
    );
    bob_ws.ping().await;

    let msg = bob_ws
        .send_message("c-1", &chat.id, "over the socket", None)
        .await
        .unwrap_or_else(|e| panic!("send frame refused: {e}"));
    let msg: Message = serde_json::from_value(msg.clone())
        .unwrap_or_else(|e| panic!("ack.message is not a Message ({e}): {msg}"));
    assert_eq!(msg.author, "bob@local");
    assert_eq!(msg.body, "over the socket");
    assert_eq!(msg.chat_id, chat.id);
    let ev = alice_ws.wait_created(&msg.id).await;
    assert_eq!(ev_message(&ev).body, "over the socket");
    assert_eq!(
        alice.get_message(&chat.id, &msg.id).await.must("get").body,
        "over the socket",
        "an acknowledged WebSocket send is stored"
    );

    let reply = bob_ws
        .send_message("c-2", &chat.id, "threaded", Some(&msg.id))
        .await
        .unwrap_or_else(|e| panic!("send frame with reply_to refused: {e}"));
    assert_eq!(
        reply.get("reply_to").and_then(Value::as_str),
        Some(msg.id.as_str()),
        "ack carries reply_to: {reply}"
    );

    // Errors name the client_id.
    let secret = alice.create_channel("secret", "private").await.must("private");
    let err = bob_ws
        .send_message("c-3", &secret.id, "intrusion", None)
        .await
        .expect_err("a non-member's send frame must be refused");
    assert!(
        err.get("code").and_then(Value::as_str).is_some_and(|c| !c.is_empty()),
        "error frame has a code: {err}"
    );
    let err = bob_ws
        .send_message("c-4", &chat.id, &"x".repeat(100_001), None)
        .await
        .expect_err("a 100,001-character send frame must be refused");
    assert_eq!(err.get("code").and_then(Value::as_str), Some("message_too_long"), "{err}");
    // The socket keeps working after an error.
    bob_ws.ping().await;
}

fn summary(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|v| (ev_type(v).to_string(), ev_message_id(v).unwrap_or("-").to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_cursor_resumes_without_loss_or_duplicates() {
    let (_node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let chat = public_channel(alice, "general", &[bob]).await;
    let mut bob_ws = bob.ws_ok(None).await;
    let m0 = alice.send(&chat.id, "m0").await.must("send");
    bob_ws.wait_created(&m0.id).await;
    // Take everything pending so the cursor is the last processed event.
    bob_ws.drain(QUIET).await;
    let c0 = bob_ws.last_cursor().expect("a cursor after events");
    bob_ws.close().await;

    let mut missed = Vec::new();
    for i in 1..=5 {
        let m = alice.send(&chat.id, &format!("m{i}")).await.must("send while bob is away");
        missed.push(("message.created".to_string(), m.id));
    }
    let first = missed[0].1.clone();
    alice.edit(&chat.id, &first, "m1 edited").await.must("edit while away");
    missed.push(("message.edited".to_string(), first.clone()));

    let mut bob_ws = bob.ws_ok(Some(c0)).await;
    assert!(
        bob_ws.hello_cursor() > c0,
        "hello cursor {} must be newer than the resumed cursor {c0}",
        bob_ws.hello_cursor()
    );
    let replay = bob_ws.drain(QUIET).await;
    assert_eq!(
        summary(&replay),
        missed,
        "resuming at cursor {c0} must replay exactly the missed events, in order, once"
    );
    let mut last = c0;
    for ev in &replay {
        let c = ev_cursor(ev).unwrap_or_else(|| panic!("replayed event without cursor: {ev}"));
        assert!(c > last, "cursors must increase: {c} after {last}");
        last = c;
    }
    assert!(last <= bob_ws.hello_cursor(), "replayed cursors are at most hello's");

    // Live again: exactly one delivery.
    let m6 = alice.send(&chat.id, "m6").await.must("send");
    let live = bob_ws.drain(QUIET).await;
    assert_eq!(
        summary(&live),
        vec![("message.created".to_string(), m6.id.clone())],
        "after the replay, live events arrive once"
    );
    let c_end = bob_ws.last_cursor().expect("cursor");
    bob_ws.close().await;

    // Resuming at the newest cursor replays nothing.
    let mut bob_ws = bob.ws_ok(Some(c_end)).await;
    let none = bob_ws.drain(QUIET).await;
    assert!(none.is_empty(), "nothing after the newest cursor: {none:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_while_disconnected_arrive_in_order() {
    let (_node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let chat = public_channel(alice, "general", &[bob]).await;
    let mut bob_ws = bob.ws_ok(None).await;
    bob_ws.drain(Duration::from_millis(300)).await;
    let c0 = bob_ws.last_cursor().expect("hello cursor");
    drop(bob_ws);
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(alice.send(&chat.id, &format!("n{i}")).await.must("send").id);
    }
    let mut bob_ws = bob.ws_ok(Some(c0)).await;
    let mut got = Vec::new();
    while got.len() < ids.len() {
        match bob_ws.recv(EVENT_TIMEOUT).await {
            WsNext::Event(v) if ev_type(&v) == "message.created" => {
                got.push(ev_message_id(&v).unwrap_or_default().to_string());
            }
            WsNext::Event(_) => {}
            other => panic!("replay stopped after {} of {}: {other:?}", got.len(), ids.len()),
        }
    }
    assert_eq!(got, ids, "replay is complete and in order");
    let extra = bob_ws.drain(QUIET).await;
    assert!(extra.is_empty(), "no duplicates after the replay: {extra:?}");
    // And a read over the socket is accepted (no error frame).
    let last = ids.last().cloned().unwrap_or_default();
    bob_ws
        .send_json(&json!({"type": "read", "chat_id": chat.id, "message_id": last}))
        .await
        .unwrap_or_else(|e| panic!("send read frame: {e}"));
    let e = bob.chat_entry(&chat.id).await.must("entry").expect("listed");
    // The frame is processed asynchronously; poll a little.
    let mut entry = e;
    for _ in 0..50 {
        if entry.unread_count == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        entry = bob.chat_entry(&chat.id).await.must("entry").expect("listed");
    }
    assert_eq!(entry.unread_count, 0, "read frame applied: {entry:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_are_rate_limited_per_session() {
    let (_node, cl) = setup(&["alice"]).await;
    let alice = &cl[0];
    let mut ws = alice.ws_ok(None).await;
    // Default: 200 frames/s, burst 400. 800 frames sent at once must overflow the burst.
    for _ in 0..800 {
        ws.send_json(&json!({"type": "ping"})).await.unwrap_or_else(|e| panic!("send ping: {e}"));
    }
    let frames = ws.drain(QUIET).await;
    let pongs = frames.iter().filter(|v| ev_type(v) == "pong").count();
    let limited = frames
        .iter()
        .filter(|v| {
            ev_type(v) == "error" && v.get("code").and_then(Value::as_str) == Some("rate_limited")
        })
        .count();
    assert!(
        limited > 0,
        "800 frames sent at once must overflow the spec's default WebSocket limit \
         (200 frames/s, burst 400), but all {pongs} got a pong"
    );
    assert!(pongs >= 400, "the burst of 400 frames is allowed: only {pongs} pongs");
    assert_eq!(pongs + limited, 800, "every frame is answered (pong or rate_limited)");
    // The session recovers.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ws.ping().await;
}
