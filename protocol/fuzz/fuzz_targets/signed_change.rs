//! Feeds arbitrary bytes to `SignedChange::decode` and, when they decode, to both validators of a
//! chat (control and bucket 1). Neither may panic, whatever the verdict.
#![no_main]

use confab_protocol::validate::MembershipAnswer;
use confab_protocol::{ChatId, DocId, DocValidator, Limits, Membership, OrgId, SignedChange, Verdict};
use libfuzzer_sys::fuzz_target;

struct Everyone;

impl Membership for Everyone {
    fn org_at_epoch(&self, _org: &OrgId, _epoch: u64) -> MembershipAnswer {
        MembershipAnswer::Member
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = SignedChange::decode(data, 2 << 20) else { return };
    let chat = ChatId::from_bytes([0x11; 16]);
    for doc in [DocId::control(chat), DocId::bucket(chat, 1)] {
        let validator = DocValidator::new(doc, signed.signer, Limits::default());
        let _: Result<Verdict, _> = validator.check(&signed, &Everyone);
        let _ = validator.check_own(&signed, &Everyone);
    }
});
