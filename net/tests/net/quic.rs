//! QUIC (`/udp/<port>/quic-v1`, TLS 1.3 with the libp2p identity) as the only transport: peering,
//! gossip, catch-up and the consent gate work as over TCP.

use super::*;
use confab_net::CatchupPage;
use confab_protocol::DocId;

fn quic_config() -> NetConfig {
    NetConfig {
        listen_addrs: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr")],
        ..test_config()
    }
}

fn one_page_server() -> Server {
    Arc::new(|_, _| {
        CatchupResponse::Page(CatchupPage {
            changes: vec![b"change over quic".to_vec()],
            more: false,
            cursor: Vec::new(),
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_gossip_and_catch_up_over_quic() {
    init_tracing();
    let a = start(91, quic_config(), accept_all(), no_server()).await;
    let b = start(92, quic_config(), accept_all(), one_page_server()).await;
    assert!(a.addr.to_string().contains("/quic-v1"), "a listens on QUIC: {}", a.addr);
    peer(&a, &b).await;
    eventually("connected over QUIC", || async {
        a.connected_to(&b.peer).await && b.connected_to(&a.peer).await
    })
    .await;
    let chat = chat(91);
    join_channel(chat, &[(&a, vec![b.peer]), (&b, vec![a.peer])]).await;
    wait_topic_peers(&a, chat, &[b.peer]).await;
    a.handle.publish(chat, b"gossip over quic".to_vec()).await.expect("publish");
    eventually("b receives", || async { b.received() == vec![b"gossip over quic".to_vec()] }).await;

    let response = a
        .handle
        .catchup(
            b.peer,
            CatchupRequest { doc: DocId::control(chat), heads: Vec::new(), cursor: Vec::new() },
        )
        .await
        .expect("catch-up over QUIC");
    match response {
        CatchupResponse::Page(page) => {
            assert_eq!(page.changes, vec![b"change over quic".to_vec()]);
        }
        other => panic!("unexpected answer {other:?}"),
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stranger_is_refused_over_quic() {
    init_tracing();
    let a = start(93, quic_config(), accept_all(), no_server()).await;
    let stranger = start(94, quic_config(), accept_all(), no_server()).await;
    stranger.handle.add_peer(a.peer, vec![a.addr.clone()]).await.expect("add");
    eventually("a refuses the stranger", || async {
        a.record.lock().expect("lock").refused.iter().any(|e| {
            matches!(e, NetEvent::ConnectionRefused { peer: Some(p), inbound: true, reason: confab_net::consent::Refusal::NotAllowListed } if *p == stranger.peer)
        })
    })
    .await;
    // a never admits the stranger. (The stranger's own side may count a QUIC connection as
    // established for the moment between its handshake and a's refusal, and it redials with
    // backoff, so its view is not what is checked.)
    assert!(a.handle.peers().await.expect("peers").is_empty());
    eventually("the stranger records the refusal", || async {
        stranger.handle.peers().await.expect("peers").iter().any(|p| p.last_error.is_some())
    })
    .await;
    let refused = stranger
        .handle
        .catchup(
            a.peer,
            CatchupRequest { doc: DocId::control(chat(93)), heads: Vec::new(), cursor: Vec::new() },
        )
        .await;
    assert!(!matches!(refused, Ok(CatchupResponse::Page(_))), "a stranger got a page: {refused:?}");
    a.stop().await;
    stranger.stop().await;
}
