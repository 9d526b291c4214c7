//! Origin checks and confidentiality of private channels.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common::*;

const EVIL: &str = "http://evil.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_checks_origin_and_session() {
    let (node, cl) = setup(&["alice"]).await;
    let alice = &cl[0];
    let base = node.base_url();
    match WsClient::connect(&base, alice.cookie_header(), Some(EVIL), None).await {
        Ok(_) => panic!("WebSocket upgrade with Origin {EVIL} must be refused"),
        Err(e) => assert_eq!(e.status, Some(403), "foreign Origin upgrade: {e}"),
    }
    let other_port = format!("http://127.0.0.1:{}", node.port().wrapping_add(1));
    match WsClient::connect(&base, alice.cookie_header(), Some(&other_port), None).await {
        Ok(_) => panic!("WebSocket upgrade with Origin {other_port} (other port) must be refused"),
        Err(e) => assert_eq!(e.status, Some(403), "other-port Origin upgrade: {e}"),
    }
    match WsClient::connect(&base, alice.cookie_header(), None, None).await {
        Ok(_) => panic!("WebSocket upgrade without Origin must be refused (the spec requires it)"),
        Err(e) => assert_eq!(e.status, Some(403), "upgrade without Origin: {e}"),
    }
    match WsClient::connect(&base, None, Some(&base), None).await {
        Ok(_) => panic!("WebSocket upgrade without a session must be refused"),
        Err(e) => assert_eq!(e.status, Some(401), "upgrade without session: {e}"),
    }
    alice.ws_ok(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_with_foreign_origin_are_refused() {
    let (node, cl) = setup(&["alice"]).await;
    let alice = &cl[0];
    let chat = alice.create_channel("general", "public").await.must("channel");
    let evil = alice.with_origin(OriginMode::Custom(EVIL.to_string()));
    let r = evil
        .raw(
            Method::POST,
            &format!("/chats/{}/messages", chat.id),
            Body::Json(json!({"body": "csrf"})),
        )
        .await;
    assert_eq!(r.status, 403, "POST with a foreign Origin: {}", r.body);
    assert_eq!(r.code().as_deref(), Some("forbidden_origin"), "{}", r.body);
    evil.patch_me(json!({"status_text": "pwned"})).await.err_is(
        403,
        "forbidden_origin",
        "PATCH with a foreign Origin",
    );
    evil.delete(&chat.id, "aaaaaaaaaaaaaaaaaaaaaaaaaa").await.err_is(
        403,
        "forbidden_origin",
        "DELETE with a foreign Origin",
    );
    Client::for_node(&node)
        .with_origin(OriginMode::Custom(EVIL.to_string()))
        .login("alice", PASSWORD)
        .await
        .err_is(403, "forbidden_origin", "login with a foreign Origin");
    let page = alice.history(&chat.id, &HistoryQuery::default()).await.must("history");
    assert!(page.messages.is_empty(), "the refused POST stored nothing: {page:?}");
    assert_eq!(alice.me().await.must("me").status_text, "");

    // No Origin at all is allowed for non-browser clients.
    let plain = alice.with_origin(OriginMode::Omit);
    plain.send(&chat.id, "from curl").await.must("POST without Origin");
    // GET needs no Origin and a foreign one does not matter for reads.
    evil.me().await.must("GET with a foreign Origin is not state-changing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsider_sees_nothing_of_a_private_channel() {
    let (_node, cl) = setup(&["alice", "bob", "carol"]).await;
    let (alice, bob, carol) = (&cl[0], &cl[1], &cl[2]);
    let secret = alice.create_channel("secret", "private").await.must("private");
    alice.invite(&secret.id, "bob@local", None).await.must("invite bob");
    let public = public_channel(alice, "lobby", &[bob, carol]).await;
    let mut carol_ws = carol.ws_ok(None).await;
    let mut bob_ws = bob.ws_ok(None).await;

    let s1 = alice.send(&secret.id, "the secret plan").await.must("private send");
    alice.edit(&secret.id, &s1.id, "the secret plan v2").await.must("private edit");
    let s2 = bob.send(&secret.id, "agreed").await.must("private send bob");
    bob.read(&secret.id, &s1.id).await.must("private read");
    alice.patch_chat(&secret.id, json!({"topic": "hush"})).await.must("private topic");
    bob_ws.wait_created(&s2.id).await;
    let p = alice.send(&public.id, "public hello").await.must("public send");

    carol_ws.wait_created(&p.id).await;
    let seen = carol_ws.drain(QUIET).await;
    let leaks = about_chat(&seen, &secret.id);
    assert!(leaks.is_empty(), "outsider's WebSocket got private-channel events: {leaks:?}");
    let text: String = seen.iter().map(|v| v.to_string()).collect();
    assert!(
        !text.contains("secret plan") && !text.contains("agreed"),
        "private content leaked to the outsider: {text}"
    );

    // Over HTTP.
    carol.history(&secret.id, &HistoryQuery::default()).await.err_is(
        403,
        "not_a_member",
        "outsider history",
    );
    carol.get_message(&secret.id, &s1.id).await.err_is(403, "not_a_member", "outsider get message");
    carol.send(&secret.id, "hi").await.err_is(403, "not_a_member", "outsider send");
    carol.members(&secret.id).await.err_is(403, "not_a_member", "outsider members");
    carol.read(&secret.id, &s1.id).await.err_is(403, "not_a_member", "outsider read marker");
    let sync = carol.sync(None, Some(200)).await.must("sync");
    assert!(
        sync.messages.iter().all(|m| m.chat_id != secret.id),
        "sync must not include private messages: {sync:?}"
    );
    let chats = carol.chats().await.must("chats");
    assert!(chats.iter().all(|e| e.chat.id != secret.id), "not in the outsider's chat list");

    // A removed member stops getting events.
    let mut bob_ws2 = bob.ws_ok(None).await;
    alice.remove_member(&secret.id, "bob@local").await.must("remove bob");
    bob_ws2.wait_type("chat.left", |v| ev_chat_id(v) == Some(secret.id.as_str())).await;
    let s3 = alice.send(&secret.id, "bob is gone").await.must("send after removal");
    let p2 = alice.send(&public.id, "public again").await.must("public send");
    bob_ws2.wait_created(&p2.id).await;
    let after = bob_ws2.drain(Duration::from_millis(500)).await;
    assert!(
        !after.iter().any(|v| ev_message_id(v) == Some(s3.id.as_str())),
        "a removed member must not get new private messages: {after:?}"
    );
}
