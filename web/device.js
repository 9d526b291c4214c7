// This browser as a Confab device: its keys, its relay queue, and opening what the relay holds.
//
// Keys are made with WebCrypto and are not extractable: an Ed25519 key (authenticates to the
// relay, signs capability tokens) and an X25519 key (the node seals pushed messages to it). The
// CryptoKey objects live in IndexedDB, where the service worker (sw.js) finds them too.
// Formats: spec/relay.md (challenge answers, capability tokens, sealed envelopes) and
// spec/client-api.md (devices and push). Shared by the page and the service worker: no DOM here.

const DB_NAME = "confab-device";
const STORE = "device";
const SEEN = "seen";
const SEEN_MAX = 2000;
const CAPABILITY_LIFETIME_MS = 300 * 24 * 3600 * 1000;
const enc = new TextEncoder();

// ---- encodings -------------------------------------------------------------------------------

const B32 = "0123456789abcdefghijklmnopqrstuv";

/** Lowercase base32hex without padding (the id and key format of the API). */
export function b32encode(bytes) {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

export function b32decode(text) {
  const out = [];
  let bits = 0;
  let value = 0;
  for (const ch of text) {
    const v = B32.indexOf(ch);
    if (v < 0) throw new Error("not base32hex");
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return new Uint8Array(out);
}

/** Unpadded base64url. */
export function b64encode(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function b64decode(text) {
  const s = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function u64be(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

// ---- IndexedDB -------------------------------------------------------------------------------

function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      req.result.createObjectStore(STORE);
      req.result.createObjectStore(SEEN);
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx(store, mode, fn) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const t = db.transaction(store, mode);
      const result = fn(t.objectStore(store));
      t.oncomplete = () => resolve(result && "result" in result ? result.result : undefined);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error);
    });
  } finally {
    db.close();
  }
}

/** The enrolled device of `userId` on this browser, or null. */
export async function loadDevice(userId) {
  const device = await tx(STORE, "readonly", (s) => s.get("device"));
  return device && device.user === userId ? device : null;
}

/** The enrolled device whoever it belongs to (the service worker has no session). */
export async function loadAnyDevice() {
  return (await tx(STORE, "readonly", (s) => s.get("device"))) || null;
}

async function saveDevice(device) {
  await tx(STORE, "readwrite", (s) => s.put(device, "device"));
}

export async function forgetDevice() {
  await tx(STORE, "readwrite", (s) => s.delete("device"));
}

/**
 * Records message ids as shown; returns the ids that were new. A message reaches a device
 * through its relay and again from its node: each is shown once.
 */
export async function firstSightings(ids) {
  const fresh = [];
  await tx(SEEN, "readwrite", (s) => {
    for (const id of ids) {
      const req = s.get(id);
      req.onsuccess = () => {
        if (req.result === undefined) {
          fresh.push(id);
          s.put(Date.now(), id);
        }
      };
    }
  });
  trimSeen().catch(() => {});
  return fresh;
}

async function trimSeen() {
  const count = await tx(SEEN, "readonly", (s) => s.count());
  if (count <= SEEN_MAX) return;
  await tx(SEEN, "readwrite", (s) => {
    let drop = count - SEEN_MAX;
    s.openCursor().onsuccess = (e) => {
      const cursor = e.target.result;
      if (!cursor || drop <= 0) return;
      cursor.delete();
      drop -= 1;
      cursor.continue();
    };
  });
}

// ---- relay calls -----------------------------------------------------------------------------

const PURPOSE = { register: 1, fetch: 2, manage: 3 };

async function relayPost(relay, path, body, method = "POST") {
  const res = await fetch(relay + path, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error("relay " + path + ": " + (data.message || res.status));
  return data;
}

async function sign(key, context, payload) {
  const message = concat(enc.encode(context), new Uint8Array([0]), payload);
  return new Uint8Array(await crypto.subtle.sign("Ed25519", key, message));
}

/** The signed answer to relay challenge `challenge` (bytes) for `purpose`. */
export async function answerChallenge(device, purpose, challenge) {
  const queue = device.queue ? b32decode(device.queue) : new Uint8Array(16);
  const payload = concat(new Uint8Array([PURPOSE[purpose]]), challenge, queue, b32decode(device.signingPublic));
  return sign(device.signingKey, "confab/v1/relay-device-auth", payload);
}

/** A fresh challenge answered for `purpose` (and the queue, once there is one). */
async function auth(device, purpose) {
  const { challenge } = await relayPost(device.relay, "/v1/challenges", {});
  const signature = await answerChallenge(device, purpose, b64decode(challenge));
  return { challenge, signature: b64encode(signature) };
}

/** A capability token (137 bytes) letting organisation `org` enqueue to the device's queue. */
export async function capabilityToken(device, capabilityId, org, notAfterMs) {
  const signed = concat(new Uint8Array([1]), b32decode(device.queue), capabilityId, b32decode(org), u64be(notAfterMs));
  return concat(signed, await sign(device.signingKey, "confab/v1/relay-capability", signed));
}

// ---- enrolment -------------------------------------------------------------------------------

/**
 * The relay to enrol with, from the node's push settings (`GET /api/v1/push`) and what the user
 * typed: `wanted` without trailing "/", or the node's first offered relay (its default) when
 * empty. A relay the node does not offer is refused here, before any key is made, unless the
 * node allows other https relays. Throws an Error whose message is for the user.
 */
export function chooseRelay(settings, wanted) {
  const trim = (url) => String(url || "").trim().replace(/\/+$/, "");
  const offered = (settings.relay_urls || [settings.default_relay_url]).map(trim).filter(Boolean);
  const url = trim(wanted) || offered[0];
  if (!url) throw new Error("this node has no relay configured for push");
  if (offered.includes(url)) return url;
  if (settings.other_relays_allowed) {
    if (/^https:\/\/[^\s/?#]+(\/[^\s?#]*)?$/.test(url)) return url;
    throw new Error("a relay this node does not offer must be an https:// URL");
  }
  throw new Error("this node pushes only through " + (offered.join(", ") || "no relay"));
}

/**
 * Makes this browser a device of the signed-in user: keys, registration with the node, a queue
 * on `relayUrl` (the node's default when empty; see `chooseRelay`), and the capability the node
 * enqueues with. `api` is the page's API client. Returns the stored device. On failure nothing
 * is left behind at the node: a device registered there is removed again.
 */
export async function enrol(api, userId, name, relayUrl) {
  const settings = await api.pushSettings();
  const relay = chooseRelay(settings, relayUrl);
  const signing = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const sealing = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  const signingPublic = b32encode(new Uint8Array(await crypto.subtle.exportKey("raw", signing.publicKey)));
  const sealingPublic = b32encode(new Uint8Array(await crypto.subtle.exportKey("raw", sealing.publicKey)));
  const registered = await api.registerDevice({ name, signing_key: signingPublic, sealing_key: sealingPublic });
  const device = {
    user: userId,
    id: registered.id,
    signingKey: signing.privateKey,
    signingPublic,
    sealingKey: sealing.privateKey,
    sealingPublic,
    relay,
    queue: null,
    vapid: null,
    org: settings.org,
  };
  try {
    const queue = await relayPost(relay, "/v1/queues", { device_key: signingPublic, auth: await auth(device, "register") });
    device.queue = queue.queue;
    device.vapid = queue.vapid_public_key;
    const capabilityId = crypto.getRandomValues(new Uint8Array(16));
    const capability = await capabilityToken(device, capabilityId, settings.org, Date.now() + CAPABILITY_LIFETIME_MS);
    await api.setDeviceRelay(device.id, { url: relay, queue: device.queue, capability: b64encode(capability) });
    await saveDevice(device);
  } catch (err) {
    await api.removeDevice(device.id).catch(() => {});
    if (device.queue) await deleteQueue(device).catch(() => {});
    if (err instanceof TypeError) throw new Error("the relay " + relay + " cannot be reached (" + err.message + ")");
    throw err;
  }
  return device;
}

/** Deletes the device's queue at its relay (everything in it goes) and forgets the device here. */
export async function retire(device) {
  try {
    await deleteQueue(device);
  } finally {
    await forgetDevice();
  }
}

async function deleteQueue(device) {
  await relayPost(device.relay, "/v1/queues/" + device.queue + "/delete", { auth: await auth(device, "manage") });
}

/** Hands the relay this browser's push subscription (or null to stop pushes). */
export async function setPushSubscription(device, subscription) {
  const body = { auth: await auth(device, "manage"), subscription: subscription ? subscription.toJSON() : null };
  await relayPost(device.relay, "/v1/queues/" + device.queue + "/push", body, "PUT");
}

// ---- fetching and opening --------------------------------------------------------------------

/** Opens a sealed envelope (spec/relay.md) holding JSON. */
export async function openEnvelope(device, sealed) {
  return JSON.parse(new TextDecoder().decode(await openSealed(device, sealed)));
}

/** Opens a sealed envelope (spec/relay.md) with the device's X25519 key: the plaintext bytes. */
export async function openSealed(device, sealed) {
  if (sealed.length < 49 || sealed[0] !== 1) throw new Error("not a sealed envelope");
  const ephemeral = sealed.slice(1, 33);
  const ephemeralKey = await crypto.subtle.importKey("raw", ephemeral, { name: "X25519" }, false, []);
  const shared = new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: ephemeralKey }, device.sealingKey, 256));
  if (shared.every((b) => b === 0)) throw new Error("non-contributory key exchange");
  const ikm = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
  const salt = concat(ephemeral, b32decode(device.sealingPublic));
  const okm = new Uint8Array(
    await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info: enc.encode("confab/v1/sealed-envelope") }, ikm, 44 * 8),
  );
  const key = await crypto.subtle.importKey("raw", okm.slice(0, 32), "AES-GCM", false, ["decrypt"]);
  const aad = concat(new Uint8Array([1]), ephemeral);
  return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv: okm.slice(32, 44), additionalData: aad }, key, sealed.slice(33)));
}

/**
 * Fetches what the relay holds for the device, opens it, acknowledges it (only once opened and
 * handed over: at-least-once), and returns the pushed messages.
 */
export async function pullFromRelay(device) {
  const answer = await relayPost(device.relay, "/v1/queues/" + device.queue + "/fetch", { auth: await auth(device, "fetch") });
  const messages = [];
  const ids = [];
  for (const envelope of answer.envelopes || []) {
    ids.push(envelope.envelope_id);
    try {
      const payload = await openEnvelope(device, b64decode(envelope.sealed));
      if (payload && payload.type === "message" && payload.message) messages.push(payload.message);
    } catch {
      /* not for this key (e.g. sealed before a re-enrolment): drop it */
    }
  }
  if (ids.length) {
    await relayPost(device.relay, "/v1/queues/" + device.queue + "/ack", { auth: await auth(device, "fetch"), envelope_ids: ids });
  }
  return messages;
}
