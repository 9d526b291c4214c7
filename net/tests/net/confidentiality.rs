//! A peered node that is not a member of a channel receives none of its content, by gossip or
//! by catch-up; admitting it later replays its subscription; revoking it disconnects it.

use super::*;
use confab_protocol::DocId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_member_receives_nothing() {
    init_tracing();
    let serve_all: Server = Arc::new(|_, _| {
        CatchupResponse::Page(confab_net::CatchupPage {
            changes: vec![b"secret".to_vec()],
            more: false,
            cursor: vec![],
        })
    });
    let a = start(61, test_config(), accept_all(), serve_all).await;
    let b = start(62, test_config(), accept_all(), no_server()).await;
    let nosy = start(63, test_config(), accept_all(), no_server()).await;
    peer(&a, &b).await;
    peer(&a, &nosy).await;
    peer(&b, &nosy).await;
    let chat = chat(6);
    // a and b are the members; nosy subscribes anyway (and would admit everybody).
    join_channel(chat, &[(&a, vec![b.peer]), (&b, vec![a.peer]), (&nosy, vec![a.peer, b.peer])])
        .await;
    wait_topic_peers(&a, chat, &[b.peer]).await;
    wait_topic_peers(&b, chat, &[a.peer]).await;
    eventually("nosy connected to both", || async {
        nosy.connected_to(&a.peer).await && nosy.connected_to(&b.peer).await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Neither member counts nosy as subscribed.
    assert_eq!(a.handle.topic_peers(chat).await.expect("tp"), vec![b.peer]);
    assert_eq!(b.handle.topic_peers(chat).await.expect("tp"), vec![a.peer]);

    for i in 0..5 {
        a.handle.publish(chat, format!("secret-a-{i}").into_bytes()).await.expect("publish");
        b.handle.publish(chat, format!("secret-b-{i}").into_bytes()).await.expect("publish");
    }
    eventually("members receive", || async { b.received().len() == 5 && a.received().len() == 5 })
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(nosy.received().is_empty(), "non-member received {:?}", nosy.received());

    // Messages nosy publishes on the topic are dropped by the members.
    nosy.handle.publish(chat, b"injected".to_vec()).await.ok();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!a.received().contains(&b"injected".to_vec()));
    assert!(!b.received().contains(&b"injected".to_vec()));

    // Catch-up requests from a non-member are refused without reaching the node.
    let response = nosy
        .handle
        .catchup(
            a.peer,
            CatchupRequest { doc: DocId::bucket(chat, 1), heads: vec![], cursor: vec![] },
        )
        .await
        .expect("answered");
    assert_eq!(response, CatchupResponse::Refused(confab_net::CatchupRefusal::NotMember));
    assert!(a.record.lock().expect("lock").catchup_requests.is_empty());
    // A member gets served.
    let response = b
        .handle
        .catchup(
            a.peer,
            CatchupRequest { doc: DocId::bucket(chat, 1), heads: vec![], cursor: vec![] },
        )
        .await
        .expect("answered");
    assert!(matches!(response, CatchupResponse::Page(_)));

    // Admitting nosy on a replays its withheld subscription: it now receives a's messages.
    a.handle.set_channel_members(chat, vec![b.peer, nosy.peer]).await.expect("members");
    wait_topic_peers(&a, chat, &[b.peer, nosy.peer]).await;
    a.handle.publish(chat, b"welcome".to_vec()).await.expect("publish");
    eventually("admitted peer receives", || async {
        nosy.received().contains(&b"welcome".to_vec())
    })
    .await;

    // Revoking it again disconnects it; after reconnecting it is filtered again.
    let disconnects =
        a.record.lock().expect("lock").disconnected.iter().filter(|p| **p == nosy.peer).count();
    a.handle.set_channel_members(chat, vec![b.peer]).await.expect("members");
    eventually("revoked peer disconnected", || async {
        a.record.lock().expect("lock").disconnected.iter().filter(|p| **p == nosy.peer).count()
            > disconnects
    })
    .await;
    assert!(b.connected_to(&a.peer).await, "members stay connected");
    eventually("revoked peer reconnects", || async { a.connected_to(&nosy.peer).await }).await;
    // Its subscription arrives again after reconnecting and is withheld: give it time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_topic_peers(&a, chat, &[b.peer]).await;
    let before = nosy.received().len();
    a.handle.publish(chat, b"after-revocation".to_vec()).await.expect("publish");
    eventually("member receives", || async {
        b.received().contains(&b"after-revocation".to_vec())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(nosy.received().len(), before, "revoked peer received {:?}", nosy.received());
    for node in [a, b, nosy] {
        node.stop().await;
    }
}
