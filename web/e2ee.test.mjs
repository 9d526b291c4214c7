// The browser's WebCrypto implementation of spec/e2ee.md against the Rust reference's test
// vector (protocol/tests/fixtures/e2ee.json): from the same seed and keys it writes the same
// bytes (so the Rust side reads what this side writes), and it reads and refuses what the Rust
// side wrote as Rust does.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { checkDistribution, ReceiverChain, SenderChain } from "./e2ee.js";

const fixture = JSON.parse(readFileSync(new URL("../protocol/tests/fixtures/e2ee.json", import.meta.url), "utf8"));
const hex = (h) => Uint8Array.from(h.match(/../g), (b) => parseInt(b, 16));
const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const text = new TextEncoder();
// PKCS#8 wrapper for a raw 32-byte Ed25519 private key (RFC 8410).
const ED25519_PKCS8 = hex("302e020100300506032b657004220420");

const chain = { chat: hex(fixture.chat), device: hex(fixture.device), epoch: fixture.epoch };
const senderPublic = hex(fixture.sender_signing_public);

async function receiver() {
  const distribution = await checkDistribution(hex(fixture.distribution), hex(fixture.recipient), senderPublic);
  return new ReceiverChain(distribution, senderPublic);
}

test("the browser writes byte for byte what the Rust reference wrote", async () => {
  const signingKey = await crypto.subtle.importKey("pkcs8", new Uint8Array([...ED25519_PKCS8, ...hex(fixture.sender_signing_secret)]), { name: "Ed25519" }, false, ["sign"]);
  const sender = new SenderChain(chain, hex(fixture.chain_seed), signingKey);
  for (const m of fixture.messages) {
    const wire = await sender.encrypt(hex(m.message_id), text.encode(m.plaintext));
    assert.equal(toHex(wire), m.encrypted);
  }
});

test("the browser reads what the Rust reference wrote, and refuses a replay", async () => {
  const r = await receiver();
  for (const m of fixture.messages) {
    const plain = await r.decrypt(chain.chat, hex(m.message_id), hex(m.encrypted));
    assert.equal(new TextDecoder().decode(plain), m.plaintext);
  }
  await assert.rejects(r.decrypt(chain.chat, hex(fixture.messages[0].message_id), hex(fixture.messages[0].encrypted)), { reason: "Replayed" });
});

test("a changed byte, another message id or another chat is refused; the original still reads", async () => {
  const r = await receiver();
  const m = fixture.messages[0];
  const wire = hex(m.encrypted);
  for (const i of [0, 5, 20, 27, 40, wire.length - 70, wire.length - 1]) {
    const changed = wire.slice();
    changed[i] ^= 1;
    await assert.rejects(r.decrypt(chain.chat, hex(m.message_id), changed), `byte ${i}`);
  }
  await assert.rejects(r.decrypt(chain.chat, hex(fixture.messages[1].message_id), wire), { reason: "Signature" });
  await assert.rejects(r.decrypt(new Uint8Array(16).fill(0x99), hex(m.message_id), wire), { reason: "WrongChain" });
  const plain = await r.decrypt(chain.chat, hex(m.message_id), wire);
  assert.equal(new TextDecoder().decode(plain), m.plaintext);
});

test("out of order: the second message first, then the first", async () => {
  const r = await receiver();
  const [first, second] = fixture.messages;
  assert.equal(new TextDecoder().decode(await r.decrypt(chain.chat, hex(second.message_id), hex(second.encrypted))), second.plaintext);
  assert.equal(new TextDecoder().decode(await r.decrypt(chain.chat, hex(first.message_id), hex(first.encrypted))), first.plaintext);
});

test("a distribution for another device or under another signing key is refused", async () => {
  await assert.rejects(checkDistribution(hex(fixture.distribution), new Uint8Array(16).fill(0x45), senderPublic), { reason: "NotForThisDevice" });
  const other = new Uint8Array(await crypto.subtle.exportKey("raw", (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])).publicKey));
  await assert.rejects(checkDistribution(hex(fixture.distribution), hex(fixture.recipient), other), { reason: "Signature" });
});
