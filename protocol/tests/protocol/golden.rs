//! Golden fixtures: every encoding compared byte for byte with `protocol/tests/fixtures/`.
//!
//! A fixture changes only when a wire or storage format changes on purpose (which needs a new
//! version marker). To regenerate them after such a change, run
//! `CONFAB_BLESS=1 cargo test -p confab-protocol --test protocol golden` and review the diff.

use crate::support::*;
use automerge::transaction::CommitOptions;
use automerge::AutoCommit;
use confab_protocol::bucket::{self, MessageRecord, UpdateOp, UpdateRecord};
use confab_protocol::control::{BucketRecord, ChatInfo, ChatKind, MemberRecord, Role, Visibility};
use confab_protocol::validate::actor_for;
use confab_protocol::{ChatId, DeviceId, DocId, HlcTime, MessageId, OrgId, SignedChange, UserId};
use serde_json::{json, Value};
use std::path::PathBuf;

pub(crate) fn check(name: &str, value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("json") + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    if std::env::var_os("CONFAB_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).expect("write fixture");
        return;
    }
    let stored = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (CONFAB_BLESS=1 creates it)", path.display()));
    assert!(
        stored == text,
        "{name} differs from the fixture:\n--- stored\n{stored}\n--- now\n{text}"
    );
}

fn fixed_org() -> confab_protocol::OrgKey {
    confab_protocol::OrgKey::from_seed([7; 32])
}

fn fixed_message_id() -> MessageId {
    MessageId::new(HlcTime { ms: 1_700_000_000_123, counter: 4 }, &fixed_org().id(), [1, 2, 3, 4])
}

/// The bucket genesis written by the fixed organisation's fixed actor at a fixed time.
fn fixed_genesis() -> automerge::Change {
    let mut doc = AutoCommit::new().with_actor(actor_for(&fixed_org().id(), [9; 16]));
    bucket::genesis(&mut doc).expect("genesis");
    doc.commit_with(CommitOptions::default().with_time(TIME));
    doc.get_last_local_change().expect("change")
}

#[test]
fn signed_change_encoding() {
    let key = fixed_org();
    let doc = DocId::bucket(ChatId::from_bytes([0x11; 16]), 1);
    // Fixed opaque change bytes: the envelope does not look inside.
    let opaque = SignedChange::sign(&key, doc, 2, b"change bytes".to_vec(), &[0xab; 32]);
    let change = fixed_genesis();
    let real = sign(&key, doc, 2, &change);
    check(
        "signed_change.json",
        &json!({
            "seed": hex::encode([7u8; 32]),
            "signer": key.id().to_string(),
            "doc": hex::encode(doc.to_bytes()),
            "epoch": 2,
            "opaque": {
                "change": hex::encode(b"change bytes"),
                "change_hash": hex::encode([0xab; 32]),
                "encoded": hex::encode(opaque.encode()),
            },
            "bucket_genesis": {
                "change": hex::encode(change.raw_bytes()),
                "change_hash": hex::encode(change.hash().0),
                "encoded": hex::encode(real.encode()),
            },
        }),
    );
}

#[test]
fn stored_signed_changes_still_decode_verify_and_validate() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/signed_change.json");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    let field =
        |a: &str, b: &str| hex::decode(fixture[a][b].as_str().expect("string")).expect("hex");
    let opaque = SignedChange::decode(&field("opaque", "encoded"), 1 << 20).expect("decode");
    assert_eq!(opaque.encode(), field("opaque", "encoded"));
    let hash: [u8; 32] = field("opaque", "change_hash").try_into().expect("32 bytes");
    assert_eq!(opaque.verify(&hash), Ok(()));
    assert_eq!(opaque.signer, fixed_org().id());

    // The stored genesis is still accepted by a validator whose owner is the fixed organisation.
    let real = SignedChange::decode(&field("bucket_genesis", "encoded"), 1 << 20).expect("decode");
    let validator =
        confab_protocol::DocValidator::new(real.doc, fixed_org().id(), Default::default());
    struct Everyone;
    impl confab_protocol::Membership for Everyone {
        fn org_at_epoch(&self, _: &OrgId, _: u64) -> confab_protocol::validate::MembershipAnswer {
            confab_protocol::validate::MembershipAnswer::Member
        }
    }
    assert!(matches!(validator.check(&real, &Everyone), Ok(confab_protocol::Verdict::Accept(_))));
}

#[test]
fn id_text_forms() {
    let org = fixed_org().id();
    let chat = ChatId::from_bytes(*b"0123456789abcdef");
    let user: UserId = "alice.b_c-d@acme-corp".parse().expect("user");
    check(
        "ids.json",
        &json!({
            "org_id": org.to_string(),
            "org_id_bytes": hex::encode(org.as_bytes()),
            "chat_id": chat.to_string(),
            "device_id": DeviceId::from_bytes([0xff; 16]).to_string(),
            "message_id": fixed_message_id().to_string(),
            "message_id_bytes": hex::encode(fixed_message_id().as_bytes()),
            "doc_id_control": DocId::control(chat).to_string(),
            "doc_id_bucket": DocId::bucket(chat, 42).to_string(),
            "doc_id_bucket_bytes": hex::encode(DocId::bucket(chat, 42).to_bytes()),
            "user_id": user.to_string(),
            "actor_id": actor_for(&org, [9; 16]).to_hex_string(),
            "namespaced_key": bucket::namespaced_key(&org, &fixed_message_id().to_string()),
        }),
    );
    // And they parse back to the same values.
    assert_eq!(org.to_string().parse::<OrgId>(), Ok(org));
    assert_eq!(chat.to_string().parse::<ChatId>(), Ok(chat));
    assert_eq!(fixed_message_id().to_string().parse::<MessageId>(), Ok(fixed_message_id()));
    assert_eq!(user.to_string().parse::<UserId>(), Ok(user));
}

#[test]
fn record_json() {
    let org = fixed_org().id();
    let id = fixed_message_id();
    let message = MessageRecord {
        author: "alice@acme".parse().expect("user"),
        body: "héllo \"wörld\"\n".into(),
        reply_to: None,
        attachments: Vec::new(),
    };
    let reply = MessageRecord { reply_to: Some(id), ..message.clone() };
    let at = HlcTime { ms: 1_700_000_000_999, counter: 1 };
    let edit = UpdateRecord {
        target: id,
        by: "bob@acme".parse().expect("user"),
        at,
        op: UpdateOp::Edit { body: "fixed".into() },
    };
    let delete = UpdateRecord { op: UpdateOp::Delete, ..edit.clone() };
    let info = ChatInfo {
        kind: ChatKind::Channel,
        visibility: Visibility::Private,
        created_ms: 1_700_000_000_000,
        owner: org,
    };
    let dm = ChatInfo { kind: ChatKind::Dm, visibility: Visibility::Dm, ..info.clone() };
    let member = MemberRecord { role: Role::Admin, org };
    let ranges: Vec<(u64, Option<u64>)> = vec![(1, Some(3)), (5, None)];
    let sealed = BucketRecord { sealed: true, heads: vec!["ab".repeat(32)], messages: 5000 };
    let s = |v: &dyn erased::Json| v.json();
    check(
        "records.json",
        &json!({
            "message": s(&message),
            "message_reply": s(&reply),
            "update_edit": s(&edit),
            "update_delete": s(&delete),
            "chat_info": s(&info),
            "chat_info_dm": s(&dm),
            "member": s(&member),
            "org_ranges": s(&ranges),
            "bucket_sealed": s(&sealed),
            "bucket_open": s(&BucketRecord::default()),
        }),
    );
    // Each record reads back from its JSON.
    assert_eq!(serde_json::from_str::<MessageRecord>(&s(&reply)).expect("reply"), reply);
    assert_eq!(serde_json::from_str::<UpdateRecord>(&s(&edit)).expect("edit"), edit);
    assert_eq!(serde_json::from_str::<UpdateRecord>(&s(&delete)).expect("delete"), delete);
    assert_eq!(serde_json::from_str::<ChatInfo>(&s(&info)).expect("info"), info);
}

mod erased {
    /// The exact JSON string the protocol stores for a record.
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).expect("json")
        }
    }
}

#[test]
fn bucket_genesis_bytes_are_stable() {
    // A canary for the automerge encoding: the node's stored history does not depend on it, but
    // an unexpected change here means the automerge upgrade needs a look.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/signed_change.json");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    let stored = fixture["bucket_genesis"]["change"].as_str().expect("hex");
    assert_eq!(hex::encode(fixed_genesis().raw_bytes()), stored);
}

#[test]
fn device_list_encoding() {
    use confab_protocol::devices::{DeviceEntry, DeviceList, SealingKey, SignedDeviceList};
    use confab_protocol::relay::{b64_encode, DevicePublicKey};
    let org = fixed_org();
    let list = DeviceList {
        org: org.id(),
        user: UserId::new("alice", "acme").expect("user"),
        issued_ms: 1_700_000_000_000,
        devices: vec![DeviceEntry {
            device_id: DeviceId::from_bytes([0x21; 16]),
            signing_key: DevicePublicKey::from_bytes([0x22; 32]),
            sealing_key: SealingKey::from_bytes([0x23; 32]),
            created_ms: 1_699_999_999_000,
        }],
    };
    let payload = list.signed_payload().expect("payload");
    let signed = list.sign(&org).expect("sign");
    signed.verify().expect("verifies");
    let json = serde_json::to_value(&signed).expect("json");
    let back: SignedDeviceList = serde_json::from_value(json.clone()).expect("parse");
    assert_eq!(back, signed);
    check("device_list.json", &json!({ "signed_payload": b64_encode(&payload), "signed": json }));
}
