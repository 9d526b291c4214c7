//! Chat list: unread and mention counts, previews, ordering, read markers.

use std::time::Duration;

use crate::common::*;

fn entry<'a>(list: &'a [ChatListEntry], chat_id: &str) -> &'a ChatListEntry {
    list.iter()
        .find(|e| e.chat.id == chat_id)
        .unwrap_or_else(|| panic!("chat {chat_id} missing from the chat list: {list:?}"))
}

fn position(list: &[ChatListEntry], chat_id: &str) -> usize {
    list.iter()
        .position(|e| e.chat.id == chat_id)
        .unwrap_or_else(|| panic!("chat {chat_id} missing from the chat list"))
}

fn assert_sorted_by_activity(list: &[ChatListEntry]) {
    for w in list.windows(2) {
        assert!(
            w[0].last_activity_ms >= w[1].last_activity_ms,
            "GET /chats must be most recent activity first: {} ({}) before {} ({})",
            w[0].chat.id,
            w[0].last_activity_ms,
            w[1].chat.id,
            w[1].last_activity_ms
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_mentions_previews_and_order() {
    let (_node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let a = public_channel(alice, "alpha", &[bob]).await;
    let b = public_channel(alice, "beta", &[bob]).await;

    let m1 = alice.send(&a.id, "plain").await.must("send");
    let m2 = alice.send(&a.id, "hey @bob look").await.must("send");
    assert_eq!(m2.mentions, vec!["bob@local".to_string()]);
    assert!(!m2.mention_all);
    assert!(m1.mentions.is_empty() && !m1.mention_all);
    let m3 = alice.send(&a.id, "@channel meeting").await.must("send");
    assert!(m3.mention_all, "@channel sets mention_all: {m3:?}");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b1 = alice.send(&b.id, "beta news").await.must("send");

    let list = bob.chats().await.must("bob chats");
    assert_sorted_by_activity(&list);
    assert!(
        position(&list, &b.id) < position(&list, &a.id),
        "beta had the latest message so comes first"
    );
    let ea = entry(&list, &a.id);
    assert_eq!(ea.unread_count, 3, "alpha unread: {ea:?}");
    assert_eq!(ea.mention_count, 2, "@bob and @channel both count as mentions: {ea:?}");
    assert_eq!(ea.last_read, None);
    let last = ea.last_message.as_ref().expect("alpha has a last_message preview");
    assert_eq!((last.id.as_str(), last.body.as_str()), (m3.id.as_str(), "@channel meeting"));
    let eb = entry(&list, &b.id);
    assert_eq!((eb.unread_count, eb.mention_count), (1, 0), "beta: {eb:?}");
    assert_eq!(eb.last_message.as_ref().map(|m| m.id.as_str()), Some(b1.id.as_str()));

    // New activity in alpha moves it to the top.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let m4 = alice.send(&a.id, "one more").await.must("send");
    let list = bob.chats().await.must("bob chats");
    assert_sorted_by_activity(&list);
    assert_eq!(list[0].chat.id, a.id, "alpha has the latest activity now");
    assert_eq!(entry(&list, &a.id).unread_count, 4);

    // Reading moves the counts to zero and tells the other members.
    let mut alice_ws = alice.ws_ok(None).await;
    let e = bob.read(&a.id, &m4.id).await.must("read");
    assert_eq!((e.unread_count, e.mention_count), (0, 0), "after read: {e:?}");
    assert_eq!(e.last_read.as_deref(), Some(m4.id.as_str()));
    let ev = alice_ws
        .wait_type("read_marker", |v| {
            ev_chat_id(v) == Some(a.id.as_str())
                && v.get("user_id").and_then(|u| u.as_str()) == Some("bob@local")
        })
        .await;
    assert_eq!(ev.get("message_id").and_then(|m| m.as_str()), Some(m4.id.as_str()), "{ev}");
    let ea = bob.chat_entry(&a.id).await.must("entry").expect("listed");
    assert_eq!((ea.unread_count, ea.mention_count), (0, 0));

    // Read markers only move forward.
    let e = bob.read(&a.id, &m1.id).await.must("read an older message");
    assert_eq!(e.last_read.as_deref(), Some(m4.id.as_str()), "marker must not move back");
    assert_eq!(e.unread_count, 0);

    // New mentions after the marker count again.
    alice.send(&a.id, "ping @bob").await.must("send");
    alice.send(&a.id, "@here anyone?").await.must("send");
    let ea = bob.chat_entry(&a.id).await.must("entry").expect("listed");
    assert_eq!((ea.unread_count, ea.mention_count), (2, 2), "{ea:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mention_all_variants_and_ws_read() {
    let (_node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let chat = public_channel(alice, "general", &[bob]).await;
    for body in ["@channel hi", "hi @here", "@all hands"] {
        let m = alice.send(&chat.id, body).await.must("send");
        assert!(m.mention_all, "{body:?} sets mention_all");
    }
    let m = alice.send(&chat.id, "mail me at bob@example.com, @nobody").await.must("send");
    assert!(!m.mention_all);
    assert!(m.mentions.is_empty(), "an e-mail address and an unknown @name mention no user: {m:?}");

    let mut alice_ws = alice.ws_ok(None).await;
    let mut bob_ws = bob.ws_ok(None).await;
    bob_ws.send_read(&chat.id, &m.id).await;
    alice_ws
        .wait_type("read_marker", |v| {
            v.get("message_id").and_then(|x| x.as_str()) == Some(m.id.as_str())
        })
        .await;
    let e = bob.chat_entry(&chat.id).await.must("entry").expect("listed");
    assert_eq!(e.unread_count, 0, "WebSocket read frame moves the marker: {e:?}");
    assert_eq!(e.last_read.as_deref(), Some(m.id.as_str()));
}
