//! Channels, DMs, membership, roles, editing and deleting, live over WebSocket.

use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_channel_both_directions_live() {
    let (_node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let (status, chat) = alice
        .create_channel_with(
            json!({"name": "general", "topic": "all things", "visibility": "public"}),
        )
        .await
        .must("create channel");
    assert_eq!(status, 201, "channel creation answers 201");
    assert_eq!(chat.kind, "channel");
    assert_eq!(chat.visibility, "public");
    assert_eq!(chat.name.as_deref(), Some("general"));
    assert_eq!(chat.topic.as_deref(), Some("all things"));
    assert_eq!(chat.owner_org, "local");
    assert!(chat.joined);
    assert_eq!(chat.my_role.as_deref(), Some("owner"));
    assert_eq!(chat.member_count, 1);

    let listed = bob.channels().await.must("bob's channel browser");
    let seen = listed
        .iter()
        .find(|c| c.id == chat.id)
        .unwrap_or_else(|| panic!("public channel missing from bob's channel browser: {listed:?}"));
    assert!(!seen.joined);
    let peek = bob.chat(&chat.id).await.must("non-member reads a public chat");
    assert!(!peek.joined);
    assert_eq!(peek.my_role, None);

    let mut bob_ws = bob.ws_ok(None).await;
    let joined = bob.join(&chat.id).await.must("bob joins");
    assert!(joined.joined);
    assert_eq!(joined.my_role.as_deref(), Some("member"));
    assert_eq!(joined.member_count, 2);
    let ev = bob_ws.wait_type("chat.joined", |v| ev_chat_id(v) == Some(chat.id.as_str())).await;
    assert!(ev_cursor(&ev).is_some(), "events carry a cursor: {ev}");

    let mut members = alice.members(&chat.id).await.must("members");
    members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    assert_eq!(
        members,
        vec![
            Member { user_id: "alice@local".into(), role: "owner".into() },
            Member { user_id: "bob@local".into(), role: "member".into() },
        ]
    );

    let mut alice_ws = alice.ws_ok(None).await;
    let m1 = alice.send(&chat.id, "hello bob").await.must("alice sends");
    assert_eq!(m1.author, "alice@local");
    assert_eq!(m1.chat_id, chat.id);
    assert_eq!(m1.body, "hello bob");
    assert!(!m1.deleted);
    assert_eq!(m1.reply_to, None);
    assert!(
        m1.state == "sent" || m1.state == "received",
        "a new message is `sent` (or already `received`): {m1:?}"
    );
    let ev = bob_ws.wait_created(&m1.id).await;
    let got = ev_message(&ev);
    assert_eq!((got.body.as_str(), got.author.as_str()), ("hello bob", "alice@local"));
    // The author's own other devices see it too.
    alice_ws.wait_created(&m1.id).await;

    let (st, m2) =
        bob.send_full(&chat.id, "hi alice", Some(&m1.id), None).await.must("bob replies");
    assert_eq!(st, 201, "send answers 201");
    assert_eq!(m2.reply_to.as_deref(), Some(m1.id.as_str()));
    let ev = alice_ws.wait_created(&m2.id).await;
    let got = ev_message(&ev);
    assert_eq!(got.author, "bob@local");
    assert_eq!(got.reply_to.as_deref(), Some(m1.id.as_str()));
    assert!(m2.id > m1.id, "message ids sort by time: {} then {}", m1.id, m2.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_both_directions() {
    let (_node, cl) = setup(&["alice", "bob", "carol"]).await;
    let (alice, bob, carol) = (&cl[0], &cl[1], &cl[2]);
    let mut bob_ws = bob.ws_ok(None).await;
    let mut alice_ws = alice.ws_ok(None).await;
    let (st, dm) = alice.dm(&["bob@local"]).await.must("create dm");
    assert_eq!(st, 201, "a new DM answers 201");
    assert_eq!(dm.kind, "dm");
    assert_eq!(dm.visibility, "dm");
    assert_eq!(dm.member_count, 2);
    let (st, again) = alice.dm(&["bob@local"]).await.must("dm again");
    assert_eq!((st, again.id.as_str()), (200, dm.id.as_str()), "one DM per set of people");
    let (st, from_bob) = bob.dm(&["alice@local"]).await.must("dm from bob's side");
    assert_eq!((st, from_bob.id.as_str()), (200, dm.id.as_str()), "same DM from the other side");

    let m = alice.send(&dm.id, "psst").await.must("alice → bob");
    assert_eq!(ev_message(&bob_ws.wait_created(&m.id).await).body, "psst");
    let r = bob.send(&dm.id, "yes?").await.must("bob → alice");
    assert_eq!(ev_message(&alice_ws.wait_created(&r.id).await).body, "yes?");

    carol.chat(&dm.id).await.err_is(403, "not_a_member", "outsider reads a DM");
    carol.history(&dm.id, &HistoryQuery::default()).await.err_is(
        403,
        "not_a_member",
        "outsider reads DM history",
    );
    carol.send(&dm.id, "let me in").await.err_is(403, "not_a_member", "outsider posts into a DM");
    let listed = bob.chats().await.must("bob's chats");
    assert!(listed.iter().any(|e| e.chat.id == dm.id), "DM in bob's chat list");
    // A group DM is a different chat.
    let (st, group) = alice.dm(&["bob@local", "carol@local"]).await.must("group dm");
    assert_eq!(st, 201);
    assert_ne!(group.id, dm.id);
    assert_eq!(group.member_count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_and_delete_propagate_live() {
    let (_node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let chat = public_channel(alice, "general", &[bob]).await;
    let mut bob_ws = bob.ws_ok(None).await;
    let m = alice.send(&chat.id, "draft").await.must("send");
    bob_ws.wait_created(&m.id).await;

    let e = alice.edit(&chat.id, &m.id, "final").await.must("edit");
    assert_eq!(e.id, m.id);
    assert_eq!(e.body, "final");
    assert!(e.edited_ms.is_some(), "an edited message has edited_ms: {e:?}");
    assert_eq!(e.created_ms, m.created_ms, "edit keeps created_ms");
    let ev = bob_ws.wait_type("message.edited", |v| ev_message_id(v) == Some(m.id.as_str())).await;
    let got = ev_message(&ev);
    assert_eq!(got.body, "final");
    assert!(got.edited_ms.is_some());
    assert_eq!(bob.get_message(&chat.id, &m.id).await.must("get").body, "final");

    let d = alice.delete(&chat.id, &m.id).await.must("delete");
    assert_eq!((d.id.as_str(), d.author.as_str()), (m.id.as_str(), "alice@local"));
    assert!(d.deleted);
    assert_eq!(d.body, "", "a deleted message has an empty body");
    assert_eq!(d.state, "deleted");
    assert_eq!(d.created_ms, m.created_ms, "delete keeps timestamps");
    let ev = bob_ws.wait_type("message.deleted", |v| ev_message_id(v) == Some(m.id.as_str())).await;
    let got = ev_message(&ev);
    assert!(got.deleted && got.body.is_empty() && got.state == "deleted", "{ev}");
    let page = bob.history(&chat.id, &HistoryQuery::default()).await.must("history");
    let kept = page
        .messages
        .iter()
        .find(|x| x.id == m.id)
        .unwrap_or_else(|| panic!("a deleted message keeps its place in history: {page:?}"));
    assert!(kept.deleted && kept.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_and_delete_permissions() {
    let (_node, cl) = setup(&["alice", "bob", "carol"]).await;
    let (alice, bob, carol) = (&cl[0], &cl[1], &cl[2]);
    // bob owns the channel; alice is the node admin; carol is a member.
    let chat = public_channel(bob, "bobs", &[carol]).await;
    let mut carol_ws = carol.ws_ok(None).await;
    let by_bob = bob.send(&chat.id, "owner speaks").await.must("bob sends");
    let by_carol = carol.send(&chat.id, "member speaks").await.must("carol sends");
    let by_carol2 = carol.send(&chat.id, "member again").await.must("carol sends");

    carol.edit(&chat.id, &by_bob.id, "hacked").await.err_is(403, "forbidden", "non-author edits");
    bob.edit(&chat.id, &by_carol.id, "moderated text").await.err_is(
        403,
        "forbidden",
        "even the owner cannot edit another's message",
    );
    carol.delete(&chat.id, &by_bob.id).await.err_is(
        403,
        "forbidden",
        "member deletes another's message",
    );

    // The channel owner moderates.
    let d = bob.delete(&chat.id, &by_carol.id).await.must("owner deletes a member's message");
    assert!(d.deleted);
    carol_ws.wait_type("message.deleted", |v| ev_message_id(v) == Some(by_carol.id.as_str())).await;
    // The node admin too.
    alice.join(&chat.id).await.must("admin joins");
    let d = alice.delete(&chat.id, &by_carol2.id).await.must("node admin deletes a message");
    assert!(d.deleted);
    assert_eq!(
        bob.get_message(&chat.id, &by_bob.id).await.must("get").body,
        "owner speaks",
        "refused edits change nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_channel_membership_and_roles() {
    let (_node, cl) = setup(&["alice", "bob", "carol"]).await;
    let (alice, bob, carol) = (&cl[0], &cl[1], &cl[2]);
    let chat = alice.create_channel("secret", "private").await.must("create private");
    assert_eq!(chat.visibility, "private");
    let listed = bob.channels().await.must("channels");
    assert!(
        listed.iter().all(|c| c.id != chat.id),
        "a private channel must not appear in a non-member's channel browser"
    );
    bob.chat(&chat.id).await.err_is(403, "not_a_member", "non-member reads private chat");
    let e = bob.join(&chat.id).await.expect_err("joining a private channel must fail");
    assert!(e.status == 403 || e.status == 404, "join private: {e}");

    let mut bob_ws = bob.ws_ok(None).await;
    let m = alice.invite(&chat.id, "bob@local", None).await.must("invite bob");
    assert_eq!(m, Member { user_id: "bob@local".into(), role: "member".into() });
    bob_ws.wait_type("chat.joined", |v| ev_chat_id(v) == Some(chat.id.as_str())).await;
    alice.invite(&chat.id, "bob@local", None).await.err_is(409, "", "invite an existing member");
    assert!(bob.channels().await.must("channels").iter().any(|c| c.id == chat.id));
    assert_eq!(bob.members(&chat.id).await.must("members").len(), 2);

    bob.invite(&chat.id, "carol@local", None).await.err_is(
        403,
        "forbidden",
        "plain member invites into a private channel",
    );
    let r = alice.set_role(&chat.id, "bob@local", "admin").await.must("make bob admin");
    assert_eq!(r.role, "admin");
    let mut carol_ws = carol.ws_ok(None).await;
    bob.invite(&chat.id, "carol@local", None).await.must("channel admin invites");
    carol_ws.wait_type("chat.joined", |v| ev_chat_id(v) == Some(chat.id.as_str())).await;
    bob.set_role(&chat.id, "carol@local", "admin").await.err_is(
        403,
        "forbidden",
        "only the owner sets roles",
    );
    assert_eq!(bob.remove_member(&chat.id, "carol@local").await.must("admin removes carol"), 204);
    carol_ws.wait_type("chat.left", |v| ev_chat_id(v) == Some(chat.id.as_str())).await;
    carol.history(&chat.id, &HistoryQuery::default()).await.err_is(
        403,
        "not_a_member",
        "removed member reads history",
    );
    assert_eq!(bob.leave(&chat.id).await.must("bob leaves"), 204);
    bob_ws.wait_type("chat.left", |v| ev_chat_id(v) == Some(chat.id.as_str())).await;
    let members = alice.members(&chat.id).await.must("members");
    assert_eq!(members, vec![Member { user_id: "alice@local".into(), role: "owner".into() }]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_channel_invites_and_patch() {
    let (_node, cl) = setup(&["alice", "bob", "carol"]).await;
    let (alice, bob, carol) = (&cl[0], &cl[1], &cl[2]);
    let chat = public_channel(alice, "town", &[bob]).await;
    let m = bob
        .invite(&chat.id, "carol@local", None)
        .await
        .must("any member invites into a public channel");
    assert_eq!(m.role, "member");
    assert!(carol.chat(&chat.id).await.must("carol's view").joined);

    let mut carol_ws = carol.ws_ok(None).await;
    let c = bob
        .patch_chat(&chat.id, json!({"topic": "new topic"}))
        .await
        .must("member changes the topic");
    assert_eq!(c.topic.as_deref(), Some("new topic"));
    carol_ws.wait_type("chat.updated", |v| ev_chat_id(v) == Some(chat.id.as_str())).await;
    bob.patch_chat(&chat.id, json!({"name": "bobtown"})).await.err_is(
        403,
        "forbidden",
        "member renames",
    );
    let c = alice.patch_chat(&chat.id, json!({"name": "city"})).await.must("owner renames");
    assert_eq!(c.name.as_deref(), Some("city"));
    assert_eq!(carol.chat(&chat.id).await.must("get").name.as_deref(), Some("city"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dm_takes_one_to_eight_others() {
    let names: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (_node, cl) = setup(&refs).await;
    let ids: Vec<String> = names[1..].iter().map(|n| user_id(n)).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (st, eight) = cl[0].dm(&id_refs[..8]).await.must("DM with 8 others");
    assert_eq!(st, 201);
    assert_eq!(eight.member_count, 9);
    let e = cl[0].dm(&id_refs[..9]).await.expect_err("a DM with 9 others must be refused");
    assert_eq!(e.status, 400, "9 others: {e}");
    let e = cl[0].dm(&[]).await.expect_err("a DM with nobody must be refused");
    assert_eq!(e.status, 400, "no others: {e}");
    let e =
        cl[0].dm(&["ghost@local"]).await.expect_err("a DM with an unknown user must be refused");
    assert!(e.status == 400 || e.status == 404, "unknown user: {e}");
}
