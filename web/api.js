// Confab browser client: HTTP JSON API and the live-event WebSocket (spec/client-api.md).

import { Reconnector } from "./logic.js";

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message || code || "HTTP " + status);
    this.status = status;
    this.code = code || "http_" + status;
    this.retryAfter = retryAfter;
  }
}

/** Called with the error whenever a request answers 401 (session missing or expired). */
let onUnauthenticated = () => {};
export function setUnauthenticatedHandler(fn) {
  onUnauthenticated = fn;
}

const enc = encodeURIComponent;

async function request(method, path, body, { quiet401 = false } = {}) {
  const init = {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    cache: "no-store",
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch("/api/v1" + path, init);
  } catch (e) {
    throw new ApiError(0, "network", "Cannot reach the server (" + (e && e.message ? e.message : "network error") + ")");
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const retry = res.headers.get("Retry-After");
    const err = new ApiError(
      res.status,
      data && typeof data.code === "string" ? data.code : null,
      data && typeof data.message === "string" ? data.message : res.statusText,
      retry ? Number(retry) : null,
    );
    if (res.status === 401 && !quiet401) onUnauthenticated(err);
    throw err;
  }
  return data;
}

export const api = {
  // Accounts
  register: (username, password, display_name) =>
    request("POST", "/auth/register", display_name ? { username, password, display_name } : { username, password }, { quiet401: true }),
  login: (username, password) => request("POST", "/auth/login", { username, password }, { quiet401: true }),
  logout: () => request("POST", "/auth/logout", undefined, { quiet401: true }),
  me: () => request("GET", "/me", undefined, { quiet401: true }),
  updateMe: (fields) => request("PATCH", "/me", fields),
  users: () => request("GET", "/users"),
  user: (id) => request("GET", "/users/" + enc(id)),

  // Chats
  chats: () => request("GET", "/chats"),
  channels: () => request("GET", "/channels"),
  createChannel: (name, topic, visibility) => request("POST", "/channels", { name, topic, visibility }),
  openDm: (userIds) => request("POST", "/dms", { user_ids: userIds }),
  chat: (id) => request("GET", "/chats/" + enc(id)),
  updateChat: (id, fields) => request("PATCH", "/chats/" + enc(id), fields),
  join: (id) => request("POST", "/chats/" + enc(id) + "/join"),
  leave: (id) => request("POST", "/chats/" + enc(id) + "/leave"),
  members: (id) => request("GET", "/chats/" + enc(id) + "/members"),

  // Messages
  messages: (chatId, { before, after, limit } = {}) => {
    const q = new URLSearchParams();
    if (before) q.set("before", before);
    if (after) q.set("after", after);
    if (limit) q.set("limit", String(limit));
    const qs = q.toString();
    return request("GET", "/chats/" + enc(chatId) + "/messages" + (qs ? "?" + qs : ""));
  },
  postMessage: (chatId, body, clientId, replyTo = null, attachments = null) => {
    const b = { body, client_id: clientId, reply_to: replyTo };
    if (attachments && attachments.length) b.attachments = attachments;
    return request("POST", "/chats/" + enc(chatId) + "/messages", b);
  },
  message: (chatId, id) => request("GET", "/chats/" + enc(chatId) + "/messages/" + enc(id)),
  react: (chatId, id, emoji) => request("POST", "/chats/" + enc(chatId) + "/messages/" + enc(id) + "/reactions", { emoji }),
  unreact: (chatId, id, emoji) => request("DELETE", "/chats/" + enc(chatId) + "/messages/" + enc(id) + "/reactions/" + enc(emoji)),
  setNotifications: (chatId, level) => request("PUT", "/chats/" + enc(chatId) + "/notifications", { level }),
  setDnd: (enabled, untilMs = null) => request("PUT", "/me/dnd", untilMs ? { enabled, until_ms: untilMs } : { enabled }),
  presence: () => request("GET", "/presence"),
  search: (qs) => request("GET", "/search?" + qs),
  editMessage: (chatId, id, body) => request("PATCH", "/chats/" + enc(chatId) + "/messages/" + enc(id), { body }),
  deleteMessage: (chatId, id) => request("DELETE", "/chats/" + enc(chatId) + "/messages/" + enc(id)),
  markRead: (chatId, messageId) => request("POST", "/chats/" + enc(chatId) + "/read", { message_id: messageId }),

  // Devices and push
  pushSettings: () => request("GET", "/push"),
  devices: () => request("GET", "/devices"),
  registerDevice: (fields) => request("POST", "/devices", fields),
  setDeviceRelay: (id, relay) => request("PUT", "/devices/" + enc(id) + "/relay", { relay }),
  removeDevice: (id) => request("DELETE", "/devices/" + enc(id)),
};

/**
 * Upload a file (streamed as the raw request body) with progress: `onProgress(sent, total)`.
 * Returns {promise, abort}; the promise resolves to the node's attachment object.
 */
export function uploadFile(file, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open("POST", "/api/v1/media?name=" + encodeURIComponent(file.name || "file"));
    xhr.withCredentials = true;
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    };
    xhr.onload = () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && data && data.attachment) {
        resolve(data.attachment);
        return;
      }
      const err = new ApiError(xhr.status, data && data.code, data && data.message);
      if (xhr.status === 401) onUnauthenticated(err);
      reject(err);
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "Cannot reach the server"));
    xhr.onabort = () => reject(new ApiError(0, "aborted", "Upload cancelled"));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}

/** A client id for idempotent sends (≤ 64 chars). Works outside secure contexts too. */
export function newClientId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return "w-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * The live-event connection. Keeps the last processed cursor and reconnects with backoff,
 * passing it, so no event is seen twice or missed. Handlers:
 *   onEvent(ev)        every event frame that carries a cursor (in order)
 *   onResync(cursor)   the server could not replay from our cursor: reload over HTTP
 *   onFrame(frame)     ack / error / pong and other frames without a cursor
 *   onStatus(status)   "connecting" | "live" | "offline" (with retry delay in ms)
 *   onLost()           the socket never opened: maybe the session ended (caller checks /me)
 */
export class Live {
  constructor(handlers) {
    this.h = handlers;
    this.cursor = null;
    this.ws = null;
    this.rc = new Reconnector();
    this.timer = null;
    this.pingTimer = null;
    this.pongDeadline = null;
    this.stopped = true;
    this.ready = false;
    this.deviceId = null;
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.ready;
  }

  start() {
    this.stopped = false;
    if (this.rc.start().do === "connect") this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.clearPing();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try {
        ws.close(1000, "bye");
      } catch {
        /* already closed */
      }
    }
    this.cursor = null;
    this.rc.stop();
  }

  /** Reconnect now (e.g. the browser came back online). */
  poke() {
    if (this.stopped || this.open) return;
    if (this.rc.poke().do !== "connect") return;
    clearTimeout(this.timer);
    if (!this.ws) this.connect();
  }

  /** Drop the current connection (it may be silently dead, e.g. after a sleep) and reconnect. */
  reconnectNow() {
    if (this.stopped) return;
    if (this.ws) {
      const ws = this.ws;
      try {
        ws.close();
      } catch {
        /* ignore */
      }
      this.closed(ws, true);
    }
    this.rc.attempt = 0;
    this.poke();
  }

  connect() {
    if (this.stopped) return;
    this.ready = false;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams();
    if (this.cursor !== null) query.set("cursor", String(this.cursor));
    // A registered device says so: the node does not push to it while it is connected.
    if (this.deviceId) query.set("device", this.deviceId);
    const qs = query.toString();
    const url = proto + "//" + location.host + "/api/v1/ws" + (qs ? "?" + qs : "");
    this.h.onStatus("connecting");
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.scheduleReconnect(false);
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (e) => {
      let f;
      try {
        f = JSON.parse(e.data);
      } catch {
        return;
      }
      if (!f || typeof f.type !== "string") return;
      this.handleFrame(f);
    };
    ws.onclose = () => this.closed(ws, opened);
    ws.onerror = () => {
      /* onclose follows */
    };
  }

  closed(ws, opened) {
    if (this.ws !== ws) return;
    this.ws = null;
    this.ready = false;
    ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
    this.clearPing();
    if (this.h.onClosed) this.h.onClosed();
    this.scheduleReconnect(opened);
  }

  markReady() {
    if (this.ready) return;
    this.ready = true;
    this.rc.live();
    this.startPing();
    this.h.onStatus("live");
    if (this.h.onOpen) this.h.onOpen();
  }

  handleFrame(f) {
    switch (f.type) {
      case "hello":
        // Without a cursor we start from "now"; with one, the replay that follows moves it.
        if (this.cursor === null) this.cursor = f.cursor;
        this.markReady();
        return;
      case "resync":
        this.cursor = f.cursor;
        this.markReady();
        this.h.onResync(f.cursor);
        return;
      case "pong":
        this.pongDeadline = null;
        return;
      default:
        break;
    }
    if (typeof f.cursor === "number" || typeof f.cursor === "string") {
      const c = Number(f.cursor);
      if (this.cursor !== null && c <= Number(this.cursor)) return; // seen already
      this.cursor = c;
      try {
        this.h.onEvent(f);
      } catch (e) {
        console.error("event handler failed", f.type, e);
      }
      return;
    }
    this.h.onFrame(f);
  }

  send(frame) {
    if (!this.open) return false;
    try {
      this.ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  scheduleReconnect(wasOpen) {
    if (this.stopped) return;
    const a = this.rc.closed();
    if (a.do !== "wait") return;
    const delay = a.ms;
    this.h.onStatus("offline", delay);
    if (!wasOpen && this.h.onLost) this.h.onLost();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.rc.timer().do === "connect") this.connect();
    }, delay);
  }

  startPing() {
    this.clearPing();
    // Presence: a heartbeat every 5 s; the node marks the user offline after 3 missed ones.
    // `idle` when the page is hidden, so the user shows as away.
    const heartbeat = () => {
      if (this.open) this.send({ type: "heartbeat", idle: document.visibilityState === "hidden" });
    };
    heartbeat();
    this.heartbeatTimer = setInterval(heartbeat, 5000);
    this.pingTimer = setInterval(() => {
      if (!this.open) return;
      if (this.pongDeadline !== null && Date.now() > this.pongDeadline) {
        // No pong in time: treat the connection as dead now rather than waiting for TCP.
        const ws = this.ws;
        try {
          ws.close();
        } catch {
          /* ignore */
        }
        this.closed(ws, true);
        return;
      }
      if (this.pongDeadline === null) this.pongDeadline = Date.now() + 20000;
      this.send({ type: "ping" });
    }, 25000);
  }

  clearPing() {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.pongDeadline = null;
  }
}
