//! Sender chains (`confab_protocol::e2ee`): round trips, the test vector of `spec/e2ee.md`
//! (`fixtures/e2ee.json`), and every refusal: forged, replayed, moved and re-attributed
//! ciphertexts, distributions for another device or signed by another key; plus a property
//! test of out-of-order delivery against a simple model.

use confab_protocol::e2ee::{
    ChainId, E2eeError, EncryptedMessage, ReceiverChain, SenderChain, SenderKeyDistribution,
    SKIPPED_KEYS_MAX,
};
use confab_protocol::relay::x25519_public;
use confab_protocol::{ChatId, DeviceId, HlcTime, MessageId, OrgId};
use proptest::prelude::*;

const SENDER_SIGNING: [u8; 32] = [0x21; 32];
const RECIPIENT_SEALING: [u8; 32] = [0x42; 32];

fn sender_public() -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(&SENDER_SIGNING).verifying_key().to_bytes()
}

fn chain_id() -> ChainId {
    ChainId {
        chat: ChatId::from_bytes([0x11; 16]),
        device: DeviceId::from_bytes([0x22; 16]),
        epoch: 3,
    }
}

fn message_id(n: u16) -> MessageId {
    MessageId::new(
        HlcTime { ms: 1_700_000_000_000 + u64::from(n), counter: n },
        &OrgId::from_bytes([0x33; 32]),
        [0, 0, 0, 1],
    )
}

fn recipient() -> DeviceId {
    DeviceId::from_bytes([0x44; 16])
}

/// A sender chain and the receiving chain of one recipient device, through a sealed
/// distribution.
fn pair() -> (SenderChain, ReceiverChain) {
    let sender = SenderChain::new(chain_id(), [0x55; 32], SENDER_SIGNING);
    let receiver = receive(&sender);
    (sender, receiver)
}

fn receive(sender: &SenderChain) -> ReceiverChain {
    let sealed = sender
        .distribution(recipient())
        .seal(&x25519_public(RECIPIENT_SEALING), [0x66; 32])
        .expect("seal");
    let distribution =
        SenderKeyDistribution::open(recipient(), RECIPIENT_SEALING, &sender_public(), &sealed)
            .expect("open");
    ReceiverChain::new(&distribution, sender_public())
}

#[test]
fn a_message_round_trips_through_its_encoding() {
    let (mut sender, mut receiver) = pair();
    let chat = chain_id().chat;
    for n in 0..3 {
        let encrypted = sender.encrypt(&message_id(n), format!("hello {n}").as_bytes()).unwrap();
        let decoded = EncryptedMessage::from_bytes(&encrypted.to_bytes()).expect("decode");
        assert_eq!(decoded, encrypted);
        let plain = receiver.decrypt(&chat, &message_id(n), &decoded).expect("decrypt");
        assert_eq!(plain, format!("hello {n}").as_bytes());
    }
}

/// The vector in `spec/e2ee.md` and `tests/fixtures/e2ee.json`: fixed seed, keys and ids give
/// these bytes; the browser's implementation is checked against the same file.
#[test]
fn the_test_vector_holds() {
    let (mut sender, _) = pair();
    let first = sender.encrypt(&message_id(1), b"the first message").unwrap();
    let second = sender.encrypt(&message_id(2), b"the second message").unwrap();
    let distribution =
        SenderChain::new(chain_id(), [0x55; 32], SENDER_SIGNING).distribution(recipient());
    let value = serde_json::json!({
        "chain_seed": hex::encode([0x55u8; 32]),
        "sender_signing_secret": hex::encode(SENDER_SIGNING),
        "sender_signing_public": hex::encode(sender_public()),
        "chat": hex::encode(chain_id().chat.as_bytes()),
        "device": hex::encode(chain_id().device.as_bytes()),
        "epoch": chain_id().epoch,
        "recipient": hex::encode(recipient().as_bytes()),
        "distribution": hex::encode(distribution.to_bytes()),
        "messages": [
            {"message_id": hex::encode(message_id(1).as_bytes()), "plaintext": "the first message",
             "encrypted": hex::encode(first.to_bytes())},
            {"message_id": hex::encode(message_id(2).as_bytes()), "plaintext": "the second message",
             "encrypted": hex::encode(second.to_bytes())},
        ],
    });
    crate::golden::check("e2ee.json", &value);
}

#[test]
fn a_changed_byte_anywhere_is_refused() {
    let (mut sender, mut receiver) = pair();
    let encrypted = sender.encrypt(&message_id(1), b"secret").unwrap().to_bytes();
    let chat = chain_id().chat;
    for i in 0..encrypted.len() {
        let mut bytes = encrypted.clone();
        bytes[i] ^= 0x01;
        let result = EncryptedMessage::from_bytes(&bytes)
            .and_then(|m| receiver.decrypt(&chat, &message_id(1), &m));
        assert!(result.is_err(), "byte {i} changed and still accepted");
    }
    // Control: the untouched bytes decrypt, so the refusals above are the changes'.
    let m = EncryptedMessage::from_bytes(&encrypted).unwrap();
    assert_eq!(receiver.decrypt(&chat, &message_id(1), &m).unwrap(), b"secret");
}

#[test]
fn a_replayed_message_is_refused() {
    let (mut sender, mut receiver) = pair();
    let chat = chain_id().chat;
    let m = sender.encrypt(&message_id(1), b"once").unwrap();
    assert_eq!(receiver.decrypt(&chat, &message_id(1), &m).unwrap(), b"once");
    assert_eq!(receiver.decrypt(&chat, &message_id(1), &m), Err(E2eeError::Replayed(0)));
}

#[test]
fn a_ciphertext_moved_to_another_message_or_chat_is_refused() {
    let (mut sender, mut receiver) = pair();
    let chat = chain_id().chat;
    let m = sender.encrypt(&message_id(1), b"where I was sent").unwrap();
    // Another message id of the same chat: the signature covers the id.
    assert_eq!(
        receiver.decrypt(&chat, &message_id(2), &m),
        Err(E2eeError::Signature(confab_protocol::keys::SignatureError::Invalid))
    );
    // Another chat.
    assert_eq!(
        receiver.decrypt(&ChatId::from_bytes([0x99; 16]), &message_id(1), &m),
        Err(E2eeError::WrongChain)
    );
    // Another epoch claimed.
    let other_epoch = EncryptedMessage { epoch: 4, ..m.clone() };
    assert_eq!(receiver.decrypt(&chat, &message_id(1), &other_epoch), Err(E2eeError::WrongChain));
    // The refusals left the chain as it was: the real one still reads.
    assert_eq!(receiver.decrypt(&chat, &message_id(1), &m).unwrap(), b"where I was sent");
}

#[test]
fn a_message_attributed_to_another_device_is_refused() {
    // Mallory's device has its own chain in the same chat and signs with its own key, but
    // claims Alice's device as the sender.
    let (_, mut alice_receiver) = pair();
    let mallory_id = ChainId { device: DeviceId::from_bytes([0x77; 16]), ..chain_id() };
    let mut mallory = SenderChain::new(mallory_id, [0x55; 32], [0x78; 32]);
    let forged = mallory.encrypt(&message_id(1), b"I am alice").unwrap();
    let claimed = EncryptedMessage { device: chain_id().device, ..forged.clone() };
    let result = alice_receiver.decrypt(&chain_id().chat, &message_id(1), &claimed);
    assert!(matches!(result, Err(E2eeError::Signature(_))), "{result:?}");
    assert!(matches!(
        alice_receiver.decrypt(&chain_id().chat, &message_id(1), &forged),
        Err(E2eeError::WrongChain)
    ));
}

#[test]
fn a_distribution_for_another_device_or_signed_by_another_key_is_refused() {
    let sender = SenderChain::new(chain_id(), [0x55; 32], SENDER_SIGNING);
    let sealed =
        sender.distribution(recipient()).seal(&x25519_public(RECIPIENT_SEALING), [1; 32]).unwrap();
    let other_device = DeviceId::from_bytes([0x45; 16]);
    assert_eq!(
        SenderKeyDistribution::open(other_device, RECIPIENT_SEALING, &sender_public(), &sealed)
            .err(),
        Some(E2eeError::NotForThisDevice)
    );
    // A node that swapped the sender's device key in its list: the signature does not verify.
    let swapped = ed25519_dalek::SigningKey::from_bytes(&[0x99; 32]).verifying_key().to_bytes();
    assert!(matches!(
        SenderKeyDistribution::open(recipient(), RECIPIENT_SEALING, &swapped, &sealed),
        Err(E2eeError::Signature(_))
    ));
    // Another device's sealing secret cannot open it at all.
    assert!(matches!(
        SenderKeyDistribution::open(recipient(), [0x43; 32], &sender_public(), &sealed),
        Err(E2eeError::Seal(_))
    ));
    // Control: the right device with the right key opens it.
    assert!(SenderKeyDistribution::open(recipient(), RECIPIENT_SEALING, &sender_public(), &sealed)
        .is_ok());
}

#[test]
fn a_late_member_cannot_read_what_was_sent_before_its_distribution() {
    let mut sender = SenderChain::new(chain_id(), [0x55; 32], SENDER_SIGNING);
    let chat = chain_id().chat;
    let before = sender.encrypt(&message_id(1), b"before you joined").unwrap();
    let mut late = receive(&sender);
    assert_eq!(late.decrypt(&chat, &message_id(1), &before), Err(E2eeError::Replayed(0)));
    let after = sender.encrypt(&message_id(2), b"after").unwrap();
    assert_eq!(late.decrypt(&chat, &message_id(2), &after).unwrap(), b"after");
}

#[test]
fn a_forged_iteration_far_ahead_costs_nothing_and_changes_nothing() {
    let (mut sender, mut receiver) = pair();
    let chat = chain_id().chat;
    let m = sender.encrypt(&message_id(1), b"x").unwrap();
    let far = EncryptedMessage { iteration: SKIPPED_KEYS_MAX + 1, ..m.clone() };
    // The signature is checked first: a forged header never makes the receiver ratchet.
    assert!(matches!(receiver.decrypt(&chat, &message_id(1), &far), Err(E2eeError::Signature(_))));
    assert_eq!(receiver.skipped_keys(), 0);
    assert_eq!(receiver.decrypt(&chat, &message_id(1), &m).unwrap(), b"x");
}

#[test]
fn an_honest_message_too_far_ahead_is_refused_with_the_reason() {
    let (mut sender, mut receiver) = pair();
    for n in 0..=SKIPPED_KEYS_MAX {
        sender.encrypt(&message_id(n as u16), b"lost").unwrap();
    }
    let n = SKIPPED_KEYS_MAX + 1;
    let m = sender.encrypt(&message_id(n as u16), b"too far").unwrap();
    assert_eq!(
        receiver.decrypt(&chain_id().chat, &message_id(n as u16), &m),
        Err(E2eeError::TooFarAhead { iteration: n, next: 0 })
    );
}

proptest! {
    /// Any delivery order of a chain's messages, with duplicates: each message decrypts exactly
    /// once to its plaintext, every duplicate is refused, and the skipped keys stay bounded.
    #[test]
    fn any_delivery_order_reads_each_message_once(
        order in Just((0u16..40).collect::<Vec<_>>()).prop_shuffle(),
        duplicates in proptest::collection::vec(0usize..40, 0..10),
    ) {
        let (mut sender, mut receiver) = pair();
        let chat = chain_id().chat;
        let sent: Vec<EncryptedMessage> = (0u16..40)
            .map(|n| sender.encrypt(&message_id(n), &n.to_be_bytes()).unwrap())
            .collect();
        let mut deliveries: Vec<u16> = order.clone();
        for d in duplicates {
            deliveries.insert(d.min(deliveries.len()), order[d]);
        }
        let mut read = std::collections::HashSet::new();
        for n in deliveries {
            let result = receiver.decrypt(&chat, &message_id(n), &sent[n as usize]);
            if read.insert(n) {
                prop_assert_eq!(result, Ok(n.to_be_bytes().to_vec()));
            } else {
                prop_assert_eq!(result, Err(E2eeError::Replayed(u32::from(n))));
            }
            prop_assert!(receiver.skipped_keys() <= SKIPPED_KEYS_MAX as usize);
        }
        prop_assert_eq!(read.len(), 40);
        prop_assert_eq!(receiver.skipped_keys(), 0);
    }
}

/// The Python interpreter with PyPI's `cryptography`: the relay referee's virtualenv, which
/// `.ci/run` (`ensure_relay_referee`) installs.
fn referee_python() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("CONFAB_RELAY_REFEREE_PYTHON") {
        return path.into();
    }
    let home = std::env::var_os("HOME").expect("HOME");
    std::path::Path::new(&home).join(".cache/confab-relay-referee/bin/python3")
}

/// An independent implementation (Python's `cryptography`) reads the test vector: the
/// scheme is what `spec/e2ee.md` says, not only what this crate does.
#[test]
fn an_independent_implementation_reads_the_test_vector() {
    let python = referee_python();
    assert!(
        python.exists(),
        "the referee's Python is missing: {} does not exist (run .ci/run's ensure_relay_referee)",
        python.display()
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let output = std::process::Command::new(&python)
        .arg(dir.join("referee/e2ee.py"))
        .arg(dir.join("fixtures/e2ee.json"))
        .output()
        .expect("run the referee");
    assert!(
        output.status.success(),
        "the referee refused the vector: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
