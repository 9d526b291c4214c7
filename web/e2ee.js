// End-to-end encryption's message layer in the browser, with WebCrypto only: the scheme of
// spec/e2ee.md, whose reference is protocol/src/e2ee.rs (the same test vector checks both).
// Sender chains: an HKDF-SHA256 ratchet giving one AES-256-GCM key and nonce per message; the
// associated data binds chat, message, device, epoch and iteration; every message is signed by
// the sending device's Ed25519 key. Not wired into the app yet.

import { concat, u64be } from "./device.js";

const enc = new TextEncoder();
const VERSION = 1;
/** Most iterations a receiver ratchets ahead (and skipped keys it keeps), as in Rust. */
export const SKIPPED_KEYS_MAX = 2000;
const PLAINTEXT_BYTES_MAX = 64 * 1024;
const MESSAGE_CONTEXT = enc.encode("confab/v1/e2ee/message");
const DISTRIBUTION_CONTEXT = enc.encode("confab/v1/e2ee/sender-key");

function u32(value) {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A refusal with the reason's name, as the Rust `E2eeError` variants. */
export class E2eeError extends Error {
  constructor(reason, message) {
    super(message);
    this.reason = reason;
  }
}

async function hkdf(chainKey, info, bytes) {
  const ikm = await crypto.subtle.importKey("raw", chainKey, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: enc.encode(info) }, ikm, bytes * 8);
  return new Uint8Array(bits);
}

/** One ratchet step: the message key and nonce of this iteration, and the next chain key. */
async function step(chainKey) {
  const okm = await hkdf(chainKey, "confab/v1/e2ee/message-key", 44);
  return { key: okm.slice(0, 32), nonce: okm.slice(32, 44), next: await hkdf(chainKey, "confab/v1/e2ee/chain-key", 32) };
}

function associatedData(chain, messageId, iteration) {
  return concat(new Uint8Array([VERSION]), chain.chat, messageId, chain.device, u64be(chain.epoch), u32(iteration));
}

/**
 * The sending side of a chain. `chain` is { chat, device, epoch } (bytes, bytes, number),
 * `seed` 32 random bytes, `signingKey` the device's Ed25519 private CryptoKey.
 */
export class SenderChain {
  constructor(chain, seed, signingKey) {
    this.chain = chain;
    this.chainKey = seed;
    this.iteration = 0;
    this.signingKey = signingKey;
  }

  /** The wire bytes of `plaintext` as message `messageId`; moves the chain on. */
  async encrypt(messageId, plaintext) {
    if (plaintext.length > PLAINTEXT_BYTES_MAX) throw new E2eeError("TooLarge", "the plaintext is longer than 64 KiB");
    const iteration = this.iteration;
    const { key, nonce, next } = await step(this.chainKey);
    const aad = associatedData(this.chain, messageId, iteration);
    const aes = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt"]);
    const ciphertext = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, aes, plaintext));
    const signature = new Uint8Array(await crypto.subtle.sign("Ed25519", this.signingKey, concat(MESSAGE_CONTEXT, new Uint8Array([0]), aad, ciphertext)));
    this.chainKey = next;
    this.iteration = iteration + 1;
    return concat(new Uint8Array([VERSION]), this.chain.device, u64be(this.chain.epoch), u32(iteration), ciphertext, signature);
  }
}

/** Splits an encrypted message's wire bytes. */
export function parseEncrypted(bytes) {
  if (bytes.length === 0) throw new E2eeError("Malformed", "empty");
  if (bytes[0] !== VERSION) throw new E2eeError("Version", "unsupported version " + bytes[0]);
  if (bytes.length < 29 + 16 + 64) throw new E2eeError("Malformed", "shorter than a header, a tag and a signature");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    device: bytes.slice(1, 17),
    epoch: view.getBigUint64(17),
    iteration: view.getUint32(25),
    ciphertext: bytes.slice(29, bytes.length - 64),
    signature: bytes.slice(bytes.length - 64),
  };
}

/** A sender key distribution's fields, and the signed part. */
export function parseDistribution(bytes) {
  if (bytes.length !== 157 || bytes[0] !== VERSION) throw new E2eeError("Malformed", "a sender key distribution is 157 bytes");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    recipient: bytes.slice(1, 17),
    chain: { chat: bytes.slice(17, 33), device: bytes.slice(33, 49), epoch: Number(view.getBigUint64(49)) },
    iteration: view.getUint32(57),
    chainKey: bytes.slice(61, 93),
    signed: bytes.slice(0, 93),
    signature: bytes.slice(93),
  };
}

/**
 * Checks a distribution (already opened from its sealed envelope) for device `me` against the
 * sending device's Ed25519 public key (32 raw bytes, from its verified device list).
 */
export async function checkDistribution(bytes, me, senderPublic) {
  const d = parseDistribution(bytes);
  const key = await crypto.subtle.importKey("raw", senderPublic, { name: "Ed25519" }, false, ["verify"]);
  if (!(await crypto.subtle.verify("Ed25519", key, d.signature, concat(DISTRIBUTION_CONTEXT, new Uint8Array([0]), d.signed)))) {
    throw new E2eeError("Signature", "the sending device's signature does not verify");
  }
  if (!equal(d.recipient, me)) throw new E2eeError("NotForThisDevice", "the distribution is for another device");
  return d;
}

/** The receiving side of a chain, from a checked distribution. */
export class ReceiverChain {
  constructor(distribution, senderPublic) {
    this.chain = distribution.chain;
    this.senderPublic = senderPublic;
    this.chainKey = distribution.chainKey;
    this.next = distribution.iteration;
    this.skipped = new Map();
    this.verifyKey = null;
  }

  /** The sending device's key as a CryptoKey, imported once per chain. */
  async senderKey() {
    this.verifyKey ??= await crypto.subtle.importKey("raw", this.senderPublic, { name: "Ed25519" }, false, ["verify"]);
    return this.verifyKey;
  }

  /** Checks and decrypts the wire bytes stored as message `messageId` of chat `chat`. */
  async decrypt(chat, messageId, bytes) {
    const m = parseEncrypted(bytes);
    if (!equal(chat, this.chain.chat) || !equal(m.device, this.chain.device) || m.epoch !== BigInt(this.chain.epoch)) {
      throw new E2eeError("WrongChain", "the message is from another chain than this one");
    }
    const aad = associatedData(this.chain, messageId, m.iteration);
    if (!(await crypto.subtle.verify("Ed25519", await this.senderKey(), m.signature, concat(MESSAGE_CONTEXT, new Uint8Array([0]), aad, m.ciphertext)))) {
      throw new E2eeError("Signature", "the sending device's signature does not verify");
    }
    const { messageKey, advance } = await this.keyFor(m.iteration);
    const aes = await crypto.subtle.importKey("raw", messageKey.key, "AES-GCM", false, ["decrypt"]);
    let plaintext;
    try {
      plaintext = new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv: messageKey.nonce, additionalData: aad }, aes, m.ciphertext));
    } catch {
      throw new E2eeError("Decrypt", "the message does not decrypt");
    }
    // Only a message that decrypted moves the chain or uses up a skipped key.
    if (!advance) {
      this.skipped.delete(m.iteration);
    } else {
      for (const [i, k] of advance.skipped) this.skipped.set(i, k);
      this.chainKey = advance.chainKey;
      this.next = m.iteration + 1;
      while (this.skipped.size > SKIPPED_KEYS_MAX) this.skipped.delete(Math.min(...this.skipped.keys()));
    }
    return plaintext;
  }

  async keyFor(iteration) {
    if (iteration < this.next) {
      const messageKey = this.skipped.get(iteration);
      if (!messageKey) throw new E2eeError("Replayed", "iteration " + iteration + " was already read or is older than this device's copy");
      return { messageKey, advance: null };
    }
    if (iteration - this.next > SKIPPED_KEYS_MAX) throw new E2eeError("TooFarAhead", "iteration " + iteration + " is too far ahead");
    let chainKey = this.chainKey;
    const skipped = [];
    for (let i = this.next; i < iteration; i++) {
      const s = await step(chainKey);
      skipped.push([i, { key: s.key, nonce: s.nonce }]);
      chainKey = s.next;
    }
    const s = await step(chainKey);
    return { messageKey: { key: s.key, nonce: s.nonce }, advance: { skipped, chainKey: s.next } };
  }
}
