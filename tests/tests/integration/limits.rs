//! Size limits and error shapes.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_length_limit_is_100000_characters() {
    let (_node, cl) = setup(&["alice"]).await;
    let alice = &cl[0];
    let chat = alice.create_channel("general", "public").await.must("channel");
    let exact = "a".repeat(100_000);
    let m = alice.send(&chat.id, &exact).await.must("exactly 100,000 characters");
    let got = alice.get_message(&chat.id, &m.id).await.must("get");
    assert_eq!(got.body.len(), 100_000, "the whole body is stored");
    alice.send(&chat.id, &"a".repeat(100_001)).await.err_is(
        413,
        "message_too_long",
        "100,001 characters",
    );

    // Characters, not bytes: 100,000 four-byte characters are fine.
    let wide = "😀".repeat(100_000);
    let m = alice.send(&chat.id, &wide).await.must("100,000 emoji (400,000 bytes)");
    assert_eq!(alice.get_message(&chat.id, &m.id).await.must("get").body.chars().count(), 100_000);
    alice.send(&chat.id, &"é".repeat(100_001)).await.err_is(
        413,
        "message_too_long",
        "100,001 two-byte characters",
    );
    let e = alice.send(&chat.id, "").await.expect_err("an empty body must be refused");
    assert_eq!(e.status, 400, "empty body: {e}");

    let edit = alice
        .edit(&chat.id, &m.id, &"b".repeat(100_001))
        .await
        .expect_err("an edit past the limit must be refused");
    assert_eq!((edit.status, edit.code.as_str()), (413, "message_too_long"), "{edit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_body_is_413() {
    let (_node, cl) = setup(&["alice"]).await;
    let alice = &cl[0];
    let big = json!({"status_text": "x".repeat(1024 * 1024 + 100)}).to_string();
    let r = alice.raw(Method::PATCH, "/me", Body::RawJson(big.into_bytes())).await;
    assert_eq!(r.status, 413, "a body over 1 MiB: {}", r.body);
    assert_eq!(r.code().as_deref(), Some("payload_too_large"), "{}", r.body);
    alice.me().await.must("the node still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_with_error_shape() {
    let (_node, cl) = setup(&["alice"]).await;
    let alice = &cl[0];
    let chat = alice.create_channel("general", "public").await.must("channel");
    let path = format!("/chats/{}/messages", chat.id);
    for (what, bytes) in [
        ("truncated JSON", br#"{"body": "#.to_vec()),
        ("not JSON", b"hello".to_vec()),
        ("wrong type", br#"{"body": 5}"#.to_vec()),
        ("missing field", br#"{}"#.to_vec()),
    ] {
        let r = alice.raw(Method::POST, &path, Body::RawJson(bytes)).await;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        let v =
            r.json().unwrap_or_else(|| panic!("{what}: error body must be JSON, got {:?}", r.body));
        let code = v.get("code").and_then(Value::as_str).unwrap_or_default();
        let msg = v.get("message").and_then(Value::as_str).unwrap_or_default();
        assert!(
            ["bad_request", "invalid_body"].contains(&code),
            "{what}: code must be bad_request or invalid_body: {v}"
        );
        assert!(!msg.is_empty(), "{what}: message must be a non-empty string: {v}");
    }
    let r = alice.raw(Method::POST, "/auth/login", Body::RawJson(b"[1,2".to_vec())).await;
    assert_eq!(r.status, 400, "malformed login: {}", r.body);
    assert!(r.code().is_some(), "malformed login has {{code,message}}: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_shapes_for_unknown_and_unauthenticated() {
    let (node, cl) = setup(&["alice"]).await;
    let alice = &cl[0];
    alice.chat("aaaaaaaaaaaaaaaaaaaaaaaaaa").await.err_is(404, "not_found", "unknown chat id");
    let chat = alice.create_channel("general", "public").await.must("channel");
    alice.get_message(&chat.id, "aaaaaaaaaaaaaaaaaaaaaaaaaa").await.err_is(
        404,
        "not_found",
        "unknown message id",
    );
    let anon = Client::for_node(&node);
    anon.chats().await.err_is(401, "unauthenticated", "chats without session");
    anon.send(&chat.id, "x").await.err_is(401, "unauthenticated", "send without session");
    let ids = [chat.id.as_str()];
    for id in ids {
        assert_eq!(id.len(), 26, "chat ids are 26 characters: {id}");
        assert!(
            id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "chat ids are lowercase base32: {id}"
        );
    }
    let m = alice.send(&chat.id, "id check").await.must("send");
    assert_eq!(m.id.len(), 32, "message ids are 32 characters: {}", m.id);
    assert!(m.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{}", m.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_websocket_frame_is_refused() {
    let (_node, cl) = setup(&["alice"]).await;
    let alice = &cl[0];
    let mut ws = alice.ws_ok(None).await;
    // A 1.2 MiB frame (limit 1 MiB) whose content would otherwise be valid: a padded ping.
    let frame = json!({"type": "ping", "pad": "y".repeat(1200 * 1024)});
    let _ = ws.send_json(&frame).await;
    let answer =
        ws.try_wait_for(EVENT_TIMEOUT, |v| ev_type(v) == "error" || ev_type(v) == "pong").await;
    match answer {
        Some(v) => assert_eq!(
            ev_type(&v),
            "error",
            "a 1.2 MiB frame exceeds the 1 MiB frame limit and must not be processed: {}",
            v
        ),
        None => assert!(
            ws.closed_reason().is_some(),
            "a 1.2 MiB frame (limit 1 MiB) must get an error or close the socket"
        ),
    }
}
