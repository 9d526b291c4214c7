//! Gossip on a channel topic between two and three nodes, and validation gating forwarding.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_exchange_gossip() {
    init_tracing();
    let a = start(1, test_config(), accept_all(), no_server()).await;
    let b = start(2, test_config(), accept_all(), no_server()).await;
    peer(&a, &b).await;
    let chat = chat(1);
    join_channel(chat, &[(&a, vec![b.peer]), (&b, vec![a.peer])]).await;
    wait_topic_peers(&a, chat, &[b.peer]).await;
    wait_topic_peers(&b, chat, &[a.peer]).await;

    let id = a.handle.publish(chat, b"hello from a".to_vec()).await.expect("publish");
    eventually("b receives", || async { b.received() == vec![b"hello from a".to_vec()] }).await;
    let message = b.record.lock().expect("lock").gossip[0].clone();
    assert_eq!(message.chat, chat);
    assert_eq!(message.id, id);
    assert_eq!(message.id.0, confab_net::gossip::message_id_of(b"hello from a"));
    assert_eq!(message.propagation_source, a.peer);
    assert_eq!(message.source, Some(a.peer));

    b.handle.publish(chat, b"hello from b".to_vec()).await.expect("publish");
    eventually("a receives", || async { a.received() == vec![b"hello from b".to_vec()] }).await;

    let peers = a.handle.peers().await.expect("peers");
    assert_eq!(peers.len(), 1);
    assert!(peers[0].connected);
    assert!(peers[0].last_seen.is_some());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_message_is_not_forwarded() {
    init_tracing();
    // A line: a — b — c. Only b can carry a's messages to c.
    let a = start(11, test_config(), accept_all(), no_server()).await;
    let b = start(12, test_config(), reject_bad(), no_server()).await;
    let c = start(13, test_config(), accept_all(), no_server()).await;
    peer(&a, &b).await;
    peer(&b, &c).await;
    let chat = chat(2);
    let all = vec![a.peer, b.peer, c.peer];
    join_channel(chat, &[(&a, all.clone()), (&b, all.clone()), (&c, all.clone())]).await;
    wait_topic_peers(&a, chat, &[b.peer]).await;
    wait_topic_peers(&b, chat, &[a.peer, c.peer]).await;
    wait_topic_peers(&c, chat, &[b.peer]).await;
    // Let a few heartbeats build the meshes.
    tokio::time::sleep(Duration::from_millis(600)).await;

    a.handle.publish(chat, b"good-1".to_vec()).await.expect("publish");
    eventually("c receives the accepted message through b", || async {
        c.received().contains(&b"good-1".to_vec())
    })
    .await;

    a.handle.publish(chat, b"bad-1".to_vec()).await.expect("publish");
    eventually("b receives the bad message", || async {
        b.received().contains(&b"bad-1".to_vec())
    })
    .await;
    a.handle.publish(chat, b"good-2".to_vec()).await.expect("publish");
    eventually("c receives the next good message", || async {
        c.received().contains(&b"good-2".to_vec())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!c.received().contains(&b"bad-1".to_vec()), "a rejected message was forwarded");
    let info = b.handle.peers().await.expect("peers");
    let a_info = info.iter().find(|p| p.peer == a.peer).expect("a listed");
    assert_eq!(a_info.rejected_messages, 1);
    assert!(!a_info.blacklisted);
    for node in [a, b, c] {
        node.stop().await;
    }
}

#[test]
fn identities_and_topics() {
    let key = org_key(9);
    let peer = confab_net::peer_id_of(&key).expect("peer id");
    assert_eq!(confab_net::org_public_key_of(&peer), Some(key));
    assert_eq!(confab_net::keypair_of(seed(9)).expect("keypair").public().to_peer_id(), peer);

    let chat = chat(5);
    let topic = confab_net::gossip::topic_of(&chat);
    assert_eq!(topic.to_string(), format!("confab/v1/chat/{chat}"));
    assert_eq!(confab_net::gossip::chat_of(&topic.hash()), Some(chat));
    assert_eq!(
        confab_net::gossip::chat_of(&libp2p::gossipsub::IdentTopic::new("confab/v1/chat/x").hash()),
        None
    );
    assert_eq!(
        confab_net::gossip::chat_of(&libp2p::gossipsub::IdentTopic::new("other").hash()),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_state_and_anti_entropy_ticks() {
    init_tracing();
    let config = NetConfig { anti_entropy_interval: Duration::from_millis(200), ..test_config() };
    let a = start(14, config, accept_all(), no_server()).await;
    let b = start(15, test_config(), accept_all(), no_server()).await;
    peer(&a, &b).await;
    eventually("anti-entropy tick lists the connected peer", || async {
        a.record.lock().expect("lock").anti_entropy.iter().any(|peers| peers == &vec![b.peer])
    })
    .await;
    a.handle.set_peer_lag(b.peer, Some(42)).await.expect("lag");
    eventually("ping measured", || async {
        a.handle.peers().await.expect("peers").iter().any(|p| p.rtt.is_some())
    })
    .await;
    let info = a.handle.peers().await.expect("peers");
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].peer, b.peer);
    assert_eq!(info[0].addrs, vec![b.addr.clone()]);
    assert_eq!(info[0].lag, Some(42));
    assert!(info[0].connected && info[0].last_seen.is_some() && !info[0].blacklisted);
    a.stop().await;
    b.stop().await;
}
