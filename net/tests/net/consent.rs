//! Peering by explicit consent: connections with non-allow-listed peers are refused.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_allow_listed_peer_is_refused() {
    init_tracing();
    let a = start(31, test_config(), accept_all(), no_server()).await;
    let stranger = start(32, test_config(), accept_all(), no_server()).await;
    // Only the stranger consents; a does not.
    stranger.handle.add_peer(a.peer, vec![a.addr.clone()]).await.expect("add");
    eventually("a refuses the stranger", || async {
        a.record.lock().expect("lock").refused.iter().any(|e| {
            matches!(e, NetEvent::ConnectionRefused { peer: Some(p), inbound: true, reason: confab_net::consent::Refusal::NotAllowListed } if *p == stranger.peer)
        })
    })
    .await;
    assert!(a.handle.peers().await.expect("peers").is_empty());
    // The stranger never holds a connection: its dials keep failing and are retried.
    eventually("stranger records the failure", || async {
        stranger.handle.peers().await.expect("peers").iter().any(|p| p.last_error.is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stranger.connected_to(&a.peer).await);

    // A dial to a peer that is not allow-listed is refused locally.
    let chat = chat(4);
    a.handle.set_channel_members(chat, vec![stranger.peer]).await.expect("members");
    a.handle.subscribe(chat).await.expect("subscribe");
    let err = a
        .handle
        .catchup(
            stranger.peer,
            CatchupRequest {
                doc: confab_protocol::DocId::control(chat),
                heads: vec![],
                cursor: vec![],
            },
        )
        .await
        .expect_err("not connected");
    assert!(matches!(err, confab_net::NetError::NotConnected(_)));

    // Once a consents too, they connect.
    a.handle.add_peer(stranger.peer, vec![stranger.addr.clone()]).await.expect("add");
    eventually("connected after mutual consent", || async { a.connected_to(&stranger.peer).await })
        .await;
    a.stop().await;
    stranger.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_peer_is_disconnected_and_refused() {
    init_tracing();
    let a = start(33, test_config(), accept_all(), no_server()).await;
    let b = start(34, test_config(), accept_all(), no_server()).await;
    peer(&a, &b).await;
    eventually("connected", || async { a.connected_to(&b.peer).await }).await;
    a.handle.remove_peer(b.peer).await.expect("remove");
    eventually("b sees the disconnection", || async { !b.connected_to(&a.peer).await }).await;
    eventually("b's redial refused", || async {
        a.record
            .lock()
            .expect("lock")
            .refused
            .iter()
            .any(|e| matches!(e, NetEvent::ConnectionRefused { peer: Some(p), .. } if *p == b.peer))
    })
    .await;
    assert!(a.handle.peers().await.expect("peers").is_empty());
    a.stop().await;
    b.stop().await;
}
