"""Independent referee of spec/e2ee.md: recomputes the test vector (tests/fixtures/e2ee.json)
with PyPI's `cryptography` (HKDF-SHA256, AES-256-GCM, Ed25519), not the Rust code.

Usage: python3 e2ee.py FIXTURE. Exits non-zero (an exception) on any mismatch.
"""
import json,sys
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
v=json.load(open(sys.argv[1])); h=bytes.fromhex
def expand(ikm,info,n): return HKDF(hashes.SHA256(),n,None,info).derive(ikm)
ck=h(v['chain_seed'])
pub=Ed25519PublicKey.from_public_bytes(h(v['sender_signing_public']))
for i,m in enumerate(v['messages']):
    w=h(m['encrypted']); assert w[0]==1; dev=w[1:17]; epoch=int.from_bytes(w[17:25],'big'); it=int.from_bytes(w[25:29],'big')
    ct=w[29:-64]; sig=w[-64:]
    okm=expand(ck,b"confab/v1/e2ee/message-key",44); ck=expand(ck,b"confab/v1/e2ee/chain-key",32)
    aad=bytes([1])+h(v['chat'])+h(m['message_id'])+dev+epoch.to_bytes(8,'big')+it.to_bytes(4,'big')
    pub.verify(sig,b"confab/v1/e2ee/message\x00"+aad+ct)
    pt=AESGCM(okm[:32]).decrypt(okm[32:],ct,aad)
    assert pt.decode()==m['plaintext'], pt; assert it==i
d=h(v['distribution']); pub.verify(d[-64:], b"confab/v1/e2ee/sender-key\x00"+d[:-64])
print("independent check ok")
