// Confab browser client: pure helpers (no DOM globals, no network).
//
// Message text is never parsed as HTML. `parseMessage` turns text into a small tree of plain
// objects and `renderMessage` turns that tree into DOM nodes with createElement/createTextNode
// only, so any `<`, `&` or quote in a message stays literal text.
//
// Supported markup: *bold*, _italic_, ~strike~, `code`, ```code block```, "> quotes",
// "- lists" and "1. lists", http(s) and mailto links, @mentions and :emoji: shortcodes.
// The parser is linear-ish in the input length (a failed search for a closing marker is
// remembered per line) and nests at most MAX_DEPTH levels, so a 100,000-character message
// full of markers cannot stall the page.

import { EMOJI } from "./emoji.js";

export const MAX_BODY_CHARS = 100000;
const MAX_DEPTH = 3;

// Nodes:
//   {t: "text", v}            plain text
//   {t: "b", c: [nodes]}      bold
//   {t: "i", c: [nodes]}      italic
//   {t: "code", v}            inline code
//   {t: "pre", v}             code block
//   {t: "link", v, href}      http/https link (href is the normalised URL)
//   {t: "mention", v}         "@name" (v without the @)

const WORD = /[\p{L}\p{N}]/u;
const SPACE = /\s/u;
const URL_AT = /https?:\/\/[^\s<>"]+/y;
const MENTION_AT = /@([a-z0-9][a-z0-9._-]{0,31})/y;
const MAILTO_AT = /mailto:[A-Za-z0-9.!#$%&'*+=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?:\?[^\s<>"]*)?/y;
const SHORTCODE_AT = /:([a-z0-9_+-]{1,32}):/y;

function isWord(ch) {
  return ch !== undefined && WORD.test(ch);
}

function isSpace(ch) {
  return ch !== undefined && SPACE.test(ch);
}

function lineEnd(s, i) {
  const n = s.indexOf("\n", i);
  return n === -1 ? s.length : n;
}

/** Parse message text into formatting nodes. Never throws for any string. */
export function parseMessage(text) {
  return parseBlocks(String(text ?? ""));
}

const QUOTE_LINE = /^> ?/;
const UL_LINE = /^[-*•] +(?=\S)/;
const OL_LINE = /^(\d{1,9})[.)] +(?=\S)/;

/**
 * Block level: ```code blocks``` first (anywhere), then, line by line outside them, runs of
 * "> quote" lines, "- item" / "* item" lines and "1. item" lines; everything else is inline text.
 */
function parseBlocks(s) {
  const out = [];
  let i = 0;
  let fences = true;
  while (i < s.length) {
    const start = fences ? s.indexOf("```", i) : -1;
    const end = start === -1 ? -1 : s.indexOf("```", start + 3);
    if (start === -1 || end === -1) {
      fences = false;
      parseLines(s.slice(i), out);
      break;
    }
    parseLines(s.slice(i, start), out);
    let v = s.slice(start + 3, end);
    if (v.startsWith("\n")) v = v.slice(1);
    else if (v.startsWith("\r\n")) v = v.slice(2);
    if (v.endsWith("\n")) v = v.slice(0, -1);
    out.push({ t: "pre", v });
    i = end + 3;
  }
  return out;
}

function isBlock(n) {
  return n && (n.t === "pre" || n.t === "quote" || n.t === "ul" || n.t === "ol");
}

function parseLines(s, out) {
  if (!s) return;
  const lines = s.split("\n");
  let plain = [];
  const flushPlain = (beforeBlock) => {
    if (!plain.length) return;
    let text = plain.join("\n");
    plain = [];
    // A newline that only separates text from a block is implied by the block itself.
    if (isBlock(out[out.length - 1]) && text.startsWith("\n")) text = text.slice(1);
    if (beforeBlock && text.endsWith("\n")) text = text.slice(0, -1);
    for (const n of parseInline(text, 0)) pushNode(out, n);
  };
  let k = 0;
  while (k < lines.length) {
    const line = lines[k];
    if (QUOTE_LINE.test(line) && line.startsWith(">")) {
      const q = [];
      while (k < lines.length && lines[k].startsWith(">")) q.push(lines[k++].replace(QUOTE_LINE, ""));
      flushPlain(true);
      out.push({ t: "quote", c: parseInline(q.join("\n"), 0) });
      if (k < lines.length) plain.push("");
      continue;
    }
    const ul = UL_LINE.test(line);
    const olm = OL_LINE.exec(line);
    if (ul || olm) {
      const items = [];
      const kind = ul ? "ul" : "ol";
      const re = ul ? UL_LINE : OL_LINE;
      while (k < lines.length && re.test(lines[k])) items.push(parseInline(lines[k++].replace(re, ""), 0));
      flushPlain(true);
      const node = { t: kind, items };
      if (kind === "ol") node.start = Number(olm[1]);
      out.push(node);
      if (k < lines.length) plain.push("");
      continue;
    }
    plain.push(line);
    k += 1;
  }
  flushPlain(false);
}

function pushNode(out, n) {
  if (n.t === "text") pushText(out, n.v);
  else out.push(n);
}

function parseInline(s, depth) {
  const out = [];
  let buf = "";
  const flush = () => {
    if (buf) {
      pushText(out, buf);
      buf = "";
    }
  };
  // For each marker: the position up to which we know there is no usable closer.
  const noCloser = { "*": -1, _: -1, "~": -1, "`": -1, ":": -1 };
  let i = 0;
  while (i < s.length) {
    const ch = s[i];
    const prev = i > 0 ? s[i - 1] : undefined;

    // `inline code`
    if (ch === "`" && i >= noCloser["`"]) {
      const le = lineEnd(s, i);
      const end = s.indexOf("`", i + 1);
      if (end !== -1 && end < le && end > i + 1) {
        flush();
        out.push({ t: "code", v: s.slice(i + 1, end) });
        i = end + 1;
        continue;
      }
      if (end === -1 || end >= le) noCloser["`"] = le;
    }

    // http(s) links
    if ((ch === "h" || ch === "H") && !isWord(prev)) {
      URL_AT.lastIndex = i;
      const m = URL_AT.exec(s);
      if (m) {
        const raw = trimUrl(m[0]);
        const href = safeHref(raw);
        if (href) {
          flush();
          out.push({ t: "link", v: raw, href });
          i += raw.length;
          continue;
        }
      }
    }

    // @mentions
    if (ch === "@" && !isWord(prev) && prev !== "@") {
      MENTION_AT.lastIndex = i;
      const m = MENTION_AT.exec(s);
      if (m) {
        let name = m[1];
        while (/[._-]$/.test(name)) name = name.slice(0, -1);
        const after = s[i + 1 + name.length];
        if (name && after !== "@") {
          flush();
          out.push({ t: "mention", v: name });
          i += 1 + name.length;
          continue;
        }
      }
    }

    // mailto: links
    if ((ch === "m" || ch === "M") && !isWord(prev)) {
      MAILTO_AT.lastIndex = i;
      const m = MAILTO_AT.exec(s);
      if (m) {
        const raw = trimUrl(m[0]);
        const href = safeHref(raw);
        if (href) {
          flush();
          out.push({ t: "link", v: raw, href });
          i += raw.length;
          continue;
        }
      }
    }

    // :emoji_shortcodes:
    if (ch === ":" && i >= noCloser[":"] && !isWord(prev)) {
      SHORTCODE_AT.lastIndex = i;
      const m = SHORTCODE_AT.exec(s);
      if (m && EMOJI[m[1]] && !isWord(s[i + m[0].length])) {
        flush();
        out.push({ t: "emoji", v: EMOJI[m[1]], name: m[1] });
        i += m[0].length;
        continue;
      }
    }

    // *bold*, _italic_ and ~strike~
    if ((ch === "*" || ch === "_" || ch === "~") && depth < MAX_DEPTH && i >= noCloser[ch]) {
      const next = s[i + 1];
      if (!isWord(prev) && prev !== ch && next !== undefined && !isSpace(next) && next !== ch) {
        const le = lineEnd(s, i);
        const end = findCloser(s, ch, i + 2, le);
        if (end !== -1) {
          flush();
          out.push({ t: ch === "*" ? "b" : ch === "_" ? "i" : "s", c: parseInline(s.slice(i + 1, end), depth + 1) });
          i = end + 1;
          continue;
        }
        noCloser[ch] = le;
      }
    }

    buf += ch;
    i += 1;
  }
  flush();
  return out;
}

function findCloser(s, ch, from, limit) {
  let j = s.indexOf(ch, from);
  while (j !== -1 && j < limit) {
    if (!isSpace(s[j - 1]) && !isWord(s[j + 1]) && s[j + 1] !== ch) return j;
    j = s.indexOf(ch, j + 1);
  }
  return -1;
}

function pushText(out, v) {
  const last = out[out.length - 1];
  if (last && last.t === "text") last.v += v;
  else out.push({ t: "text", v });
}

/** Drop trailing punctuation that is almost never part of a URL, and unbalanced ')'. */
export function trimUrl(raw) {
  let u = raw;
  for (;;) {
    const last = u[u.length - 1];
    if (".,;:!?'\"*_~".includes(last)) {
      u = u.slice(0, -1);
    } else if (last === ")" && count(u, "(") < count(u, ")")) {
      u = u.slice(0, -1);
    } else if (last === "]" && count(u, "[") < count(u, "]")) {
      u = u.slice(0, -1);
    } else {
      return u;
    }
  }
}

function count(s, c) {
  let n = 0;
  for (const x of s) if (x === c) n += 1;
  return n;
}

/** The URL as an href if it is a well-formed http/https URL with a host, else null. */
export function safeHref(raw) {
  if (/^mailto:[^@\s]+@[^@\s]+$/i.test(raw)) {
    try {
      const url = new URL(raw);
      return url.protocol === "mailto:" ? url.href : null;
    } catch {
      return null;
    }
  }
  if (!/^https?:\/\/[^/?#\\]/i.test(raw)) return null;
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || !url.hostname) return null;
  return url.href;
}

/**
 * Build DOM nodes for `text` into `parent`. `doc` is the Document to create nodes with
 * (passed in so the function is testable without a browser). `opts.isMe(name)` marks mentions
 * of the current user (and @channel/@here/@all) with the extra class `mention-me`.
 */
export function renderMessage(parent, text, doc, opts = {}) {
  renderNodes(parent, parseMessage(text), doc, opts);
  return parent;
}

function renderNodes(parent, nodes, doc, opts) {
  for (const n of nodes) {
    switch (n.t) {
      case "text":
        parent.appendChild(doc.createTextNode(n.v));
        break;
      case "b":
      case "i":
      case "s": {
        const el = doc.createElement(n.t === "b" ? "strong" : n.t === "i" ? "em" : "del");
        renderNodes(el, n.c, doc, opts);
        parent.appendChild(el);
        break;
      }
      case "code": {
        const el = doc.createElement("code");
        el.textContent = n.v;
        parent.appendChild(el);
        break;
      }
      case "pre": {
        const pre = doc.createElement("pre");
        const code = doc.createElement("code");
        code.textContent = n.v;
        pre.appendChild(code);
        parent.appendChild(pre);
        break;
      }
      case "link": {
        const a = doc.createElement("a");
        a.href = n.href;
        a.textContent = n.v;
        a.target = "_blank";
        a.rel = "noopener noreferrer nofollow";
        parent.appendChild(a);
        break;
      }
      case "quote": {
        const el = doc.createElement("blockquote");
        renderNodes(el, n.c, doc, opts);
        parent.appendChild(el);
        break;
      }
      case "ul":
      case "ol": {
        const el = doc.createElement(n.t);
        if (n.t === "ol" && n.start !== 1) el.start = n.start;
        for (const item of n.items) {
          const li = doc.createElement("li");
          renderNodes(li, item, doc, opts);
          el.appendChild(li);
        }
        parent.appendChild(el);
        break;
      }
      case "emoji": {
        const el = doc.createElement("span");
        el.className = "emoji";
        el.title = ":" + n.name + ":";
        el.textContent = n.v;
        parent.appendChild(el);
        break;
      }
      case "mention": {
        if (opts.known && !opts.known(n.v)) {
          // Not a user here (and not @channel/@here/@all): plain text.
          parent.appendChild(doc.createTextNode("@" + n.v));
          break;
        }
        const el = doc.createElement("span");
        el.className = opts.isMe && opts.isMe(n.v) ? "mention mention-me" : "mention";
        el.textContent = "@" + n.v;
        parent.appendChild(el);
        break;
      }
      default:
        break;
    }
  }
}

/** Plain-text rendering of formatting nodes (used for previews). */
export function plainText(text) {
  const walk = (nodes) =>
    nodes
      .map((n) => {
        if (n.c) return walk(n.c);
        if (n.items) return n.items.map(walk).join(" ");
        if (n.t === "mention") return "@" + n.v;
        return n.v;
      })
      .join("");
  return walk(parseMessage(text));
}

export const MENTION_ALL = new Set(["channel", "here", "all"]);

/** Number of Unicode scalar values (what the server's 100,000 limit counts). */
export function charCount(s) {
  let n = 0;
  for (const _ of s) n += 1;
  return n;
}

/** One-line preview of a message body, at most `max` characters. */
export function preview(body, max = 80) {
  const flat = plainText(body).replace(/\s+/gu, " ").trim();
  const chars = Array.from(flat);
  return chars.length > max ? chars.slice(0, max - 1).join("") + "…" : flat;
}

/**
 * Compare two message ids. Ids within a chat are fixed-length lowercase base32 and sort by
 * time, so a plain comparison (length first, to be safe) orders them.
 */
export function compareIds(a, b) {
  if (a === b) return 0;
  if (a == null) return -1;
  if (b == null) return 1;
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : 1;
}

/** Insert or replace `msg` (by id) in an array sorted by id; returns the same array. */
export function upsertSorted(list, msg) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareIds(list[mid].id, msg.id) < 0) lo = mid + 1;
    else hi = mid;
  }
  if (lo < list.length && list[lo].id === msg.id) list[lo] = msg;
  else list.splice(lo, 0, msg);
  return list;
}

function pad2(n) {
  return n < 10 ? "0" + n : String(n);
}

/** "14:05" in local time. */
export function timeOfDay(ms) {
  const d = new Date(ms);
  return pad2(d.getHours()) + ":" + pad2(d.getMinutes());
}

/** Local calendar day key "YYYY-MM-DD". */
export function dayKey(ms) {
  const d = new Date(ms);
  return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate());
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** "Today", "Yesterday", "3 Mar" or "3 Mar 2024" (other years). */
export function dayLabel(ms, nowMs = Date.now()) {
  const k = dayKey(ms);
  if (k === dayKey(nowMs)) return "Today";
  const y = new Date(nowMs);
  y.setDate(y.getDate() - 1);
  if (k === dayKey(y.getTime())) return "Yesterday";
  const d = new Date(ms);
  const base = d.getDate() + " " + MONTHS[d.getMonth()];
  return d.getFullYear() === new Date(nowMs).getFullYear() ? base : base + " " + d.getFullYear();
}

/** Short timestamp for the chat list: time today, else day label. */
export function shortStamp(ms, nowMs = Date.now()) {
  if (!ms) return "";
  return dayKey(ms) === dayKey(nowMs) ? timeOfDay(ms) : dayLabel(ms, nowMs);
}

/** Up to two initials for an avatar. */
export function initials(name) {
  const words = String(name || "?")
    .replace(/@.*$/u, "")
    .split(/[\s._-]+/u)
    .filter(Boolean);
  const letters = [];
  for (const w of words) {
    const ch = Array.from(w).find((c) => /[\p{L}\p{N}]/u.test(c));
    if (ch) letters.push(ch.toUpperCase());
    if (letters.length === 2) break;
  }
  return letters.join("") || "?";
}

/** A stable small integer (0..n-1) for a string, used to pick an avatar colour class. */
export function hashIndex(s, n) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) % n;
}

/** Backoff delay in ms for reconnect attempt `n` (0-based): 0.5 s doubling to 30 s, ±20 %. */
export function backoffMs(n, rand = Math.random) {
  const base = Math.min(30000, 500 * 2 ** Math.min(n, 16));
  return Math.round(base * (0.8 + 0.4 * rand()));
}

const STATE_RANK = { sent: 0, received: 1, notification_sent: 1, viewed: 2, deleted: 3 };

/**
 * Two copies of the same message (say, one from a page load and one from an event): the more
 * advanced one. Deletion beats everything, a later edit beats an earlier one, and the message
 * state only moves forward (sent → received → viewed).
 */
export function newerMessage(a, b) {
  if (!a) return b;
  if (!b) return a;
  if (!!a.deleted !== !!b.deleted) return a.deleted ? a : b;
  const base = (b.edited_ms || 0) >= (a.edited_ms || 0) ? b : a;
  const ra = STATE_RANK[a.state] ?? 0;
  const rb = STATE_RANK[b.state] ?? 0;
  const state = ra > rb ? a.state : b.state;
  return base.state === state ? base : { ...base, state };
}

/** newerMessage plus the fields it does not know about (reactions, attachments). */
export function mergeCopy(a, b) {
  const n = newerMessage(a, b);
  if (n === a && b.reactions && (b.edited_ms || 0) >= (a.edited_ms || 0)) return { ...a, reactions: b.reactions };
  return n;
}
