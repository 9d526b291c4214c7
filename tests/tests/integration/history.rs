//! History paging, multi-device sync, idempotent sends.

use crate::common::*;

fn bodies(p: &Page) -> Vec<String> {
    p.messages.iter().map(|m| m.body.clone()).collect()
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("h{i:02}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_before_and_after() {
    let (_node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let chat = public_channel(alice, "general", &[bob]).await;
    let mut sent = Vec::new();
    for i in 0..25 {
        sent.push(alice.send(&chat.id, &format!("h{i:02}")).await.must("send"));
    }
    for w in sent.windows(2) {
        assert!(w[0].id < w[1].id, "ids sort by time: {} then {}", w[0].id, w[1].id);
    }

    let all = bob.history(&chat.id, &HistoryQuery::default()).await.must("default page");
    assert_eq!(bodies(&all), names(0..25), "default limit 50 returns all 25, oldest first");
    assert!(!all.has_more);

    let p = bob.history(&chat.id, &HistoryQuery::latest(10)).await.must("latest 10");
    assert_eq!(bodies(&p), names(15..25), "newest 10, oldest first");
    assert!(p.has_more, "older messages exist");
    let p = bob.history(&chat.id, &HistoryQuery::before(&sent[15].id, 10)).await.must("before h15");
    assert_eq!(bodies(&p), names(5..15), "before is exclusive");
    assert!(p.has_more);
    let p = bob.history(&chat.id, &HistoryQuery::before(&sent[5].id, 10)).await.must("before h05");
    assert_eq!(bodies(&p), names(0..5));
    assert!(!p.has_more, "nothing older than h00");

    let p = bob.history(&chat.id, &HistoryQuery::after(&sent[4].id, 5)).await.must("after h04");
    assert_eq!(bodies(&p), names(5..10), "after is exclusive, oldest first");
    assert!(p.has_more, "newer messages exist");
    let p = bob.history(&chat.id, &HistoryQuery::after(&sent[19].id, 50)).await.must("after h19");
    assert_eq!(bodies(&p), names(20..25));
    assert!(!p.has_more);
    let p = bob
        .history(&chat.id, &HistoryQuery::after(&sent[24].id, 50))
        .await
        .must("after the newest");
    assert!(p.messages.is_empty() && !p.has_more);

    let p = bob
        .history(
            &chat.id,
            &HistoryQuery {
                after: Some(sent[9].id.clone()),
                before: Some(sent[13].id.clone()),
                limit: Some(50),
            },
        )
        .await
        .must("between h09 and h13");
    assert_eq!(bodies(&p), names(10..13), "after and before together bound a range");

    let walked = bob.all_messages(&chat.id).await.must("walk");
    assert_eq!(walked.len(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_after_spans_the_users_chats() {
    let (_node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let chan = public_channel(alice, "general", &[bob]).await;
    let (_, dm) = alice.dm(&["bob@local"]).await.must("dm");
    let private = alice.create_channel("mine", "private").await.must("private");
    let mut expected = Vec::new();
    for i in 0..4 {
        expected.push(alice.send(&chan.id, &format!("c{i}")).await.must("send").id);
        alice.send(&private.id, &format!("p{i}")).await.must("send");
        expected.push(bob.send(&dm.id, &format!("d{i}")).await.must("send").id);
    }
    // Ids sort by time; across chats, sync orders by id.
    expected.sort();
    let all = bob.sync(None, Some(200)).await.must("sync all");
    let ids: Vec<_> = all.messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, expected, "every message of bob's chats, oldest first, nothing else");
    assert!(!all.has_more);

    let after = bob.sync(Some(&expected[3]), Some(200)).await.must("sync after");
    let ids: Vec<_> = after.messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, expected[4..].to_vec(), "sync?after= is exclusive");

    let limited = bob.sync(Some(&expected[0]), Some(2)).await.must("sync limit 2");
    let ids: Vec<_> = limited.messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, expected[1..3].to_vec());
    assert!(limited.has_more);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_id_makes_send_idempotent() {
    let (_node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let chat = public_channel(alice, "general", &[bob]).await;
    let (s1, m1) = alice.send_full(&chat.id, "once", None, Some("k-1")).await.must("first send");
    assert_eq!(s1, 201);
    let (s2, m2) = alice.send_full(&chat.id, "once", None, Some("k-1")).await.must("retry");
    assert_eq!(s2, 200, "a retry with the same client_id answers 200");
    assert_eq!(m2.id, m1.id, "a retry returns the same message");
    // Per user: bob may use the same client_id.
    let (s3, m3) =
        bob.send_full(&chat.id, "mine", None, Some("k-1")).await.must("other user same client_id");
    assert_eq!(s3, 201);
    assert_ne!(m3.id, m1.id);
    let all = alice.history(&chat.id, &HistoryQuery::default()).await.must("history");
    assert_eq!(all.messages.len(), 2, "the retry stored nothing new: {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limit_is_capped_at_200() {
    let (_node, cl) = setup(&["alice"]).await;
    let alice = &cl[0];
    let chat = alice.create_channel("general", "public").await.must("channel");
    for i in 0..205 {
        alice.send(&chat.id, &format!("m{i}")).await.must("send");
    }
    let p = alice.history(&chat.id, &HistoryQuery::latest(500)).await.must("limit=500");
    assert_eq!(p.messages.len(), 200, "limit is capped at 200");
    assert!(p.has_more);
    assert_eq!(p.messages.last().map(|m| m.body.as_str()), Some("m204"));
    let s = alice.sync(None, Some(500)).await.must("sync limit=500");
    assert!(s.messages.len() <= 200, "sync limit is bounded too: {}", s.messages.len());
    assert!(s.has_more);
    let walked = alice.all_messages(&chat.id).await.must("walk");
    assert_eq!(walked.len(), 205);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_id_longer_than_64_is_refused() {
    let (_node, cl) = setup(&["alice"]).await;
    let alice = &cl[0];
    let chat = alice.create_channel("general", "public").await.must("channel");
    alice
        .send_full(&chat.id, "ok", None, Some(&"k".repeat(64)))
        .await
        .must("64-character client_id");
    let e = alice
        .send_full(&chat.id, "too long id", None, Some(&"k".repeat(65)))
        .await
        .expect_err("a 65-character client_id must be refused");
    assert_eq!(e.status, 400, "65-character client_id: {e}");
}
