// The device's WebCrypto code against the relay's golden fixtures, made by the Rust side
// (relay/tests/fixtures/relay_wire.json): the same bytes, the same signatures, and an envelope
// sealed by the node opens here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { answerChallenge, b32decode, b32encode, b64decode, b64encode, capabilityToken, chooseRelay, openSealed } from "./device.js";

const fixture = JSON.parse(readFileSync(new URL("../relay/tests/fixtures/relay_wire.json", import.meta.url), "utf8"));
const hex = (h) => Uint8Array.from(h.match(/../g), (b) => parseInt(b, 16));
const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

// PKCS#8 wrappers for raw 32-byte private keys (RFC 8410).
const ED25519_PKCS8 = hex("302e020100300506032b657004220420");
const X25519_PKCS8 = hex("302e020100300506032b656e04220420");
const pkcs8 = (prefix, seed) => new Uint8Array([...prefix, ...seed]);

async function fixtureDevice(queue) {
  const signingKey = await crypto.subtle.importKey("pkcs8", pkcs8(ED25519_PKCS8, hex(fixture.device_seed)), { name: "Ed25519" }, false, ["sign"]);
  const sealingKey = await crypto.subtle.importKey("pkcs8", pkcs8(X25519_PKCS8, hex(fixture.recipient_x25519_secret)), { name: "X25519" }, false, ["deriveBits"]);
  // The device's public key is in the auth payload, after purpose, challenge and queue.
  const authPayload = hex(fixture.device_auth.payload);
  return {
    signingKey,
    signingPublic: b32encode(authPayload.slice(1 + 32 + 16)),
    sealingKey,
    sealingPublic: b32encode(hex(fixture.recipient_x25519_public)),
    queue: queue ? b32encode(queue) : null,
  };
}

test("base32hex and base64url round trip and match the API's forms", () => {
  const bytes = new Uint8Array(16).fill(0x21);
  assert.equal(b32encode(bytes), "44gi289144gi289144gi289144");
  assert.deepEqual(b32decode("44gi289144gi289144gi289144"), bytes);
  for (let n = 0; n < 40; n++) {
    const random = crypto.getRandomValues(new Uint8Array(n));
    assert.deepEqual(b32decode(b32encode(random)), random);
    assert.deepEqual(b64decode(b64encode(random)), random);
  }
  assert.throws(() => b32decode("A"));
});

test("an envelope sealed by the node opens with the device's X25519 key", async () => {
  const device = await fixtureDevice(null);
  const sealed = hex(fixture.sealed_envelope.encoded);
  const plain = await openSealed(device, sealed);
  assert.equal(new TextDecoder().decode(plain), fixture.sealed_envelope.plaintext);
  await assert.rejects(() => openSealed(device, sealed.slice(0, 40)), /not a sealed envelope/);
  const tampered = sealed.slice();
  tampered[tampered.length - 1] ^= 1;
  await assert.rejects(() => openSealed(device, tampered));
});

test("the challenge answer and the capability token equal the Rust side's, byte for byte", async () => {
  const capability = hex(fixture.capability_token.encoded);
  const queue = capability.slice(1, 17);
  const device = await fixtureDevice(queue);
  const answer = await answerChallenge(device, "fetch", b64decode(fixture.device_auth.challenge));
  assert.equal(b64encode(answer), fixture.device_auth.signature);
  const token = await capabilityToken(device, capability.slice(17, 33), b32encode(capability.slice(33, 65)), Number(new DataView(capability.buffer).getBigUint64(65)));
  assert.equal(toHex(token), fixture.capability_token.encoded);
  assert.equal(b64encode(token), fixture.capability_token.text);
});

test("a device enrols with an offered relay, or any https relay only when the node allows it", () => {
  const settings = { default_relay_url: "https://a.example", relay_urls: ["https://a.example", "http://127.0.0.1:9/r"], other_relays_allowed: false };
  assert.equal(chooseRelay(settings, ""), "https://a.example");
  assert.equal(chooseRelay(settings, "  http://127.0.0.1:9/r/ "), "http://127.0.0.1:9/r");
  assert.throws(() => chooseRelay(settings, "https://b.example"), /only through https:\/\/a\.example, http:\/\/127\.0\.0\.1:9\/r/);
  const open = { ...settings, other_relays_allowed: true };
  assert.equal(chooseRelay(open, "https://b.example/relay/"), "https://b.example/relay");
  assert.throws(() => chooseRelay(open, "http://b.example"), /https:\/\/ URL/);
  assert.throws(() => chooseRelay(open, "https://b example"), /https:\/\/ URL/);
  // An older node's settings (default only) and a node with no relay at all.
  assert.equal(chooseRelay({ default_relay_url: "https://a.example/" }, null), "https://a.example");
  assert.throws(() => chooseRelay({ default_relay_url: null, relay_urls: [] }, ""), /no relay configured/);
});
