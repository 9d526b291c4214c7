//! The catch-up protocol over the network: paging, membership checks and size limits.

use super::*;
use confab_net::{CatchupPage, CatchupRefusal};
use confab_protocol::DocId;

/// A fake change log of 25 changes served in pages of 10, the cursor being the next index.
fn paging_server() -> Server {
    Arc::new(|_, request| {
        let changes: Vec<Vec<u8>> =
            (0..25u32).map(|i| format!("change-{i}").into_bytes()).collect();
        let start = match request.cursor.as_slice() {
            [] => 0,
            bytes => u32::from_be_bytes(bytes.try_into().unwrap_or([0xff; 4])) as usize,
        };
        let end = (start + 10).min(changes.len());
        let page = changes.get(start..end).map(<[Vec<u8>]>::to_vec).unwrap_or_default();
        CatchupResponse::Page(CatchupPage {
            changes: page,
            more: end < changes.len(),
            cursor: (end as u32).to_be_bytes().to_vec(),
        })
    })
}

async fn members_pair(
    n: u8,
    server_config: NetConfig,
    client_config: NetConfig,
    server: Server,
) -> (Node, Node, ChatId) {
    let client = start(n, client_config, accept_all(), no_server()).await;
    let server = start(n + 1, server_config, accept_all(), server).await;
    peer(&client, &server).await;
    let chat = chat(n);
    join_channel(chat, &[(&client, vec![server.peer]), (&server, vec![client.peer])]).await;
    eventually("connected", || async { client.connected_to(&server.peer).await }).await;
    (client, server, chat)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_across_three_pages() {
    init_tracing();
    let (client, server, chat) =
        members_pair(41, test_config(), test_config(), paging_server()).await;
    let doc = DocId::bucket(chat, 1);
    let mut cursor = Vec::new();
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let request = CatchupRequest { doc, heads: vec![[7; 32], [8; 32]], cursor: cursor.clone() };
        let response = client.handle.catchup(server.peer, request).await.expect("catch-up");
        let CatchupResponse::Page(page) = response else { panic!("refused: {response:?}") };
        pages += 1;
        got.extend(page.changes);
        if !page.more {
            break;
        }
        cursor = page.cursor;
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    let expected: Vec<Vec<u8>> = (0..25u32).map(|i| format!("change-{i}").into_bytes()).collect();
    assert_eq!(got, expected);
    let requests = server.record.lock().expect("lock").catchup_requests.clone();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|(peer, r)| *peer == client.peer
        && r.doc == doc
        && r.heads == vec![[7; 32], [8; 32]]));
    client.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_frame_is_refused() {
    init_tracing();
    // The server's limits allow a 5,000-byte page; the client's allow only 1,000 bytes: the
    // client's reader refuses the frame from its length prefix.
    let mut small = test_config();
    small.catchup.max_response_bytes = 1000;
    let big_server: Server = Arc::new(|_, _| {
        CatchupResponse::Page(CatchupPage {
            changes: vec![vec![0xab; 5000]],
            more: false,
            cursor: vec![],
        })
    });
    let (client, server, chat) = members_pair(43, test_config(), small, big_server).await;
    let err = client
        .handle
        .catchup(
            server.peer,
            CatchupRequest { doc: DocId::control(chat), heads: vec![], cursor: vec![] },
        )
        .await
        .expect_err("oversized frame must be refused");
    assert!(matches!(err, confab_net::NetError::Catchup(_)), "{err:?}");

    // A responder cannot send a page beyond its own limits either.
    let mut tiny = test_config();
    tiny.catchup.max_response_bytes = 1000;
    let (client2, server2, chat2) = members_pair(45, tiny, test_config(), big_server_fn()).await;
    let err = client2
        .handle
        .catchup(
            server2.peer,
            CatchupRequest { doc: DocId::control(chat2), heads: vec![], cursor: vec![] },
        )
        .await
        .expect_err("responder refuses to send");
    assert!(matches!(err, confab_net::NetError::Catchup(_)), "{err:?}");
    let errors = server2.record.lock().expect("lock").respond_errors.clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    for node in [client, server, client2, server2] {
        node.stop().await;
    }
}

fn big_server_fn() -> Server {
    Arc::new(|_, _| {
        CatchupResponse::Page(CatchupPage {
            changes: vec![vec![1; 5000]],
            more: false,
            cursor: vec![],
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_heads_refused_before_sending() {
    init_tracing();
    let (client, server, chat) =
        members_pair(47, test_config(), test_config(), paging_server()).await;
    let heads = vec![[1; 32]; confab_net::CatchupLimits::default().max_heads + 1];
    let err = client
        .handle
        .catchup(server.peer, CatchupRequest { doc: DocId::control(chat), heads, cursor: vec![] })
        .await
        .expect_err("too many heads");
    assert!(matches!(err, confab_net::NetError::Codec(_)), "{err:?}");
    assert_eq!(
        client
            .handle
            .catchup(
                server.peer,
                CatchupRequest { doc: DocId::control(chat), heads: vec![], cursor: vec![] }
            )
            .await
            .ok()
            .map(|r| matches!(r, CatchupResponse::Page(_))),
        Some(true)
    );
    let _ = CatchupRefusal::Busy;
    client.stop().await;
    server.stop().await;
}
