//! Former members of a chat (organisations removed from it) may fetch the chat's control
//! document by catch-up, so that they can learn the signed change that removed them, and
//! nothing else: no history bucket, no gossip.

use super::*;
use confab_net::{CatchupPage, CatchupRefusal, NetError};
use confab_protocol::DocId;

fn request(doc: DocId) -> CatchupRequest {
    CatchupRequest { doc, heads: vec![], cursor: vec![] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn former_member_fetches_control_document_only() {
    init_tracing();
    // The server answers every request that reaches it: the refusals below are the actor's.
    let serve_all: Server = Arc::new(|_, _| {
        CatchupResponse::Page(CatchupPage {
            changes: vec![b"removal".to_vec()],
            more: false,
            cursor: vec![],
        })
    });
    let mut small = test_config();
    small.max_allowed_peers = 2;
    let a = start(81, small, accept_all(), serve_all).await;
    let former = start(82, test_config(), accept_all(), no_server()).await;
    let member = start(83, test_config(), accept_all(), no_server()).await;
    peer(&a, &former).await;
    peer(&a, &member).await;
    let (chat, other_chat) = (chat(0x80), chat(0x81));

    // The per-chat cap is that of the member set.
    let three = vec![former.peer, member.peer, a.peer];
    assert_eq!(
        a.handle.set_channel_former_members(chat, three.clone()).await,
        Err(NetError::Limit("channel former members"))
    );
    assert!(matches!(a.handle.set_channel_members(chat, three).await, Err(NetError::Limit(_))));

    // `former` was removed from the chat on a; it still believes it is a member (and admits a).
    a.handle.set_channel_former_members(chat, vec![former.peer]).await.expect("former members");
    join_channel(
        chat,
        &[(&a, vec![member.peer]), (&former, vec![a.peer]), (&member, vec![a.peer])],
    )
    .await;
    wait_topic_peers(&a, chat, &[member.peer]).await;
    eventually("former member connected", || async { former.connected_to(&a.peer).await }).await;
    // Give former's subscription time to arrive: it is withheld, not admitted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.handle.topic_peers(chat).await.expect("topic peers"), vec![member.peer]);

    // a's messages reach the member only; former's messages are dropped by a.
    a.handle.publish(chat, b"after-removal".to_vec()).await.expect("publish");
    former.handle.publish(chat, b"from-former".to_vec()).await.ok();
    eventually("member receives", || async {
        member.received().contains(&b"after-removal".to_vec())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(former.received().is_empty(), "former member received {:?}", former.received());
    assert!(!a.received().contains(&b"from-former".to_vec()));

    // The control document: reaches a's node, which answers with a page.
    let response =
        former.handle.catchup(a.peer, request(DocId::control(chat))).await.expect("answered");
    assert!(
        matches!(&response, CatchupResponse::Page(page) if page.changes == vec![b"removal".to_vec()]),
        "{response:?}"
    );
    assert_eq!(
        a.record.lock().expect("lock").catchup_requests,
        vec![(former.peer, request(DocId::control(chat)))]
    );

    // A history bucket, or another chat's control document: refused by the actor.
    for doc in [DocId::bucket(chat, 1), DocId::bucket(chat, 7), DocId::control(other_chat)] {
        let response = former.handle.catchup(a.peer, request(doc)).await.expect("answered");
        assert_eq!(response, CatchupResponse::Refused(CatchupRefusal::NotMember), "{doc}");
    }
    assert_eq!(a.record.lock().expect("lock").catchup_requests.len(), 1);

    // Clearing the former-member set withdraws the control document too.
    a.handle.set_channel_former_members(chat, vec![]).await.expect("former members");
    let response =
        former.handle.catchup(a.peer, request(DocId::control(chat))).await.expect("answered");
    assert_eq!(response, CatchupResponse::Refused(CatchupRefusal::NotMember));
    assert_eq!(a.record.lock().expect("lock").catchup_requests.len(), 1);

    // The member is served any document of the chat.
    let response =
        member.handle.catchup(a.peer, request(DocId::bucket(chat, 1))).await.expect("answered");
    assert!(matches!(response, CatchupResponse::Page(_)), "{response:?}");
    for node in [a, former, member] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_in_both_sets_is_a_member() {
    init_tracing();
    let serve_all: Server = Arc::new(|_, _| CatchupResponse::Page(CatchupPage::default()));
    let a = start(84, test_config(), accept_all(), serve_all).await;
    let b = start(85, test_config(), accept_all(), no_server()).await;
    peer(&a, &b).await;
    let chat = chat(0x82);
    a.handle.set_channel_former_members(chat, vec![b.peer]).await.expect("former members");
    join_channel(chat, &[(&a, vec![b.peer]), (&b, vec![a.peer])]).await;
    wait_topic_peers(&a, chat, &[b.peer]).await;
    a.handle.publish(chat, b"hello".to_vec()).await.expect("publish");
    eventually("member receives", || async { b.received().contains(&b"hello".to_vec()) }).await;
    for doc in [DocId::control(chat), DocId::bucket(chat, 1)] {
        let response = b.handle.catchup(a.peer, request(doc)).await.expect("answered");
        assert!(matches!(response, CatchupResponse::Page(_)), "{doc}: {response:?}");
    }
    assert_eq!(a.record.lock().expect("lock").catchup_requests.len(), 2);
    a.stop().await;
    b.stop().await;
}
