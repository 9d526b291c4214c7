//! Message states `sent` → `received` → `viewed`, as seen by the author.

use std::time::Duration;

use crate::common::*;

fn is_state(v: &serde_json::Value, id: &str, state: &str) -> bool {
    ev_type(v) == "message.state"
        && v.get("message_id").and_then(|x| x.as_str()) == Some(id)
        && v.get("state").and_then(|x| x.as_str()) == Some(state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_then_viewed_in_a_dm() {
    let (_node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let (_, dm) = alice.dm(&["bob@local"]).await.must("dm");
    let mut alice_ws = alice.ws_ok(None).await;
    let mut bob_ws = bob.ws_ok(None).await;

    let m = alice.send(&dm.id, "are you there?").await.must("send");
    bob_ws.wait_created(&m.id).await;
    let ev = alice_ws.wait_for("message.state received", |v| is_state(v, &m.id, "received")).await;
    assert_eq!(ev_chat_id(&ev), Some(dm.id.as_str()), "{ev}");
    assert_eq!(
        alice.get_message(&dm.id, &m.id).await.must("get").state,
        "received",
        "the state field follows delivery"
    );

    bob.read(&dm.id, &m.id).await.must("bob reads");
    alice_ws.wait_for("message.state viewed", |v| is_state(v, &m.id, "viewed")).await;
    assert_eq!(alice.get_message(&dm.id, &m.id).await.must("get").state, "viewed");

    // message.state goes only to the author.
    let bob_events = bob_ws.drain(QUIET).await;
    assert!(
        !bob_events.iter().any(|v| ev_type(v) == "message.state"),
        "the recipient must not get message.state of others' messages: {bob_events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stays_sent_while_recipient_offline() {
    let (_node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let (_, dm) = alice.dm(&["bob@local"]).await.must("dm");
    let mut alice_ws = alice.ws_ok(None).await;
    let m = alice.send(&dm.id, "later").await.must("send");
    assert_eq!(m.state, "sent");
    let evs = alice_ws.drain(Duration::from_millis(800)).await;
    assert!(
        !evs.iter().any(|v| is_state(v, &m.id, "received")),
        "no WebSocket of bob's got the message, so it is not `received`: {evs:?}"
    );
    assert_eq!(alice.get_message(&dm.id, &m.id).await.must("get").state, "sent");
    bob.read(&dm.id, &m.id).await.must("bob reads over HTTP");
    alice_ws.wait_for("message.state viewed", |v| is_state(v, &m.id, "viewed")).await;
    assert_eq!(alice.get_message(&dm.id, &m.id).await.must("get").state, "viewed");
}
