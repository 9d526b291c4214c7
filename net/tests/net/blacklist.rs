//! A peer that keeps sending invalid messages is blacklisted: disconnected and refused, while
//! honest traffic keeps flowing.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_offender_is_blacklisted_and_honest_traffic_flows() {
    init_tracing();
    let mut victim_config = test_config();
    victim_config.blacklist_after_rejects = 3;
    let victim = start(21, victim_config, reject_bad(), no_server()).await;
    let honest = start(22, test_config(), accept_all(), no_server()).await;
    let mallory = start(23, test_config(), accept_all(), no_server()).await;
    peer(&victim, &honest).await;
    peer(&victim, &mallory).await;
    let chat = chat(3);
    let all = vec![victim.peer, honest.peer, mallory.peer];
    join_channel(chat, &[(&victim, all.clone()), (&honest, all.clone()), (&mallory, all.clone())])
        .await;
    wait_topic_peers(&victim, chat, &[honest.peer, mallory.peer]).await;
    wait_topic_peers(&mallory, chat, &[victim.peer]).await;
    wait_topic_peers(&honest, chat, &[victim.peer]).await;

    for i in 0..3 {
        mallory.handle.publish(chat, format!("bad-{i}").into_bytes()).await.expect("publish");
        honest.handle.publish(chat, format!("good-{i}").into_bytes()).await.expect("publish");
    }
    eventually("mallory blacklisted", || async {
        victim.record.lock().expect("lock").blacklisted.contains(&mallory.peer)
    })
    .await;
    eventually("mallory disconnected", || async { !victim.connected_to(&mallory.peer).await })
        .await;

    // Mallory keeps dialing (the victim is on its allow-list); every attempt is refused.
    eventually("a reconnection attempt refused as blacklisted", || async {
        victim.record.lock().expect("lock").refused.iter().any(|e| {
            matches!(e, NetEvent::ConnectionRefused { peer: Some(p), reason: confab_net::consent::Refusal::Blacklisted, .. } if *p == mallory.peer)
        })
    })
    .await;
    let peers = victim.handle.peers().await.expect("peers");
    let info = peers.iter().find(|p| p.peer == mallory.peer).expect("listed");
    assert!(info.blacklisted);
    assert!(!info.connected);
    assert_eq!(info.rejected_messages, 3);
    if let Some(score) = info.score {
        assert!(score < 0.0, "score of an offender should be negative, got {score}");
    }

    // Honest traffic keeps flowing.
    honest.handle.publish(chat, b"good-after".to_vec()).await.expect("publish");
    eventually("honest message after the blacklisting", || async {
        victim.received().contains(&b"good-after".to_vec())
    })
    .await;
    for i in 0..3 {
        assert!(victim.received().contains(&format!("good-{i}").into_bytes()));
    }
    assert!(victim.connected_to(&honest.peer).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!victim.connected_to(&mallory.peer).await, "blacklisted peer reconnected");

    // Unblocking lets it back in.
    victim.handle.unblock_peer(mallory.peer).await.expect("unblock");
    eventually("reconnected after unblock", || async { victim.connected_to(&mallory.peer).await })
        .await;
    for node in [victim, honest, mallory] {
        node.stop().await;
    }
}

/// An offender that sends one invalid message at a time, slowly, is blacklisted too. Gossipsub
/// graylists it after about three rejections (P4 −10 × count² below −80) and from then on drops
/// its messages before the node judges them, so the node's count of rejections alone would stall
/// below `blacklist_after_rejects`; the graylisting itself blacklists the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_offender_is_blacklisted_when_graylisted() {
    init_tracing();
    let victim_config = test_config();
    let threshold = victim_config.blacklist_after_rejects;
    let victim = start(24, victim_config, reject_bad(), no_server()).await;
    let mallory = start(25, test_config(), accept_all(), no_server()).await;
    peer(&victim, &mallory).await;
    let chat = chat(4);
    let both = vec![victim.peer, mallory.peer];
    join_channel(chat, &[(&victim, both.clone()), (&mallory, both.clone())]).await;
    wait_topic_peers(&victim, chat, &[mallory.peer]).await;
    wait_topic_peers(&mallory, chat, &[victim.peer]).await;

    for i in 0..2 * threshold {
        if victim.record.lock().expect("lock").blacklisted.contains(&mallory.peer) {
            break;
        }
        // Ignore publish errors: once blacklisted, mallory has no peer to publish to.
        let _ = mallory.handle.publish(chat, format!("bad-paced-{i}").into_bytes()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eventually("paced mallory blacklisted", || async {
        victim.record.lock().expect("lock").blacklisted.contains(&mallory.peer)
    })
    .await;
    let peers = victim.handle.peers().await.expect("peers");
    let info = peers.iter().find(|p| p.peer == mallory.peer).expect("listed");
    assert!(info.blacklisted);
    assert!(
        info.rejected_messages >= 1 && info.rejected_messages < threshold,
        "blacklisted by its score after {} rejections",
        info.rejected_messages
    );
    for node in [victim, mallory] {
        node.stop().await;
    }
}
