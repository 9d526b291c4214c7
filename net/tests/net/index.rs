//! The chat index query on `/confab/catchup/1`: a peer that knows no chat id yet asks another
//! organisation's node which chats they share; the request bypasses the channel-membership
//! check and the responding node lists only the requester's chats.

use std::collections::HashMap;

use super::*;
use confab_net::{CatchupPage, CatchupRefusal, NetError};
use confab_protocol::DocId;

/// Lists the chats of `members` whose member peers include the requester.
fn index_of(members: HashMap<ChatId, Vec<PeerId>>) -> IndexServer {
    Arc::new(move |requester| {
        CatchupResponse::index(
            members.iter().filter(|(_, peers)| peers.contains(&requester)).map(|(chat, _)| *chat),
        )
    })
}

fn serve_one_change() -> Server {
    Arc::new(|_, _| {
        CatchupResponse::Page(CatchupPage {
            changes: vec![b"first".to_vec()],
            more: false,
            cursor: vec![],
        })
    })
}

fn peer_of(n: u8) -> PeerId {
    confab_net::peer_id_of(&org_key(n)).expect("peer id")
}

async fn connected_pair(a: &Node, b: &Node) {
    peer(a, b).await;
    eventually("connected", || async {
        a.connected_to(&b.peer).await && b.connected_to(&a.peer).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_lists_the_shared_chats_then_catch_up_follows() {
    init_tracing();
    let b_peer = peer_of(72);
    let other = peer_of(79);
    // A's chats: B's organisation was added to `shared_high` and `shared_low`, not to `private`.
    let (shared_high, shared_low, private) = (chat(0x60), chat(0x50), chat(0x55));
    let members = HashMap::from([
        (shared_high, vec![other, b_peer]),
        (shared_low, vec![b_peer]),
        (private, vec![other]),
    ]);
    let a = start_with_index(
        71,
        test_config(),
        accept_all(),
        serve_one_change(),
        index_of(members.clone()),
    )
    .await;
    let b = start(72, test_config(), accept_all(), no_server()).await;
    assert_eq!(b.peer, b_peer);
    for (chat, peers) in members {
        a.handle.set_channel_members(chat, peers).await.expect("members");
    }
    // B knows no chat at all: it set no channel members and subscribed to nothing.
    connected_pair(&a, &b).await;

    let chats = b.handle.index(a.peer).await.expect("index");
    assert_eq!(chats, vec![shared_low, shared_high], "sorted, B's chats only");
    assert_eq!(a.record.lock().expect("lock").index_requests, vec![b.peer]);

    // With the chat id learned, B catches up on it; document requests are still checked
    // against membership.
    let request =
        |chat| CatchupRequest { doc: DocId::control(chat), heads: vec![], cursor: vec![] };
    let page = b.handle.catchup(a.peer, request(shared_low)).await.expect("catch-up");
    assert_eq!(
        page,
        CatchupResponse::Page(CatchupPage {
            changes: vec![b"first".to_vec()],
            more: false,
            cursor: vec![],
        })
    );
    assert_eq!(
        b.handle.catchup(a.peer, request(private)).await.expect("catch-up"),
        CatchupResponse::Refused(CatchupRefusal::NotMember)
    );
    assert_eq!(a.record.lock().expect("lock").catchup_requests.len(), 1);

    // The other way round: B shares nothing with A, its node answers an empty index.
    assert_eq!(a.handle.index(b.peer).await.expect("index"), vec![]);
    assert_eq!(b.record.lock().expect("lock").index_requests, vec![a.peer]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_request_refused_busy_when_pending_responses_are_full() {
    init_tracing();
    let mut full = test_config();
    full.max_pending_catchup_responses = 0;
    let a = start(73, full, accept_all(), no_server()).await;
    let b = start(74, test_config(), accept_all(), no_server()).await;
    connected_pair(&a, &b).await;
    let err = b.handle.index(a.peer).await.expect_err("busy");
    assert_eq!(err, NetError::Refused(CatchupRefusal::Busy));
    assert!(a.record.lock().expect("lock").index_requests.is_empty());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_of_the_wrong_kind_are_never_sent() {
    init_tracing();
    // A's node (wrongly) answers index requests with a page and document requests with an
    // index: its responder refuses both, so the requests are cancelled.
    let page_for_index: IndexServer = Arc::new(|_| CatchupResponse::Page(CatchupPage::default()));
    let index_for_document: Server =
        Arc::new(|_, _| CatchupResponse::index([ChatId::from_bytes([1; 16])]));
    let a =
        start_with_index(75, test_config(), accept_all(), index_for_document, page_for_index).await;
    let b = start(76, test_config(), accept_all(), no_server()).await;
    let chat = chat(0x70);
    a.handle.set_channel_members(chat, vec![b.peer]).await.expect("members");
    connected_pair(&a, &b).await;

    let err = b.handle.index(a.peer).await.expect_err("cancelled");
    assert!(matches!(err, NetError::Catchup(_)), "{err:?}");
    let err = b
        .handle
        .catchup(
            a.peer,
            CatchupRequest { doc: DocId::control(chat), heads: vec![], cursor: vec![] },
        )
        .await
        .expect_err("cancelled");
    assert!(matches!(err, NetError::Catchup(_)), "{err:?}");
    let errors = a.record.lock().expect("lock").respond_errors.clone();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.contains("protocol violation")), "{errors:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_allow_listed_peer_cannot_ask_for_the_index() {
    init_tracing();
    let stranger_peer = peer_of(78);
    let a = start_with_index(
        77,
        test_config(),
        accept_all(),
        no_server(),
        index_of(HashMap::from([(chat(0x71), vec![stranger_peer])])),
    )
    .await;
    let stranger = start(78, test_config(), accept_all(), no_server()).await;
    // Only the stranger consents: A refuses its connections at establishment.
    stranger.handle.add_peer(a.peer, vec![a.addr.clone()]).await.expect("add");
    eventually("a refuses the stranger", || async {
        a.record.lock().expect("lock").refused.iter().any(|e| {
            matches!(e, NetEvent::ConnectionRefused { peer: Some(p), inbound: true, .. } if *p == stranger.peer)
        })
    })
    .await;
    // The stranger's side may briefly count a connection A is closing: either way, no request
    // ever reaches A's node.
    for _ in 0..5 {
        let err = stranger.handle.index(a.peer).await.expect_err("no connection");
        assert!(matches!(err, NetError::NotConnected(_) | NetError::Catchup(_)), "{err:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(a.record.lock().expect("lock").index_requests.is_empty());

    // Once A consents too, the stranger may ask and gets its chat.
    a.handle.add_peer(stranger.peer, vec![stranger.addr.clone()]).await.expect("add");
    eventually("connected", || async { stranger.connected_to(&a.peer).await }).await;
    assert_eq!(stranger.handle.index(a.peer).await.expect("index"), vec![chat(0x71)]);
    a.stop().await;
    stranger.stop().await;
}
