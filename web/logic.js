// Confab browser client: pure client logic (no DOM, no network, no clocks: time is passed in).
// Unit-tested by logic.test.mjs with `node --test`.

import { backoffMs, compareIds } from "./format.js";

// ---------------------------------------------------------------------------------------------
// Unread state

/**
 * The id of the first message in `msgs` (sorted by id) that is newer than `lastRead` and not
 * written by `meId`, or null. With no read marker every message of others is unread.
 */
export function firstUnreadId(msgs, lastRead, meId) {
  for (const m of msgs) {
    if (m.author === meId || m.deleted) continue;
    if (lastRead && compareIds(m.id, lastRead) <= 0) continue;
    return m.id;
  }
  return null;
}

/** Totals over chat-list entries: unread messages (muted chats excluded) and mentions. */
export function unreadTotals(entries) {
  let unread = 0;
  let mentions = 0;
  for (const e of entries) {
    mentions += e.mention_count || 0;
    if (e.notification_level === "mute") continue;
    unread += e.unread_count || 0;
  }
  return { unread, mentions };
}

/** The tab title for the totals: "(3) Confab", or "Confab". */
export function tabTitle({ unread, mentions }, base = "Confab") {
  const n = Math.max(unread, mentions);
  return n > 0 ? "(" + n + ") " + base : base;
}

/** Sort chat-list entries by activity, newest first (stable for equal times by id). */
export function sortByActivity(entries) {
  const act = (e) => e.last_activity_ms || (e.last_message && e.last_message.created_ms) || (e.chat && e.chat.created_ms) || 0;
  return [...entries].sort((a, b) => act(b) - act(a) || (a.chat.id < b.chat.id ? -1 : a.chat.id > b.chat.id ? 1 : 0));
}

/**
 * Whether a live `message.created` event should raise a desktop notification: the node's
 * `notify` flag (levels, DND, own messages), and only when the user is not already looking
 * at that chat.
 */
export function shouldNotify(ev, { openChatId, visible, permission }) {
  if (permission !== "granted" || !ev || !ev.message || ev.notify !== true) return false;
  if (visible && openChatId === ev.message.chat_id) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Messages

/** Whether `m` continues `prev`'s group (same author, close in time, same day, not a reply). */
export function isContinuation(prev, m, groupMs = 5 * 60 * 1000, sameDay = true) {
  return !!prev && sameDay && prev.author === m.author && !prev.deleted && !m.reply_to && m.created_ms - prev.created_ms < groupMs && m.created_ms >= prev.created_ms;
}

/** Replies per parent id among `msgs`: Map(parent id → [reply, ...]) in order. */
export function threadReplies(msgs) {
  const map = new Map();
  for (const m of msgs) {
    if (!m.reply_to || m.deleted) continue;
    if (!map.has(m.reply_to)) map.set(m.reply_to, []);
    map.get(m.reply_to).push(m);
  }
  return map;
}

/** "1 reply", "3 replies". */
export function replyLabel(n) {
  return n + (n === 1 ? " reply" : " replies");
}

/** Move `emoji` to the front of the recent list, without duplicates, at most `max` long. */
export function pushRecent(list, emoji, max = 16) {
  return [emoji, ...list.filter((e) => e !== emoji)].slice(0, max);
}

/**
 * Reactions after a local toggle of `emoji` by `me` (optimistic), given the current list
 * `[{emoji, count, users}]`. Keeps the list sorted by emoji like the node does.
 */
export function toggleReaction(reactions, emoji, me) {
  const list = (reactions || []).map((r) => ({ ...r, users: [...(r.users || [])] }));
  const r = list.find((x) => x.emoji === emoji);
  if (r && r.users.includes(me)) {
    r.users = r.users.filter((u) => u !== me);
    r.count = Math.max(0, r.count - 1);
    return list.filter((x) => x.count > 0);
  }
  if (r) {
    r.users.push(me);
    r.count += 1;
    return list;
  }
  list.push({ emoji, count: 1, users: [me] });
  list.sort((a, b) => (a.emoji < b.emoji ? -1 : a.emoji > b.emoji ? 1 : 0));
  return list;
}

/** Human file size: "512 B", "1.5 KB", "12 MB". */
export function formatBytes(n) {
  if (!Number.isFinite(n) || n < 0) return "";
  if (n < 1024) return n + " B";
  const units = ["KB", "MB", "GB", "TB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return (v < 10 ? v.toFixed(1) : Math.round(v)) + " " + units[i];
}

/** Whether an attachment is an image the browser can show from its thumbnails. */
export function isImageAttachment(a) {
  return !!a && typeof a.mime === "string" && a.mime.startsWith("image/") && Array.isArray(a.thumbnails) && a.thumbnails.length > 0;
}

/** The smallest thumbnail whose longer side is at least `side` px (else the largest). */
export function pickThumbnail(a, side) {
  const t = (a && a.thumbnails) || [];
  if (!t.length) return null;
  const fits = t.filter((x) => Math.max(x.width, x.height) >= side);
  if (!fits.length) return t[0];
  return fits.reduce((best, x) => (Math.max(x.width, x.height) < Math.max(best.width, best.height) ? x : best));
}

/** The icon of a download card for a file of type `mime`. */
export function fileIcon(mime) {
  const t = String(mime || "");
  if (t.startsWith("image/")) return "🖼️";
  if (t.startsWith("video/")) return "🎞️";
  if (t.startsWith("audio/")) return "🎵";
  if (t === "application/pdf") return "📕";
  if (t.includes("zip") || t.includes("compressed")) return "🗜️";
  if (t.startsWith("text/")) return "📄";
  return "📎";
}

/** Display size of an image inside a `maxW`×`maxH` box, keeping its aspect ratio. */
export function fitSize(w, h, maxW, maxH) {
  if (!w || !h) return { width: maxW, height: Math.round(maxH / 2) };
  const k = Math.min(1, maxW / w, maxH / h);
  return { width: Math.round(w * k), height: Math.round(h * k) };
}

/** The part of a user id before its last "@" (the whole id when there is none). */
export function localpart(id) {
  const i = String(id).lastIndexOf("@");
  return i > 0 ? id.slice(0, i) : String(id);
}

// ---------------------------------------------------------------------------------------------
// Composer

/**
 * The @mention being typed at `caret` in `text`: {start, query} where `start` is the index of
 * the "@" and `query` the characters typed after it; null when the caret is not in one.
 */
export function mentionQuery(text, caret) {
  const before = text.slice(0, caret);
  const m = /(^|[\s(])@([a-z0-9._-]{0,32})$/i.exec(before);
  if (!m) return null;
  return { start: caret - m[2].length - 1, query: m[2].toLowerCase() };
}

/** Replace the mention query at `q` in `text` by "@username "; returns {text, caret}. */
export function completeMention(text, q, caret, username) {
  const ins = "@" + username + " ";
  return { text: text.slice(0, q.start) + ins + text.slice(caret), caret: q.start + ins.length };
}

/** Users matching a mention query, best first: username prefix, display-name prefix, substring. */
export function rankUsers(users, query, limit = 8) {
  const q = query.toLowerCase();
  const score = (u) => {
    const un = (u.username || "").toLowerCase();
    const dn = (u.display_name || "").toLowerCase();
    if (un.startsWith(q)) return 0;
    if (dn.startsWith(q) || dn.split(/\s+/).some((w) => w.startsWith(q))) return 1;
    if (un.includes(q) || dn.includes(q)) return 2;
    return 9;
  };
  return users
    .map((u) => [score(u), u])
    .filter(([s]) => s < 9)
    .sort((a, b) => a[0] - b[0] || (a[1].username < b[1].username ? -1 : 1))
    .slice(0, limit)
    .map(([, u]) => u);
}

/** Fuzzy match for the quick switcher: all characters of `q` in order; lower score is better. */
export function fuzzyScore(label, q) {
  const l = label.toLowerCase();
  const t = q.toLowerCase().trim();
  if (!t) return 0;
  const idx = l.indexOf(t);
  if (idx === 0) return 0;
  if (idx > 0) return 1 + idx / 100;
  let j = 0;
  let gaps = 0;
  for (let i = 0; i < l.length && j < t.length; i++) {
    if (l[i] === t[j]) j += 1;
    else if (j > 0) gaps += 1;
  }
  return j === t.length ? 10 + gaps : null;
}

// ---------------------------------------------------------------------------------------------
// Typing indicator

/** Who is typing where; entries expire at the time the node said. */
export class TypingTracker {
  constructor() {
    this.map = new Map(); // chat id -> Map(user id -> expires_ms)
  }

  set(chatId, userId, expiresMs) {
    if (!this.map.has(chatId)) this.map.set(chatId, new Map());
    this.map.get(chatId).set(userId, expiresMs);
  }

  /** A message from `userId` ends their typing at once. */
  clear(chatId, userId) {
    const m = this.map.get(chatId);
    if (m) m.delete(userId);
  }

  /** User ids typing in `chatId` at `nowMs`, sorted, without `exceptId`. Drops expired ones. */
  active(chatId, nowMs, exceptId = null) {
    const m = this.map.get(chatId);
    if (!m) return [];
    const out = [];
    for (const [u, exp] of m) {
      if (exp <= nowMs) m.delete(u);
      else if (u !== exceptId) out.push(u);
    }
    return out.sort();
  }
}

/** "Alice is typing…", "Alice and Bob are typing…", "Alice, Bob and 2 others are typing…". */
export function typingText(names) {
  if (!names.length) return "";
  if (names.length === 1) return names[0] + " is typing…";
  if (names.length === 2) return names[0] + " and " + names[1] + " are typing…";
  if (names.length === 3) return names[0] + ", " + names[1] + " and " + names[2] + " are typing…";
  return names[0] + ", " + names[1] + " and " + (names.length - 2) + " others are typing…";
}

// ---------------------------------------------------------------------------------------------
// Reconnecting

/**
 * The live connection's state machine. States: "idle" (not started or stopped), "connecting",
 * "live", "waiting" (for the retry timer). Every method returns the action the caller must
 * take: {do: "connect"}, {do: "wait", ms}, {do: "none"}. Backoff: 0.5 s doubling to 30 s with
 * ±20 % jitter, reset once a connection became live.
 */
export class Reconnector {
  constructor(rand = Math.random) {
    this.state = "idle";
    this.attempt = 0;
    this.rand = rand;
  }

  start() {
    if (this.state !== "idle") return { do: "none" };
    this.state = "connecting";
    return { do: "connect" };
  }

  /** The server's hello arrived: the connection is usable. */
  live() {
    if (this.state === "idle") return { do: "none" };
    this.state = "live";
    this.attempt = 0;
    return { do: "none" };
  }

  /** The socket closed or failed to open. */
  closed() {
    if (this.state === "idle") return { do: "none" };
    const ms = backoffMs(this.attempt, this.rand);
    this.attempt += 1;
    this.state = "waiting";
    return { do: "wait", ms };
  }

  /** The retry timer fired. */
  timer() {
    if (this.state !== "waiting") return { do: "none" };
    this.state = "connecting";
    return { do: "connect" };
  }

  /** Retry now (a click, the network came back, the machine woke up). */
  poke() {
    if (this.state !== "waiting") return { do: "none" };
    this.state = "connecting";
    return { do: "connect" };
  }

  stop() {
    this.state = "idle";
    this.attempt = 0;
    return { do: "none" };
  }
}

/**
 * Whether the page probably slept: a timer meant to fire every `periodMs` fired after
 * `elapsedMs`. After a sleep the socket may be silently dead, so the client reconnects.
 */
export function sleptFor(elapsedMs, periodMs) {
  return elapsedMs > periodMs * 3 + 5000;
}

// ---------------------------------------------------------------------------------------------
// Search

/** The query string for GET /search from the search form's values (empty values left out). */
export function searchQueryString(f) {
  const q = new URLSearchParams();
  q.set("q", f.q || "");
  if (f.chat_id) q.set("chat_id", f.chat_id);
  if (f.author) q.set("author", f.author);
  if (f.from_ms) q.set("from_ms", String(f.from_ms));
  if (f.to_ms) q.set("to_ms", String(f.to_ms));
  if (f.has_attachment === true || f.has_attachment === false) q.set("has_attachment", String(f.has_attachment));
  if (f.order) q.set("order", f.order);
  q.set("offset", String(f.offset || 0));
  q.set("limit", String(f.limit || 20));
  return q.toString();
}

/** "2025-03-04" (a date input's value, local time) → ms at the start (or end) of that day. */
export function dateInputToMs(value, endOfDay = false) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value || "");
  if (!m) return null;
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  if (endOfDay) d.setHours(23, 59, 59, 999);
  return d.getTime();
}

/** Snippet parts as [{text, highlighted}] from the node's answer, tolerating bad input. */
export function snippetParts(snippet) {
  if (!Array.isArray(snippet)) return [];
  return snippet.filter((p) => p && typeof p.text === "string").map((p) => ({ text: p.text, highlighted: p.highlighted === true }));
}
