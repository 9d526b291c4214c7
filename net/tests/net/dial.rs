//! Dialing retries with exponential backoff until the peer comes up.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_backoff_retries_until_peer_is_up() {
    init_tracing();
    // Reserve a free port for the late peer, then release it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let late_addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr");
    let late_peer = confab_net::peer_id_of(&org_key(52)).expect("peer id");

    let a = start(51, test_config(), accept_all(), no_server()).await;
    a.handle.add_peer(late_peer, vec![late_addr.clone()]).await.expect("add");
    eventually("first dial fails", || async {
        a.handle
            .peers()
            .await
            .expect("peers")
            .iter()
            .any(|p| p.last_error.is_some() && !p.connected)
    })
    .await;
    // Let a few retries fail so the backoff grows.
    tokio::time::sleep(Duration::from_millis(700)).await;

    let mut config = test_config();
    config.listen_addrs = vec![late_addr];
    let late = start(52, config, accept_all(), no_server()).await;
    assert_eq!(late.peer, late_peer);
    late.handle.add_peer(a.peer, vec![]).await.expect("consent without dialing");
    eventually("a's retry connects", || async { a.connected_to(&late_peer).await }).await;
    let info = a.handle.peers().await.expect("peers");
    assert!(info[0].connected);
    assert_eq!(info[0].last_error, None);
    a.stop().await;
    late.stop().await;
}
