//! Feeds arbitrary bytes to the end-to-end encryption decoders that foreign bytes reach: an
//! encrypted message (decoded, then given to a receiving chain, as a member device does) and a
//! sender key distribution (decoded; and as the plaintext of a sealed envelope). None may
//! panic, whatever the verdict.
#![no_main]

use confab_protocol::e2ee::{
    ChainId, EncryptedMessage, ReceiverChain, SenderChain, SenderKeyDistribution,
};
use confab_protocol::{ChatId, DeviceId, MessageId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let chain = ChainId {
        chat: ChatId::from_bytes([1; 16]),
        device: DeviceId::from_bytes([2; 16]),
        epoch: 0,
    };
    let sender = SenderChain::new(chain, [3; 32], [4; 32]);
    let public = ed25519_dalek::SigningKey::from_bytes(&[4; 32]).verifying_key().to_bytes();
    let mut receiver =
        ReceiverChain::new(&sender.distribution(DeviceId::from_bytes([5; 16])), public);
    if let Ok(message) = EncryptedMessage::from_bytes(data) {
        let _ = receiver.decrypt(&chain.chat, &MessageId::from_bytes([6; 20]), &message);
    }
    let _ = SenderKeyDistribution::from_bytes(data);
});
