//! The catch-up codec: golden bytes for each message, property tests, limits, frames.

use confab_net::catchup::{
    decode_request, decode_response, encode_request, encode_response, read_frame, write_frame,
    CodecError, Request,
};
use confab_net::{CatchupLimits, CatchupPage, CatchupRefusal, CatchupRequest, CatchupResponse};
use confab_protocol::{ChatId, DocId};
use proptest::prelude::*;

fn limits() -> CatchupLimits {
    CatchupLimits::default()
}

fn golden_request() -> (Request, String) {
    let request = Request::Document(CatchupRequest {
        doc: DocId::bucket(ChatId::from_bytes([0x11; 16]), 2),
        heads: vec![[0xaa; 32]],
        cursor: vec![1, 2],
    });
    let hex = format!("01{}00000002{}{}{}", "11".repeat(16), "0001", "aa".repeat(32), "00020102");
    (request, hex)
}

fn golden_page() -> (CatchupResponse, String) {
    let response = CatchupResponse::Page(CatchupPage {
        changes: vec![b"abc".to_vec(), Vec::new()],
        more: true,
        cursor: vec![9],
    });
    (response, "0100010001090000000200000003616263".to_owned() + "00000000")
}

#[test]
fn golden_bytes() {
    let (request, hex_req) = golden_request();
    assert_eq!(hex::encode(encode_request(&request, &limits()).expect("encode")), hex_req);
    assert_eq!(decode_request(&hex::decode(&hex_req).expect("hex"), &limits()), Ok(request));

    let (page, hex_page) = golden_page();
    assert_eq!(hex::encode(encode_response(&page, &limits()).expect("encode")), hex_page);
    assert_eq!(decode_response(&hex::decode(&hex_page).expect("hex"), &limits()), Ok(page));

    let cases = [
        (CatchupRefusal::NotMember, "010101"),
        (CatchupRefusal::UnknownDocument, "010102"),
        (CatchupRefusal::Busy, "010103"),
        (CatchupRefusal::Other(200), "0101c8"),
    ];
    for (refusal, hex) in cases {
        let response = CatchupResponse::Refused(refusal);
        assert_eq!(hex::encode(encode_response(&response, &limits()).expect("encode")), hex);
        assert_eq!(decode_response(&hex::decode(hex).expect("hex"), &limits()), Ok(response));
    }
    // The empty first page.
    let empty = CatchupResponse::Page(CatchupPage::default());
    assert_eq!(
        hex::encode(encode_response(&empty, &limits()).expect("encode")),
        "0100000000".to_owned() + "00000000"
    );
}

#[test]
fn malformed_bodies_refused() {
    let (_, hex_req) = golden_request();
    let req = hex::decode(hex_req).expect("hex");
    for request_type in [0u8, 4, 0xff] {
        let mut unknown = req.clone();
        unknown[0] = request_type;
        assert_eq!(
            decode_request(&unknown, &limits()),
            Err(CodecError::UnknownRequestType(request_type))
        );
    }
    // Type 2 is the one-byte chat index request: a document body after it is trailing.
    let mut as_index = req.clone();
    as_index[0] = 2;
    assert_eq!(decode_request(&as_index, &limits()), Err(CodecError::TrailingBytes));
    assert_eq!(decode_request(&[], &limits()), Err(CodecError::Truncated));
    assert_eq!(decode_request(&req[..req.len() - 1], &limits()), Err(CodecError::Truncated));
    let mut trailing = req.clone();
    trailing.push(0);
    assert_eq!(decode_request(&trailing, &limits()), Err(CodecError::TrailingBytes));

    let (_, hex_page) = golden_page();
    let page = hex::decode(hex_page).expect("hex");
    let mut bad_flag = page.clone();
    bad_flag[2] = 2;
    assert_eq!(decode_response(&bad_flag, &limits()), Err(CodecError::Invalid("more flag")));
    let mut bad_kind = page.clone();
    bad_kind[1] = 7;
    assert_eq!(decode_response(&bad_kind, &limits()), Err(CodecError::Invalid("response kind")));
    assert_eq!(decode_response(&page[..page.len() - 5], &limits()), Err(CodecError::Truncated));
}

#[test]
fn limits_enforced_both_ways() {
    let mut small = limits();
    small.max_heads = 2;
    small.max_changes_per_page = 2;
    small.max_change_bytes = 4;
    small.max_cursor_bytes = 1;
    let doc = DocId::control(ChatId::from_bytes([1; 16]));
    let request =
        Request::Document(CatchupRequest { doc, heads: vec![[0; 32]; 3], cursor: vec![] });
    assert!(matches!(
        encode_request(&request, &small),
        Err(CodecError::Limit { what: "heads", .. })
    ));
    let encoded = encode_request(&request, &limits()).expect("encode");
    // The body is longer than the small limit's maximum request: refused by length first.
    assert!(matches!(decode_request(&encoded, &small), Err(CodecError::Limit { .. })));

    // A request that claims 3 heads within a body that fits the byte bound.
    let mut claims = vec![1u8];
    claims.extend_from_slice(&doc.to_bytes());
    claims.extend_from_slice(&3u16.to_be_bytes());
    assert!(matches!(
        decode_request(&claims, &small),
        Err(CodecError::Limit { what: "heads", got: 3, max: 2 })
    ));

    let page = |changes: Vec<Vec<u8>>| {
        CatchupResponse::Page(CatchupPage { changes, more: false, cursor: vec![] })
    };
    assert!(matches!(
        encode_response(&page(vec![vec![1]; 3]), &small),
        Err(CodecError::Limit { what: "changes", .. })
    ));
    assert!(matches!(
        encode_response(&page(vec![vec![1; 5]]), &small),
        Err(CodecError::Limit { what: "change bytes", .. })
    ));
    let three = encode_response(&page(vec![vec![1]; 3]), &limits()).expect("encode");
    assert!(matches!(
        decode_response(&three, &small),
        Err(CodecError::Limit { what: "changes", .. })
    ));
    let big = encode_response(&page(vec![vec![1; 5]]), &limits()).expect("encode");
    assert!(matches!(
        decode_response(&big, &small),
        Err(CodecError::Limit { what: "change bytes", .. })
    ));

    // A count of u32::MAX changes is refused before any allocation for them.
    let mut huge = vec![1u8, 0, 0, 0, 0];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        decode_response(&huge, &limits()),
        Err(CodecError::Limit { what: "changes", .. })
    ));

    let mut total = limits();
    total.max_response_bytes = 100;
    assert!(matches!(
        encode_response(&page(vec![vec![1; 60], vec![2; 60]]), &total),
        Err(CodecError::Limit { what: "response bytes", .. })
    ));
}

fn golden_index() -> (CatchupResponse, String) {
    let response = CatchupResponse::Index(vec![
        ChatId::from_bytes([0x11; 16]),
        ChatId::from_bytes([0x22; 16]),
    ]);
    let hex = format!("0102{}{}{}", "00000002", "11".repeat(16), "22".repeat(16));
    (response, hex)
}

#[test]
fn golden_bytes_of_the_chat_index() {
    // The request is the single request-type byte 02.
    assert_eq!(hex::encode(encode_request(&Request::Index, &limits()).expect("encode")), "02");
    assert_eq!(decode_request(&[2], &limits()), Ok(Request::Index));
    assert_eq!(hex::encode(encode_request(&Request::Poke, &limits()).expect("encode")), "03");
    assert_eq!(decode_request(&[3], &limits()), Ok(Request::Poke));

    let (index, hex_index) = golden_index();
    assert_eq!(hex::encode(encode_response(&index, &limits()).expect("encode")), hex_index);
    assert_eq!(decode_response(&hex::decode(&hex_index).expect("hex"), &limits()), Ok(index));
    let empty = CatchupResponse::Index(Vec::new());
    assert_eq!(hex::encode(encode_response(&empty, &limits()).expect("encode")), "010200000000");
    assert_eq!(decode_response(&hex::decode("010200000000").expect("hex"), &limits()), Ok(empty));

    // `CatchupResponse::index` sorts and removes duplicates.
    let (a, b) = (ChatId::from_bytes([0x11; 16]), ChatId::from_bytes([0x22; 16]));
    assert_eq!(CatchupResponse::index([b, a, b]), CatchupResponse::Index(vec![a, b]));
}

#[test]
fn malformed_chat_index_refused() {
    // Trailing bytes after the one-byte request.
    assert_eq!(decode_request(&[2, 0], &limits()), Err(CodecError::TrailingBytes));

    let (_, hex_index) = golden_index();
    let index = hex::decode(hex_index).expect("hex");
    let mut trailing = index.clone();
    trailing.push(0);
    assert_eq!(decode_response(&trailing, &limits()), Err(CodecError::TrailingBytes));
    assert_eq!(decode_response(&index[..index.len() - 1], &limits()), Err(CodecError::Truncated));

    // Unsorted and duplicate ids are refused by the decoder and the encoder.
    let body = |chats: &[[u8; 16]]| {
        let mut out = vec![1u8, 2];
        out.extend_from_slice(&(chats.len() as u32).to_be_bytes());
        for chat in chats {
            out.extend_from_slice(chat);
        }
        out
    };
    for chats in [[[0x22; 16], [0x11; 16]], [[0x11; 16], [0x11; 16]]] {
        assert_eq!(
            decode_response(&body(&chats), &limits()),
            Err(CodecError::Invalid("chat index order"))
        );
        let response = CatchupResponse::Index(chats.map(ChatId::from_bytes).to_vec());
        assert_eq!(
            encode_response(&response, &limits()),
            Err(CodecError::Invalid("chat index order"))
        );
    }
    assert!(decode_response(&body(&[[0x11; 16], [0x12; 16]]), &limits()).is_ok());

    // A count above the limit is refused from the count, both ways.
    let mut small = limits();
    small.max_index_chats = 2;
    let three = body(&[[1; 16], [2; 16], [3; 16]]);
    assert!(decode_response(&three, &limits()).is_ok());
    assert_eq!(
        decode_response(&three, &small),
        Err(CodecError::Limit { what: "index chats", got: 3, max: 2 })
    );
    let response = CatchupResponse::index([[1; 16], [2; 16], [3; 16]].map(ChatId::from_bytes));
    assert!(matches!(
        encode_response(&response, &small),
        Err(CodecError::Limit { what: "index chats", .. })
    ));
    // A count of u32::MAX in a 6-byte body: refused before any allocation for the ids.
    let mut huge = vec![1u8, 2];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        decode_response(&huge, &limits()),
        Err(CodecError::Limit { what: "index chats", got: u64::from(u32::MAX), max: 65_536 })
    );
    // A count within the limit but beyond the body: truncated.
    let mut short = vec![1u8, 2];
    short.extend_from_slice(&65_536u32.to_be_bytes());
    assert_eq!(decode_response(&short, &limits()), Err(CodecError::Truncated));

    // The default limit fits in a response: 65,536 ids (1 MiB) encode and decode.
    let most = CatchupResponse::Index(
        (0..65_536u32)
            .map(|i| {
                let mut id = [0u8; 16];
                id[12..].copy_from_slice(&i.to_be_bytes());
                ChatId::from_bytes(id)
            })
            .collect(),
    );
    let bytes = encode_response(&most, &limits()).expect("encode");
    assert_eq!(bytes.len(), 6 + 16 * 65_536);
    assert_eq!(decode_response(&bytes, &limits()), Ok(most));
}

#[tokio::test]
async fn frames_refuse_oversized_lengths() {
    // A frame announcing 1 GiB is refused from its prefix alone.
    let mut input = libp2p::futures::io::Cursor::new((1u32 << 30).to_be_bytes().to_vec());
    let err = read_frame(&mut input, 1024).await.expect_err("too large");
    let inner =
        err.into_inner().expect("codec error").downcast::<CodecError>().expect("codec error");
    assert_eq!(*inner, CodecError::FrameTooLarge { len: 1 << 30, max: 1024 });

    // A frame shorter than announced.
    let mut bytes = 10u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(b"short");
    let mut input = libp2p::futures::io::Cursor::new(bytes);
    let err = read_frame(&mut input, 1024).await.expect_err("truncated");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);

    // Roundtrip.
    let mut out = libp2p::futures::io::Cursor::new(Vec::new());
    write_frame(&mut out, b"payload").await.expect("write");
    let mut input = libp2p::futures::io::Cursor::new(out.into_inner());
    assert_eq!(read_frame(&mut input, 7).await.expect("read"), b"payload");
}

fn arb_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (
            any::<[u8; 16]>(),
            any::<u32>(),
            proptest::collection::vec(any::<[u8; 32]>(), 0..20),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(chat, index, heads, cursor)| Request::Document(CatchupRequest {
                doc: DocId::from_index(ChatId::from_bytes(chat), index),
                heads,
                cursor,
            })),
        Just(Request::Index),
        Just(Request::Poke),
    ]
}

fn arb_response() -> impl Strategy<Value = CatchupResponse> {
    prop_oneof![
        any::<u8>().prop_map(|code| CatchupResponse::Refused(match code {
            1 => CatchupRefusal::NotMember,
            2 => CatchupRefusal::UnknownDocument,
            3 => CatchupRefusal::Busy,
            other => CatchupRefusal::Other(other),
        })),
        (
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(changes, more, cursor)| CatchupResponse::Page(CatchupPage {
                changes,
                more,
                cursor
            })),
        // A set iterates in increasing order: a valid (strictly increasing) index.
        proptest::collection::btree_set(any::<[u8; 16]>(), 0..40).prop_map(|chats| {
            CatchupResponse::Index(chats.into_iter().map(ChatId::from_bytes).collect())
        }),
    ]
}

proptest! {
    #[test]
    fn request_roundtrip(request in arb_request()) {
        let bytes = encode_request(&request, &limits()).expect("encode");
        prop_assert_eq!(decode_request(&bytes, &limits()), Ok(request));
    }

    #[test]
    fn response_roundtrip(response in arb_response()) {
        let bytes = encode_response(&response, &limits()).expect("encode");
        prop_assert_eq!(decode_response(&bytes, &limits()), Ok(response));
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_request(&bytes, &limits());
        let _ = decode_response(&bytes, &limits());
    }

    #[test]
    fn decode_is_canonical(response in arb_response(), extra in any::<u8>()) {
        // Any accepted body re-encodes to itself; appended bytes are refused.
        let mut bytes = encode_response(&response, &limits()).expect("encode");
        let decoded = decode_response(&bytes, &limits()).expect("decode");
        prop_assert_eq!(encode_response(&decoded, &limits()).expect("encode"), bytes.clone());
        bytes.push(extra);
        prop_assert_eq!(decode_response(&bytes, &limits()), Err(CodecError::TrailingBytes));
    }
}
