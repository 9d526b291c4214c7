//! The media protocol `/confab/media/1`: golden bytes, strict decoding, frames, and blob fetches
//! between real nodes (membership check, hash verification, typed refusals).

use super::*;
use confab_net::media::{
    decode_request, decode_response, encode_request, encode_response, read_frame, MediaCodec,
    MediaCodecError, FOUND_OVERHEAD, REQUEST_BYTES,
};
use confab_net::{MediaRefusal, MediaRequest, MediaResponder, MediaResponse, NetError};
use libp2p::request_response::Codec;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

const MAX: usize = 1024;

fn blob_id(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn codec_error(err: std::io::Error) -> MediaCodecError {
    *err.into_inner()
        .expect("codec error")
        .downcast::<MediaCodecError>()
        .expect("media codec error")
}

#[test]
fn golden_bytes() {
    let request = MediaRequest { chat: ChatId::from_bytes([0x11; 16]), blob: [0xaa; 32] };
    let hex_req = format!("01{}{}", "11".repeat(16), "aa".repeat(32));
    assert_eq!(hex::encode(encode_request(&request)), hex_req);
    assert_eq!(REQUEST_BYTES, 49);
    assert_eq!(decode_request(&hex::decode(&hex_req).expect("hex")), Ok(request));

    let cases = [
        (MediaResponse::Found(b"abc".to_vec()), "010000000003616263"),
        (MediaResponse::Found(Vec::new()), "010000000000"),
        (MediaResponse::Refused(MediaRefusal::NotMember), "010101"),
        (MediaResponse::Refused(MediaRefusal::NotFound), "010102"),
        (MediaResponse::Refused(MediaRefusal::Busy), "010103"),
        (MediaResponse::Refused(MediaRefusal::Other(200)), "0101c8"),
    ];
    for (response, hex) in cases {
        assert_eq!(hex::encode(encode_response(&response, MAX).expect("encode")), hex);
        assert_eq!(decode_response(&hex::decode(hex).expect("hex"), MAX), Ok(response));
    }
}

#[test]
fn malformed_bodies_refused() {
    let request =
        encode_request(&MediaRequest { chat: ChatId::from_bytes([1; 16]), blob: [2; 32] });
    let mut trailing = request.clone();
    trailing.push(0);
    assert_eq!(decode_request(&trailing), Err(MediaCodecError::TrailingBytes));
    assert_eq!(decode_request(&request[..48]), Err(MediaCodecError::Truncated));
    assert_eq!(decode_request(&[]), Err(MediaCodecError::Truncated));
    let mut version = request;
    version[0] = 2;
    assert_eq!(decode_request(&version), Err(MediaCodecError::UnsupportedVersion(2)));

    let bad = |hex: &str| decode_response(&hex::decode(hex).expect("hex"), MAX);
    assert_eq!(bad("02010101"), Err(MediaCodecError::UnsupportedVersion(2)));
    assert_eq!(bad("0102"), Err(MediaCodecError::Invalid("response kind")));
    assert_eq!(bad("0102000000"), Err(MediaCodecError::Invalid("response kind")));
    assert_eq!(bad("01"), Err(MediaCodecError::Truncated));
    assert_eq!(bad(""), Err(MediaCodecError::Truncated));
    assert_eq!(bad("0101"), Err(MediaCodecError::Truncated));
    assert_eq!(bad("01010100"), Err(MediaCodecError::TrailingBytes));
    assert_eq!(bad("0100000003"), Err(MediaCodecError::Truncated));
    assert_eq!(bad("010000000003616263"), Ok(MediaResponse::Found(b"abc".to_vec())));
    assert_eq!(bad("01000000000361626364"), Err(MediaCodecError::TrailingBytes));
    assert_eq!(bad("0100000000026162"), Ok(MediaResponse::Found(b"ab".to_vec())));
    assert_eq!(bad("01000000036162"), Err(MediaCodecError::Truncated));
    assert_eq!(bad("010000"), Err(MediaCodecError::Truncated));
    // A blob length above the limit is refused from the length alone.
    assert_eq!(
        bad("0100ffffffff"),
        Err(MediaCodecError::TooLarge { got: u64::from(u32::MAX), max: MAX })
    );

    // The encoder refuses a blob above the limit.
    assert_eq!(
        encode_response(&MediaResponse::Found(vec![0; MAX + 1]), MAX),
        Err(MediaCodecError::TooLarge { got: MAX as u64 + 1, max: MAX })
    );
    assert!(encode_response(&MediaResponse::Found(vec![0; MAX]), MAX).is_ok());
}

#[tokio::test]
async fn frames_refuse_oversized_lengths() {
    let protocol = confab_net::media::PROTOCOL;
    let mut codec = MediaCodec::new(MAX);

    // A response frame announcing 1 GiB is refused from its prefix alone.
    let mut input = libp2p::futures::io::Cursor::new((1u32 << 30).to_be_bytes().to_vec());
    let err = codec.read_response(&protocol, &mut input).await.expect_err("too large");
    assert_eq!(
        codec_error(err),
        MediaCodecError::FrameTooLarge { len: 1 << 30, max: MAX + FOUND_OVERHEAD }
    );
    // One byte above the largest found response.
    let mut input = libp2p::futures::io::Cursor::new(
        ((MAX + FOUND_OVERHEAD + 1) as u32).to_be_bytes().to_vec(),
    );
    let err = codec.read_response(&protocol, &mut input).await.expect_err("too large");
    assert!(matches!(codec_error(err), MediaCodecError::FrameTooLarge { .. }), "one byte too many");

    // A request frame longer than a request.
    let mut input =
        libp2p::futures::io::Cursor::new(((REQUEST_BYTES + 1) as u32).to_be_bytes().to_vec());
    let err = codec.read_request(&protocol, &mut input).await.expect_err("too large");
    assert_eq!(
        codec_error(err),
        MediaCodecError::FrameTooLarge { len: REQUEST_BYTES as u64 + 1, max: REQUEST_BYTES }
    );

    // A frame shorter than announced.
    let mut bytes = 10u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(b"short");
    let mut input = libp2p::futures::io::Cursor::new(bytes);
    let err = read_frame(&mut input, MAX).await.expect_err("truncated");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);

    // Roundtrips through the codec, a blob of exactly the limit included.
    let request = MediaRequest { chat: ChatId::from_bytes([3; 16]), blob: [4; 32] };
    let mut out = libp2p::futures::io::Cursor::new(Vec::new());
    codec.write_request(&protocol, &mut out, request).await.expect("write");
    let mut input = libp2p::futures::io::Cursor::new(out.into_inner());
    assert_eq!(codec.read_request(&protocol, &mut input).await.expect("read"), request);
    for response in
        [MediaResponse::Found(vec![0x5a; MAX]), MediaResponse::Refused(MediaRefusal::Busy)]
    {
        let mut out = libp2p::futures::io::Cursor::new(Vec::new());
        codec.write_response(&protocol, &mut out, response.clone()).await.expect("write");
        let bytes = out.into_inner();
        let body = encode_response(&response, MAX).expect("encode");
        assert_eq!(bytes[..4], (body.len() as u32).to_be_bytes());
        assert_eq!(bytes[4..], body[..]);
        let mut input = libp2p::futures::io::Cursor::new(bytes);
        assert_eq!(codec.read_response(&protocol, &mut input).await.expect("read"), response);
    }
    // The writer refuses a blob above its limit.
    let mut out = libp2p::futures::io::Cursor::new(Vec::new());
    let err = codec
        .write_response(&protocol, &mut out, MediaResponse::Found(vec![0; MAX + 1]))
        .await
        .expect_err("too large to send");
    assert!(matches!(codec_error(err), MediaCodecError::TooLarge { .. }));
}

type MediaServer = Arc<dyn Fn(PeerId, ChatId, [u8; 32]) -> MediaResponse + Send + Sync>;
type MediaLog = Arc<Mutex<Vec<(PeerId, ChatId, [u8; 32])>>>;

/// Serves the blobs of a store keyed by their SHA-256 (any chat), `NotFound` otherwise.
fn store_server(blobs: &[Vec<u8>]) -> MediaServer {
    let store: HashMap<[u8; 32], Vec<u8>> = blobs.iter().map(|b| (blob_id(b), b.clone())).collect();
    Arc::new(move |_, _, blob| match store.get(&blob) {
        Some(bytes) => MediaResponse::Found(bytes.clone()),
        None => MediaResponse::Refused(MediaRefusal::NotFound),
    })
}

/// A node whose driver answers media requests with `server` and logs every media request that
/// reaches it (and every failed `respond` in the node record's `respond_errors`).
async fn start_media(n: u8, config: NetConfig, server: MediaServer) -> (Node, MediaLog) {
    let (handle, mut events, actor) = Network::start(seed(n), config).expect("start");
    let peer = handle.local_peer_id();
    let record = Arc::new(Mutex::new(Record::default()));
    let log: MediaLog = Arc::default();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let mut addr_tx = Some(addr_tx);
    let (driver_record, driver_log) = (record.clone(), log.clone());
    let driver = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Listening { addr } => {
                    if let Some(tx) = addr_tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                NetEvent::MediaRequest { peer, chat, blob, responder } => {
                    driver_log.lock().expect("lock").push((peer, chat, blob));
                    let response = server(peer, chat, blob);
                    respond_media(responder, response, &driver_record).await;
                }
                _ => {}
            }
        }
    });
    let addr = tokio::time::timeout(WAIT, addr_rx).await.expect("listening in time").expect("addr");
    let node = Node { handle, peer, addr, record, driver, actor };
    (node, log)
}

async fn respond_media(responder: MediaResponder, response: MediaResponse, record: &Mutex<Record>) {
    if let Err(e) = responder.respond(response).await {
        record.lock().expect("lock").respond_errors.push(e.to_string());
    }
}

/// Peers `a` with each of `others` and waits until they are connected.
async fn connect(a: &Node, others: &[&Node]) {
    for other in others {
        peer(a, other).await;
    }
    for other in others {
        eventually("connected", || async { other.connected_to(&a.peer).await }).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_fetches_verified_blob_and_non_member_is_refused() {
    init_tracing();
    // 3 MiB: many yamux frames and read chunks.
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let small = b"a small attachment".to_vec();
    let (a, a_log) =
        start_media(101, test_config(), store_server(&[big.clone(), small.clone()])).await;
    let (b, _) = start_media(102, test_config(), store_server(&[])).await;
    let (c, _) = start_media(103, test_config(), store_server(&[])).await;
    connect(&a, &[&b, &c]).await;
    let chat = chat(0x90);
    a.handle.set_channel_members(chat, vec![b.peer]).await.expect("members");

    // The member gets the exact bytes.
    let got = b.handle.fetch_media(a.peer, chat, blob_id(&big)).await.expect("fetch big blob");
    assert_eq!(got, big);
    let got = b.handle.fetch_media(a.peer, chat, blob_id(&small)).await.expect("fetch small blob");
    assert_eq!(got, small);

    // An unknown blob: the node's typed refusal.
    assert_eq!(
        b.handle.fetch_media(a.peer, chat, [0x77; 32]).await,
        Err(NetError::MediaRefused(MediaRefusal::NotFound))
    );

    // A non-member (peered, connected) is refused by a's actor; a's node never sees it. A
    // former member is refused as well, and so is a member of another chat.
    assert_eq!(
        c.handle.fetch_media(a.peer, chat, blob_id(&small)).await,
        Err(NetError::MediaRefused(MediaRefusal::NotMember))
    );
    a.handle.set_channel_former_members(chat, vec![c.peer]).await.expect("former members");
    assert_eq!(
        c.handle.fetch_media(a.peer, chat, blob_id(&small)).await,
        Err(NetError::MediaRefused(MediaRefusal::NotMember))
    );
    a.handle.set_channel_members(super::chat(0x91), vec![c.peer]).await.expect("members");
    assert_eq!(
        c.handle.fetch_media(a.peer, chat, blob_id(&small)).await,
        Err(NetError::MediaRefused(MediaRefusal::NotMember))
    );
    let log = a_log.lock().expect("lock").clone();
    assert_eq!(
        log,
        vec![
            (b.peer, chat, blob_id(&big)),
            (b.peer, chat, blob_id(&small)),
            (b.peer, chat, [0x77; 32]),
        ]
    );

    // Only connected peers are asked.
    let (d, _) = start_media(104, test_config(), store_server(&[])).await;
    assert_eq!(
        b.handle.fetch_media(d.peer, chat, [0; 32]).await,
        Err(NetError::NotConnected(d.peer))
    );
    for node in [a, b, c, d] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bytes_fail_the_hash_check() {
    init_tracing();
    let liar: MediaServer = Arc::new(|_, _, _| MediaResponse::Found(b"not the blob".to_vec()));
    let (a, a_log) = start_media(105, test_config(), liar).await;
    let (b, _) = start_media(106, test_config(), store_server(&[])).await;
    connect(&a, &[&b]).await;
    let chat = chat(0x92);
    a.handle.set_channel_members(chat, vec![b.peer]).await.expect("members");
    assert_eq!(
        b.handle.fetch_media(a.peer, chat, blob_id(b"the real blob")).await,
        Err(NetError::MediaHashMismatch)
    );
    assert_eq!(a_log.lock().expect("lock").len(), 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_above_the_limit_are_refused_both_ways() {
    init_tracing();
    let blob = vec![0x42; 5000];
    // The responder's limit is below the blob: its node's `respond` fails, the fetch fails.
    let mut tiny = test_config();
    tiny.media_max_bytes = 1000;
    let (a, _) = start_media(107, tiny, store_server(std::slice::from_ref(&blob))).await;
    // The responder's limit allows it but the requester's does not: refused from the prefix.
    let (c, _) = start_media(109, test_config(), store_server(std::slice::from_ref(&blob))).await;
    let mut small = test_config();
    small.media_max_bytes = 1000;
    let (b, _) = start_media(108, small, store_server(&[])).await;
    connect(&b, &[&a, &c]).await;
    let chat = chat(0x93);
    for server in [&a, &c] {
        server.handle.set_channel_members(chat, vec![b.peer]).await.expect("members");
    }
    let err = b
        .handle
        .fetch_media(a.peer, chat, blob_id(&blob))
        .await
        .expect_err("responder cannot send");
    assert!(matches!(err, NetError::Media(_)), "{err:?}");
    let errors = a.record.lock().expect("lock").respond_errors.clone();
    assert_eq!(errors.len(), 1, "{errors:?}");

    let err =
        b.handle.fetch_media(c.peer, chat, blob_id(&blob)).await.expect_err("requester refuses");
    assert!(matches!(err, NetError::Media(_)), "{err:?}");
    for node in [a, b, c] {
        node.stop().await;
    }
}
