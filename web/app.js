// Confab browser client: UI and state. Plain ES module, no build step, no third-party code.
// Runs under a strict CSP: no inline script or style, no eval, and message text is only ever
// placed into the page as text nodes (see format.js).

import { api, ApiError, Live, newClientId, setUnauthenticatedHandler, uploadFile } from "./api.js";
import {
  MAX_BODY_CHARS,
  MENTION_ALL,
  charCount,
  compareIds,
  dayKey,
  dayLabel,
  hashIndex,
  initials,
  mergeCopy,
  newerMessage,
  preview,
  renderMessage,
  shortStamp,
  timeOfDay,
  upsertSorted,
} from "./format.js";
import {
  TypingTracker,
  completeMention,
  dateInputToMs,
  fileIcon,
  firstUnreadId,
  fitSize,
  formatBytes,
  fuzzyScore,
  isContinuation,
  isImageAttachment,
  localpart,
  mentionQuery,
  pickThumbnail,
  pushRecent,
  rankUsers,
  replyLabel,
  searchQueryString,
  shouldNotify,
  sleptFor,
  snippetParts,
  sortByActivity,
  tabTitle,
  threadReplies,
  toggleReaction,
  typingText,
  unreadTotals,
} from "./logic.js";
import { DEFAULT_RECENT, searchEmoji } from "./emoji.js";
import { b64decode, enrol, firstSightings, loadDevice, pullFromRelay, retire, setPushSubscription } from "./device.js";

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const MAX_ATTACHMENTS = 10;

// ---------------------------------------------------------------------------------------------
// State

function freshState() {
  return {
    me: null,
    device: null, // this browser as a push device of `me` (device.js), if enrolled
    users: new Map(), // user id -> User
    userFetches: new Set(),
    entries: new Map(), // chat id -> ChatListEntry
    dmMembers: new Map(), // chat id -> [user id]
    dmFetches: new Set(),
    presence: new Map(), // user id -> "online" | "away" | "offline"
    typing: new TypingTracker(),
    openId: null,
    openChat: null,
    openGen: 0,
    msgs: [], // confirmed messages of the open chat, sorted by id
    hasMore: false, // older messages exist
    hasNewer: false, // newer messages exist beyond the loaded window (after a jump)
    loadingOlder: false,
    loadingNewer: false,
    loadError: null,
    loading: false,
    dividerId: null, // first unread message when the chat was opened
    flashId: null,
    pending: [], // {client_id, chat_id, body, reply_to, attachments, status, error, via, timer, created_ms, hidden}
    editingId: null,
    replyTo: null, // message being replied to from the main composer
    threadId: null, // parent message id of the open thread
    threadMsgs: new Map(), // replies of the open thread fetched beyond the loaded window
    parents: new Map(), // message id -> Message fetched for reply quotes
    readSent: new Map(),
    drafts: new Map(),
    uploads: [], // {key, chat_id, name, size, sent, state, error, attachment, abort}
    msgCache: new Map(),
    firstOpen: true,
    wasLive: false,
    unseenNew: 0,
  };
}

let S = freshState();
S.openGen = 0;

const live = new Live({
  onStatus: setConnStatus,
  onOpen: onLiveOpen,
  onClosed: onLiveClosed,
  onLost: onLiveLost,
  onEvent: onEvent,
  onResync: onResync,
  onFrame: onFrame,
});

// ---------------------------------------------------------------------------------------------
// Small DOM helpers (no innerHTML anywhere)

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k in el && typeof v !== "string") el[k] = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

/** Make `container`'s children exactly `els`, moving as few nodes as possible. */
function reconcile(container, els) {
  let cur = container.firstChild;
  for (const el of els) {
    if (el === cur) {
      cur = cur.nextSibling;
      continue;
    }
    container.insertBefore(el, cur);
  }
  while (cur) {
    const next = cur.nextSibling;
    container.removeChild(cur);
    cur = next;
  }
}

function show(el, on) {
  el.hidden = !on;
}

let toastTimer = null;
function toast(text, kind = "info") {
  const t = $("toast");
  t.textContent = text;
  t.className = "toast " + kind;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    t.hidden = true;
  }, 5000);
}

function errorText(e) {
  if (!(e instanceof ApiError)) return String((e && e.message) || e);
  switch (e.code) {
    case "invalid_credentials":
      return "Wrong username or password.";
    case "rate_limited":
      return "Too many attempts. Try again" + (e.retryAfter ? " in " + e.retryAfter + " s." : " later.");
    case "registration_closed":
      return "Registration is closed on this node. Ask an administrator for an account.";
    case "username_taken":
      return "That username is taken.";
    case "invalid_username":
      return "Usernames are 1–32 characters of a–z, 0–9, “.”, “_” and “-”, starting with a letter or digit.";
    case "invalid_password":
      return "Passwords are 8 to 1024 characters.";
    case "user_disabled":
      return "This account is disabled.";
    case "not_a_member":
      return "You are not a member of this chat.";
    case "forbidden":
      return "You are not allowed to do that.";
    case "payload_too_large":
      return e.message || "The file is too large.";
    default:
      return e.message || e.code;
  }
}

/** A modal yes/no question. Resolves true for OK. */
function confirmDialog(title, text, okLabel = "Delete") {
  const d = $("dlg-confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    const done = (v) => {
      $("confirm-ok").removeEventListener("click", ok);
      $("confirm-cancel").removeEventListener("click", cancel);
      d.removeEventListener("close", cancel);
      if (d.open) d.close();
      resolve(v);
    };
    const ok = () => done(true);
    const cancel = () => done(false);
    $("confirm-ok").addEventListener("click", ok);
    $("confirm-cancel").addEventListener("click", cancel);
    d.addEventListener("close", cancel);
    d.showModal();
    $("confirm-cancel").focus();
  });
}

// ---------------------------------------------------------------------------------------------
// Names and presence

function userName(id) {
  const u = S.users.get(id);
  if (u) return u.display_name || u.username || localpart(id);
  fetchUser(id);
  return localpart(id);
}

function fetchUser(id) {
  if (!id || S.userFetches.has(id)) return;
  S.userFetches.add(id);
  api
    .user(id)
    .then((u) => {
      if (u && u.id) {
        S.users.set(u.id, u);
        renderAll();
      }
    })
    .catch(() => {
      /* unknown or remote user: keep showing the id */
    });
}

function isMe(id) {
  return S.me !== null && id === S.me.id;
}

function mentionsMe(m) {
  return !!(m && S.me && (m.mention_all || (Array.isArray(m.mentions) && m.mentions.includes(S.me.id))));
}

/** Whether "@name" names someone here (or everyone), so it is shown as a mention. */
function knownMention(name) {
  if (MENTION_ALL.has(name) || name === "everyone") return true;
  for (const u of S.users.values()) if (u.username === name) return true;
  return false;
}

function presenceOf(id) {
  if (isMe(id)) return "online";
  return S.presence.get(id) || "offline";
}

function presenceDot(id) {
  const st = presenceOf(id);
  return h("span", { class: "presence " + st, title: st === "online" ? "Online" : st === "away" ? "Away" : "Offline", "aria-label": st });
}

function chatTitle(chat) {
  if (!chat) return "";
  if (chat.kind === "dm") {
    const members = S.dmMembers.get(chat.id) || chat.dm_members;
    if (members) {
      const others = members.filter((u) => !isMe(u));
      if (others.length) return others.map(userName).join(", ");
      return userName(S.me.id) + " (you)";
    }
    fetchDmMembers(chat.id);
    return chat.name || "Direct message";
  }
  return chat.name;
}

function dmOthers(chat) {
  const members = S.dmMembers.get(chat.id) || chat.dm_members || [];
  return members.filter((u) => !isMe(u));
}

function fetchDmMembers(chatId) {
  if (S.dmFetches.has(chatId)) return;
  S.dmFetches.add(chatId);
  api
    .members(chatId)
    .then((ms) => {
      S.dmMembers.set(
        chatId,
        ms.map((m) => m.user_id),
      );
      renderChatList();
      if (S.openId === chatId) renderHeader();
    })
    .catch(() => S.dmFetches.delete(chatId));
}

function avatar(name, key, extra = "") {
  return h("span", { class: "avatar av" + hashIndex(key || name, 8) + (extra ? " " + extra : ""), "aria-hidden": "true", text: initials(name) });
}

function avatarWithPresence(name, userId, extra = "") {
  return h("span", { class: "avatar-wrap" }, avatar(name, userId, extra), presenceDot(userId));
}

async function loadPresence() {
  try {
    const list = await api.presence();
    for (const p of list) S.presence.set(p.user_id, p.status);
    renderChatList();
    renderMessages();
  } catch {
    /* presence is decoration */
  }
}

// ---------------------------------------------------------------------------------------------
// Auth

let authMode = "login";

function setAuthMode(mode) {
  authMode = mode;
  $("tab-login").setAttribute("aria-selected", String(mode === "login"));
  $("tab-register").setAttribute("aria-selected", String(mode === "register"));
  show($("auth-display-row"), mode === "register");
  show($("auth-hint"), mode === "register");
  $("auth-password").autocomplete = mode === "register" ? "new-password" : "current-password";
  $("auth-submit").textContent = mode === "register" ? "Create account" : "Sign in";
  $("auth-error").textContent = "";
}

function showAuth(message = "") {
  show($("boot"), false);
  show($("app"), false);
  show($("auth"), true);
  $("auth-error").textContent = message;
  $("auth-password").value = "";
  $("auth-username").focus();
  document.title = "Confab";
}

async function submitAuth(e) {
  e.preventDefault();
  const username = $("auth-username").value.trim().toLowerCase();
  const password = $("auth-password").value;
  const display = $("auth-display").value.trim();
  const err = $("auth-error");
  err.textContent = "";
  if (!username || !password) {
    err.textContent = "Enter a username and a password.";
    return;
  }
  if (authMode === "register") {
    if (!/^[a-z0-9][a-z0-9._-]{0,31}$/.test(username)) {
      err.textContent = errorText(new ApiError(400, "invalid_username"));
      return;
    }
    if (charCount(password) < 8) {
      err.textContent = errorText(new ApiError(400, "invalid_password"));
      return;
    }
  }
  const btn = $("auth-submit");
  btn.disabled = true;
  try {
    const user = authMode === "register" ? await api.register(username, password, display || undefined) : await api.login(username, password);
    $("auth-password").value = "";
    await enterApp(user);
  } catch (ex) {
    err.textContent = errorText(ex);
  } finally {
    btn.disabled = false;
  }
}

async function logout() {
  try {
    await api.logout();
  } catch {
    /* the session is gone either way */
  }
  leaveApp();
  showAuth();
}

function leaveApp() {
  live.stop();
  for (const p of S.pending) clearTimeout(p.timer);
  for (const u of S.uploads) if (u.abort) u.abort();
  const gen = S.openGen + 1;
  S = freshState();
  S.openGen = gen;
  clearTimeout(chatsTimer);
  $("chat-list").replaceChildren();
  chatItemCache.clear();
  sidebarSections.clear();
  $("msg-list").replaceChildren();
  $("upload-tray").replaceChildren();
  show($("thread"), false);
  show($("search"), false);
  document.body.classList.remove("with-thread");
  for (const d of document.querySelectorAll("dialog[open]")) d.close();
  if (location.hash) history.replaceState(null, "", location.pathname);
}

function sessionEnded() {
  if (!S.me) return;
  leaveApp();
  showAuth("Your session has ended. Please sign in again.");
}

// ---------------------------------------------------------------------------------------------
// Entering the app and loading data

async function enterApp(me) {
  S.me = me;
  S.users.set(me.id, me);
  show($("boot"), false);
  show($("auth"), false);
  show($("app"), true);
  renderMe();
  updateNotifyButton();
  await attachDevice();
  live.start();
  await Promise.all([loadUsers(), refreshChats(), loadPresence()]);
  const want = decodeURIComponent(location.hash.replace(/^#/, ""));
  if (want && S.entries.has(want)) openChat(want);
  else renderPane();
}

async function loadUsers() {
  try {
    const list = await api.users();
    for (const u of list) S.users.set(u.id, u);
    renderAll();
  } catch (e) {
    if (e.status !== 401) console.warn("loading users failed", e);
  }
}

// GET /chats, coalesced: at most one in flight, and one more if anything changed meanwhile.
let chatsInFlight = null;
let chatsDirty = false;
let chatsTimer = null;

function refreshChats() {
  if (chatsInFlight) {
    chatsDirty = true;
    return chatsInFlight;
  }
  chatsInFlight = (async () => {
    try {
      const list = await api.chats();
      if (!S.me) return;
      const next = new Map();
      for (const e of list) {
        // Keep optimistic "read" state for the open chat while our marker is on its way.
        const old = S.entries.get(e.chat.id);
        if (old && e.chat.id === S.openId && document.visibilityState === "visible" && S.readSent.has(e.chat.id) && compareIds(S.readSent.get(e.chat.id), e.last_read) > 0) {
          e.unread_count = 0;
          e.mention_count = 0;
        }
        next.set(e.chat.id, e);
        if (e.chat.dm_members) S.dmMembers.set(e.chat.id, e.chat.dm_members);
      }
      S.entries = next;
      renderChatList();
      if (S.openId && next.has(S.openId)) {
        S.openChat = next.get(S.openId).chat;
        renderHeader();
        maybeMarkRead();
      }
    } catch (e) {
      if (e.status !== 401) console.warn("loading chats failed", e);
    } finally {
      chatsInFlight = null;
      if (chatsDirty) {
        chatsDirty = false;
        scheduleRefreshChats();
      }
    }
  })();
  return chatsInFlight;
}

function scheduleRefreshChats(delay = 800) {
  clearTimeout(chatsTimer);
  chatsTimer = setTimeout(() => refreshChats(), delay);
}

// ---------------------------------------------------------------------------------------------
// Rendering: me, chat list, header

function renderAll() {
  if (!S.me) return;
  renderMe();
  renderChatList();
  renderHeader();
  renderMessages();
  renderThread();
}

function renderMe() {
  if (!S.me) return;
  const name = S.me.display_name || S.me.username;
  $("me-name").textContent = name;
  const dnd = S.me.dnd ? "🔕 Do not disturb" : "";
  $("me-status").textContent = [dnd, S.me.status_text].filter(Boolean).join(" · ") || S.me.id + (S.me.is_admin ? " · admin" : "");
  const av = $("me-avatar");
  av.className = "avatar av" + hashIndex(S.me.id, 8);
  av.textContent = initials(name);
  $("me-presence").className = "presence " + (S.me.dnd ? "dnd" : "online");
}

function renderChatList() {
  if (!S.me) return;
  const entries = sortByActivity([...S.entries.values()]);
  const channels = entries.filter((e) => e.chat.kind !== "dm");
  const dms = entries.filter((e) => e.chat.kind === "dm");
  const section = (key, title, list, emptyText) => {
    let sec = sidebarSections.get(key);
    if (!sec) {
      const body = h("div", { class: "chat-section-list" });
      sec = { el: h("section", { class: "chat-section", "aria-label": title }, h("h3", { class: "section-title", text: title }), body), body, empty: h("p", { class: "muted small pad", text: emptyText }) };
      sidebarSections.set(key, sec);
    }
    reconcile(sec.body, list.length ? list.map(chatItem) : [sec.empty]);
    return sec.el;
  };
  reconcile($("chat-list"), [section("channels", "Channels", channels, "No channels yet."), section("dms", "Direct messages", dms, "No conversations yet.")]);
  document.title = tabTitle(unreadTotals(entries));
}

const chatItemCache = new Map(); // chat id -> {sig, el}
const sidebarSections = new Map(); // "channels" | "dms" -> {el, body, empty}

/** The sidebar button for `e`, reused while nothing it shows changed (keeps focus and hover). */
function chatItem(e) {
  const c = e.chat;
  const others = c.kind === "dm" ? dmOthers(c) : [];
  const sig = JSON.stringify([
    c,
    chatTitle(c),
    c.id === S.openId,
    e.notification_level,
    e.unread_count,
    e.mention_count,
    e.last_activity_ms,
    e.last_message ? [e.last_message.id, e.last_message.body, e.last_message.deleted, userName(e.last_message.author), (e.last_message.attachments || []).length] : null,
    others.map(presenceOf),
    new Date().toDateString(),
  ]);
  const cached = chatItemCache.get(c.id);
  if (cached && cached.sig === sig) return cached.el;
  const el = buildChatItem(e);
  chatItemCache.set(c.id, { sig, el });
  return el;
}

function buildChatItem(e) {
  const c = e.chat;
  const title = chatTitle(c);
  const active = c.id === S.openId;
  const muted = e.notification_level === "mute";
  const unread = e.unread_count > 0 && !muted;
  let icon;
  if (c.kind === "dm") {
    const others = dmOthers(c);
    icon = others.length === 1 ? avatarWithPresence(title, others[0], "small") : avatar(title, c.id, "small");
  } else {
    icon = h("span", { class: "chan-icon", "aria-hidden": "true", text: c.visibility === "private" ? "🔒" : "#" });
  }
  let pv = "";
  if (e.last_message) {
    const m = e.last_message;
    const who = isMe(m.author) ? "You" : c.kind === "dm" && !isGroupDm(c) ? "" : userName(m.author);
    let text = m.deleted ? "message deleted" : preview(m.body, 70);
    if (!text && m.attachments && m.attachments.length) text = "📎 " + m.attachments.map((a) => a.name).join(", ");
    pv = who ? who + ": " + text : text;
  } else if (c.topic) {
    pv = c.topic;
  }
  const badges = h("span", { class: "badges" });
  if (e.mention_count > 0) badges.appendChild(h("span", { class: "badge mention", title: e.mention_count + (e.mention_count === 1 ? " mention" : " mentions"), text: "@" + e.mention_count }));
  if (unread) badges.appendChild(h("span", { class: "badge count", title: e.unread_count + " unread", text: e.unread_count > 99 ? "99+" : String(e.unread_count) }));
  const label = title + (c.kind === "dm" ? ", direct message" : ", channel") + (unread ? ", " + e.unread_count + " unread" : "") + (e.mention_count ? ", " + e.mention_count + " mentions" : "");
  return h(
    "button",
    {
      type: "button",
      class: "chat-item" + (active ? " active" : "") + (unread ? " unread" : "") + (muted ? " muted-chat" : ""),
      "aria-current": active ? "page" : null,
      "aria-label": label,
      dataset: { chatId: c.id },
      onclick: () => openChat(c.id),
    },
    icon,
    h(
      "span",
      { class: "chat-item-main" },
      h("span", { class: "chat-item-top" }, h("span", { class: "chat-item-name", text: title }), muted ? h("span", { class: "muted small", "aria-hidden": "true", text: "🔕" }) : null, h("span", { class: "chat-item-time muted", text: shortStamp(e.last_activity_ms) })),
      h("span", { class: "chat-item-bottom" }, h("span", { class: "chat-item-preview muted", text: pv }), badges),
    ),
  );
}

function isGroupDm(chat) {
  const m = S.dmMembers.get(chat.id) || chat.dm_members;
  return m ? m.length > 2 : (chat.member_count || 0) > 2;
}

function renderPane() {
  const open = S.openId !== null;
  const searching = !$("search").hidden;
  show($("empty"), !open && !searching);
  show($("chat"), open && !searching);
  document.body.classList.toggle("show-chat", open || searching);
}

function renderHeader() {
  const c = S.openChat;
  if (!c) return;
  const dm = c.kind === "dm";
  $("chat-name").textContent = dm ? chatTitle(c) : (c.visibility === "private" ? "🔒 " : "# ") + c.name;
  let sub = c.topic || "";
  if (dm) {
    const others = dmOthers(c);
    if (others.length === 1) {
      const u = S.users.get(others[0]);
      const st = presenceOf(others[0]);
      sub = (st === "online" ? "● Online" : st === "away" ? "◐ Away" : "○ Offline") + (u && u.status_text ? " · " + u.status_text : "");
    }
  }
  $("chat-topic").textContent = sub;
  $("chat-members").textContent = !dm && c.member_count ? c.member_count + (c.member_count === 1 ? " member" : " members") : "";
  const joined = c.joined !== false;
  const entry = S.entries.get(c.id);
  show($("btn-topic"), !dm && joined);
  show($("btn-leave"), !dm && joined);
  show($("join-bar"), !joined);
  show($("composer"), joined);
  show($("composer-hint"), joined);
  const sel = $("notify-level");
  show(sel.parentElement, joined && !!entry);
  if (entry) sel.value = entry.notification_level || (dm ? "all" : "mentions");
  $("join-text").textContent = joined ? "" : "You are previewing #" + c.name + ".";
  $("input").placeholder = dm ? "Message " + chatTitle(c) : "Message #" + c.name;
}

// ---------------------------------------------------------------------------------------------
// Rendering messages

function messagesAtBottom() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 60;
}

function scrollToBottom() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function canDelete(m) {
  if (!S.me || m.deleted) return false;
  if (isMe(m.author) || S.me.is_admin) return true;
  const role = S.openChat && S.openChat.my_role;
  return !!S.openChat && S.openChat.kind === "channel" && (role === "owner" || role === "admin");
}

function findMessage(id) {
  return S.msgs.find((x) => x.id === id) || S.parents.get(id) || (S.threadMsgs && S.threadMsgs.get(id)) || null;
}

function fetchParent(chatId, id) {
  if (S.parents.has(id)) return;
  S.parents.set(id, null);
  api
    .message(chatId, id)
    .then((m) => {
      S.parents.set(id, m);
      renderMessages();
      renderThread();
    })
    .catch(() => {
      /* deleted or not visible: the quote says so */
    });
}

function myReactionsSig(m) {
  return JSON.stringify(m.reactions || []);
}

function renderMessages({ stick = null } = {}) {
  if (!S.openId || !S.me) return;
  const box = $("messages");
  const atBottom = stick === null ? messagesAtBottom() : stick;
  const els = [];
  const keep = new Map();
  let prev = null;
  let lastDay = null;
  const replies = threadReplies(S.msgs);
  const addDay = (ms) => {
    const k = dayKey(ms);
    if (k === lastDay) return;
    lastDay = k;
    const label = dayLabel(ms);
    const key = "day:" + k;
    let c = S.msgCache.get(key);
    if (!c || c.sig !== label) {
      c = { sig: label, el: h("div", { class: "day-sep", role: "separator", "aria-label": label }, h("span", { text: label })) };
    }
    keep.set(key, c);
    els.push(c.el);
    prev = null;
  };
  for (const m of S.msgs) {
    addDay(m.created_ms);
    if (S.dividerId === m.id) {
      let c = S.msgCache.get("divider");
      if (!c) c = { sig: "", el: h("div", { class: "unread-divider", role: "separator", "aria-label": "New messages" }, h("span", { text: "New messages" })) };
      keep.set("divider", c);
      els.push(c.el);
      prev = null;
    }
    const cont = isContinuation(prev, m);
    const editing = S.editingId === m.id;
    const parent = m.reply_to ? findMessage(m.reply_to) : null;
    if (m.reply_to && !parent) fetchParent(m.chat_id, m.reply_to);
    const nReplies = (replies.get(m.id) || []).length;
    const sig = JSON.stringify([
      m.body,
      m.edited_ms,
      m.deleted,
      m.state,
      cont,
      editing,
      userName(m.author),
      presenceOf(m.author),
      canDelete(m),
      mentionsMe(m),
      S.me.username,
      myReactionsSig(m),
      m.attachments ? m.attachments.length : 0,
      parent ? [parent.body, parent.deleted, userName(parent.author)] : null,
      nReplies,
      S.flashId === m.id,
    ]);
    let c = S.msgCache.get(m.id);
    if (!c || c.sig !== sig) c = { sig, el: messageEl(m, { cont, editing, parent, nReplies }) };
    keep.set(m.id, c);
    els.push(c.el);
    prev = m;
  }
  if (!S.hasNewer) {
    for (const p of S.pending) {
      if (p.chat_id !== S.openId || p.hidden) continue;
      addDay(p.created_ms);
      const sig = JSON.stringify([p.status, p.error, p.body, (p.attachments || []).length]);
      const key = "p:" + p.client_id;
      let c = S.msgCache.get(key);
      if (!c || c.sig !== sig) c = { sig, el: pendingEl(p) };
      keep.set(key, c);
      els.push(c.el);
    }
  }
  S.msgCache = keep;
  reconcile($("msg-list"), els);
  show($("btn-older"), S.hasMore);
  show($("btn-newer"), S.hasNewer);
  const status = $("msg-status");
  if (S.loadError) {
    status.textContent = S.loadError;
    show(status, true);
  } else if (!S.msgs.length && !S.pending.some((p) => p.chat_id === S.openId)) {
    status.textContent = S.loading ? "Loading…" : "No messages yet. Say hello! 👋";
    show(status, true);
  } else {
    show(status, false);
  }
  if (atBottom && !S.hasNewer) {
    box.scrollTop = box.scrollHeight;
    S.unseenNew = 0;
  }
  updatePill();
}

function updatePill() {
  const pill = $("new-pill");
  const show_ = S.openId !== null && (S.unseenNew > 0 || (S.hasNewer && S.unseenNew > 0));
  pill.hidden = !show_;
  if (show_) pill.textContent = S.unseenNew > 1 ? S.unseenNew + " new messages ↓" : "New messages ↓";
}

function attachmentsEl(m) {
  const list = m.attachments || [];
  if (!list.length) return null;
  return h(
    "div",
    { class: "attachments" },
    list.map((a) => {
      if (isImageAttachment(a)) {
        const t = pickThumbnail(a, 400) || a.thumbnails[0];
        const size = fitSize(t.width, t.height, 360, 260);
        return h(
          "figure",
          { class: "att-image" },
          h(
            "button",
            { type: "button", class: "att-open", "aria-label": "Open image " + a.name, onclick: () => openLightbox(a) },
            h("img", { src: "/api/v1/media/" + encodeURIComponent(t.id), alt: a.name, width: size.width, height: size.height, loading: "lazy", decoding: "async" }),
          ),
          h("figcaption", { class: "att-caption muted small" }, h("span", { class: "att-name", text: a.name }), " · " + formatBytes(a.size_bytes)),
        );
      }
      return h(
        "a",
        { class: "att-file", href: "/api/v1/media/" + encodeURIComponent(a.id), download: a.name, title: "Download " + a.name },
        h("span", { class: "att-icon", "aria-hidden": "true", text: fileIcon(a.mime) }),
        h("span", { class: "att-meta" }, h("span", { class: "att-name", text: a.name }), h("span", { class: "att-size muted small", text: (a.mime || "file") + " · " + formatBytes(a.size_bytes) })),
      );
    }),
  );
}

function reactionsEl(m) {
  const list = m.reactions || [];
  if (!list.length || m.deleted) return null;
  return h(
    "div",
    { class: "reactions", role: "group", "aria-label": "Reactions" },
    list.map((r) => {
      const mine = S.me && (r.users || []).includes(S.me.id);
      const who = (r.users || []).map(userName).join(", ");
      return h(
        "button",
        {
          type: "button",
          class: "reaction" + (mine ? " mine" : ""),
          dataset: { emoji: r.emoji },
          title: who + " reacted with " + r.emoji,
          "aria-label": r.emoji + " " + r.count + (mine ? ", including you" : "") + ". Toggle your reaction",
          "aria-pressed": mine ? "true" : "false",
          onclick: () => toggleMyReaction(m, r.emoji),
        },
        h("span", { class: "emoji-char", text: r.emoji.length > 8 ? ":" + r.emoji + ":" : r.emoji }),
        h("span", { class: "count", text: String(r.count) }),
      );
    }),
    h("button", { type: "button", class: "reaction reaction-add", title: "Add a reaction", "aria-label": "Add a reaction", onclick: (e) => openPicker(m, e.currentTarget), text: "☺+" }),
  );
}

function replyQuote(m, parent) {
  if (!m.reply_to) return null;
  let text;
  let who = "";
  if (!parent) text = "a message";
  else if (parent.deleted) text = "a deleted message";
  else {
    who = userName(parent.author);
    text = preview(parent.body, 90) || (parent.attachments && parent.attachments.length ? "📎 " + parent.attachments[0].name : "");
  }
  return h(
    "button",
    { type: "button", class: "reply-quote", title: "Open the thread", onclick: () => openThread(m.reply_to) },
    h("span", { class: "reply-arrow", "aria-hidden": "true", text: "↪" }),
    who ? h("b", { text: who }) : null,
    h("span", { class: "muted", text: (who ? " " : "") + text }),
  );
}

function messageEl(m, { cont, editing, parent, nReplies, inThread = false }) {
  const own = isMe(m.author);
  const name = userName(m.author);
  const cls = ["msg"];
  if (cont) cls.push("cont");
  if (own) cls.push("own");
  if (m.deleted) cls.push("deleted");
  if (!own && mentionsMe(m)) cls.push("mentions-me");
  if (S.flashId === m.id && !inThread) cls.push("flash");
  const time = h("time", {
    class: "msg-time muted",
    datetime: new Date(m.created_ms).toISOString(),
    title: new Date(m.created_ms).toLocaleString(),
    text: timeOfDay(m.created_ms),
  });
  const u = S.users.get(m.author);
  const head = cont
    ? null
    : h("div", { class: "msg-head" }, h("span", { class: "msg-author", title: m.author + (u && u.status_text ? " · " + u.status_text : ""), text: name }), time);
  let body;
  if (m.deleted) {
    body = h("div", { class: "msg-body muted", text: "This message was deleted." });
  } else if (editing) {
    body = editBox(m);
  } else {
    body = h("div", { class: "msg-body" });
    renderMessage(body, m.body, document, { isMe: (n) => (S.me && n === S.me.username) || MENTION_ALL.has(n), known: knownMention });
    if (m.edited_ms) body.appendChild(h("span", { class: "edited muted", title: "Edited " + new Date(m.edited_ms).toLocaleString(), text: " (edited)" }));
    if (own) body.appendChild(stateEl(m.state));
  }
  const tools =
    !m.deleted && !editing
      ? h(
          "div",
          { class: "msg-tools", role: "toolbar", "aria-label": "Message actions" },
          h("button", { type: "button", class: "tool", dataset: { act: "react" }, title: "Add reaction", "aria-label": "Add reaction", onclick: (e) => openPicker(m, e.currentTarget), text: "☺" }),
          inThread ? null : h("button", { type: "button", class: "tool", dataset: { act: "reply" }, title: "Reply with a quote", "aria-label": "Reply with a quote", onclick: () => startReply(m), text: "↩ Reply" }),
          inThread ? null : h("button", { type: "button", class: "tool", dataset: { act: "thread" }, title: "Open the thread", "aria-label": "Reply in thread", onclick: () => openThread(m.id), text: "💬" }),
          own ? h("button", { type: "button", class: "tool", dataset: { act: "edit" }, title: "Edit", "aria-label": "Edit message", onclick: () => startEdit(m.id), text: "Edit" }) : null,
          canDelete(m) ? h("button", { type: "button", class: "tool danger", dataset: { act: "delete" }, title: "Delete", "aria-label": "Delete message", onclick: () => deleteMsg(m), text: "Delete" }) : null,
        )
      : null;
  const threadLink =
    nReplies > 0 && !inThread
      ? h("button", { type: "button", class: "thread-link", onclick: () => openThread(m.id), text: "💬 " + replyLabel(nReplies) })
      : null;
  return h(
    "div",
    { class: cls.join(" "), dataset: { id: m.id, author: m.author }, tabindex: "-1", "aria-label": cont ? null : name + " at " + timeOfDay(m.created_ms) },
    h("div", { class: "msg-gutter" }, cont ? h("span", { class: "gutter-time muted", text: timeOfDay(m.created_ms) }) : avatarWithPresence(name, m.author)),
    h("div", { class: "msg-main" }, inThread ? null : replyQuote(m, parent), head, body, m.deleted ? null : attachmentsEl(m), reactionsEl(m), threadLink),
    tools,
  );
}

function stateEl(state) {
  const label = state === "viewed" ? "Seen" : state === "received" ? "Delivered" : "Sent";
  return h("span", { class: "msg-state state-" + state, title: label, "aria-label": label, text: state === "sent" ? "✓" : "✓✓" });
}

function pendingEl(p) {
  const failed = p.status === "failed";
  const body = h("div", { class: "msg-body" });
  renderMessage(body, p.body, document, {});
  const n = (p.attachments || []).length;
  return h(
    "div",
    { class: "msg own pending" + (failed ? " failed" : ""), dataset: { status: p.status } },
    h("div", { class: "msg-gutter" }),
    h(
      "div",
      { class: "msg-main" },
      body,
      n ? h("div", { class: "muted small", text: "📎 " + n + (n === 1 ? " file" : " files") }) : null,
      failed
        ? h(
            "div",
            { class: "msg-error", role: "alert" },
            h("span", { text: "Not sent" + (p.error ? ": " + p.error : ".") + " " }),
            h("button", { type: "button", class: "link small", onclick: () => retrySend(p), text: "Retry" }),
            " ",
            h("button", { type: "button", class: "link small", onclick: () => discardSend(p), text: "Discard" }),
          )
        : h("span", { class: "msg-state muted", text: p.status === "queued" ? "waiting for connection…" : "sending…" }),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Opening a chat, history, read markers

async function openChat(id, { around = null } = {}) {
  const switching = S.openId !== id;
  if (S.openId && switching) saveDraft();
  const entry = S.entries.get(id);
  S.openGen += 1;
  const gen = S.openGen;
  S.openId = id;
  S.openChat = entry ? entry.chat : null;
  S.msgs = [];
  S.hasMore = false;
  S.hasNewer = false;
  S.loadError = null;
  S.loading = true;
  S.editingId = null;
  S.dividerId = null;
  S.unseenNew = 0;
  S.flashId = around;
  S.msgCache = new Map();
  const chatEl = $("chat");
  chatEl.dataset.chatId = id;
  chatEl.dataset.loaded = "";
  show($("search"), false);
  history.replaceState(null, "", "#" + encodeURIComponent(id));
  if (switching) {
    const d = S.drafts.get(id);
    $("input").value = d ? d.text : "";
    S.replyTo = d ? d.replyTo : null;
    renderReplyBar();
    updateCharCount();
    closeThread();
    hideMentions();
  }
  renderUploads();
  renderTyping();
  renderPane();
  renderChatList();
  if (!S.openChat) {
    $("chat-name").textContent = "Loading…";
    $("chat-topic").textContent = "";
    try {
      S.openChat = await api.chat(id);
    } catch (e) {
      if (gen !== S.openGen) return;
      S.openChat = { id, kind: "channel", name: id, joined: false };
      S.loadError = errorText(e);
    }
    if (gen !== S.openGen) return;
  }
  renderHeader();
  renderMessages({ stick: true });
  if (S.openChat.joined !== false && window.matchMedia("(min-width: 760px)").matches && !around) $("input").focus();
  const lastRead = entry ? entry.last_read : null;
  const unread = entry ? entry.unread_count || 0 : 0;
  try {
    if (around) {
      const [before, target, after] = await Promise.all([
        api.messages(id, { before: around, limit: 25 }),
        api.message(id, around),
        api.messages(id, { after: around, limit: 25 }),
      ]);
      if (gen !== S.openGen) return;
      mergeMessages(before.messages.concat([target], after.messages));
      S.hasMore = !!before.has_more;
      S.hasNewer = !!after.has_more;
    } else {
      const r = await api.messages(id, { limit: PAGE });
      if (gen !== S.openGen) return;
      let msgs = r.messages;
      S.hasMore = !!r.has_more;
      if (unread > 0 && lastRead && S.hasMore && msgs.length && compareIds(msgs[0].id, lastRead) > 0) {
        // The first unread message is older than the newest page: open at it instead.
        const after = await api.messages(id, { after: lastRead, limit: PAGE });
        const first = after.messages.length ? after.messages[0].id : null;
        const before = first ? await api.messages(id, { before: first, limit: 10 }) : { messages: [], has_more: false };
        if (gen !== S.openGen) return;
        msgs = before.messages.concat(after.messages);
        S.hasMore = !!before.has_more;
        S.hasNewer = !!after.has_more;
      }
      mergeMessages(msgs);
      if (unread > 0) S.dividerId = firstUnreadId(S.msgs, lastRead, S.me.id);
    }
    S.loadError = null;
  } catch (e) {
    if (gen !== S.openGen) return;
    S.loadError = e.code === "not_a_member" || e.code === "forbidden" ? "Join this channel to see its messages." : "Could not load messages: " + errorText(e);
  }
  S.loading = false;
  renderMessages({ stick: !around && !S.dividerId });
  if (around) scrollToMessage(around);
  else if (S.dividerId) scrollToDivider();
  chatEl.dataset.loaded = "1";
  maybeMarkRead();
  if (around) {
    setTimeout(() => {
      if (S.flashId === around) {
        S.flashId = null;
        renderMessages();
      }
    }, 6000);
  }
}

function scrollToDivider() {
  const d = document.querySelector("#msg-list .unread-divider");
  const box = $("messages");
  if (!d) return scrollToBottom();
  const top = box.scrollTop + d.getBoundingClientRect().top - box.getBoundingClientRect().top - 40;
  box.scrollTop = Math.min(Math.max(0, top), box.scrollHeight);
  if (messagesAtBottom()) S.unseenNew = 0;
}

function scrollToMessage(id) {
  const el = document.querySelector('#msg-list .msg[data-id="' + CSS.escape(id) + '"]');
  if (el) el.scrollIntoView({ block: "center" });
}

function closeChat() {
  S.openGen += 1;
  S.openId = null;
  S.openChat = null;
  S.msgs = [];
  S.msgCache = new Map();
  $("msg-list").replaceChildren();
  $("chat").dataset.chatId = "";
  closeThread();
  if (location.hash) history.replaceState(null, "", location.pathname);
  renderPane();
  renderChatList();
}

function mergeMessages(list) {
  for (const m of list) {
    if (!m || !m.id) continue;
    const i = S.msgs.findIndex((x) => x.id === m.id);
    if (i === -1) upsertSorted(S.msgs, m);
    else S.msgs[i] = mergeCopy(S.msgs[i], m);
  }
}

async function loadOlder() {
  if (!S.openId || !S.hasMore || S.loadingOlder || !S.msgs.length) return;
  S.loadingOlder = true;
  const gen = S.openGen;
  const box = $("messages");
  try {
    const r = await api.messages(S.openId, { before: S.msgs[0].id, limit: PAGE });
    if (gen !== S.openGen) return;
    // Keep the first visible message where it is on screen (its header may disappear when it
    // joins a group with the older messages, so anchoring to the bottom is not enough).
    const boxTop = box.getBoundingClientRect().top;
    let anchor = null;
    for (const el of document.querySelectorAll("#msg-list .msg[data-id]")) {
      if (el.getBoundingClientRect().bottom > boxTop) {
        anchor = { id: el.dataset.id, top: el.getBoundingClientRect().top };
        break;
      }
    }
    const fromBottom = box.scrollHeight - box.scrollTop;
    mergeMessages(r.messages);
    S.hasMore = !!r.has_more;
    renderMessages({ stick: false });
    const el = anchor ? document.querySelector('#msg-list .msg[data-id="' + CSS.escape(anchor.id) + '"]') : null;
    if (el) box.scrollTop += el.getBoundingClientRect().top - anchor.top;
    else box.scrollTop = box.scrollHeight - fromBottom;
  } catch (e) {
    toast("Could not load earlier messages: " + errorText(e), "error");
  } finally {
    S.loadingOlder = false;
  }
}

async function loadNewer() {
  if (!S.openId || !S.hasNewer || S.loadingNewer || !S.msgs.length) return;
  S.loadingNewer = true;
  const gen = S.openGen;
  try {
    const r = await api.messages(S.openId, { after: S.msgs[S.msgs.length - 1].id, limit: PAGE });
    if (gen !== S.openGen) return;
    mergeMessages(r.messages);
    S.hasNewer = !!r.has_more;
    if (!S.hasNewer) S.unseenNew = 0;
    renderMessages({ stick: false });
    maybeMarkRead();
  } catch (e) {
    toast("Could not load newer messages: " + errorText(e), "error");
  } finally {
    S.loadingNewer = false;
  }
}

function onMessagesScroll() {
  const box = $("messages");
  if (box.scrollTop < 40) loadOlder();
  if (box.scrollHeight - box.scrollTop - box.clientHeight < 200) loadNewer();
  if (messagesAtBottom() && !S.hasNewer && S.unseenNew) {
    S.unseenNew = 0;
    updatePill();
  }
}

/** Keyboard: ↑/↓ in the message log move between messages (their tools show on focus). */
function messagesKeydown(e) {
  if (e.key !== "ArrowUp" && e.key !== "ArrowDown") return;
  const t = e.target;
  if (!(t === $("messages") || (t.classList && t.classList.contains("msg")))) return;
  const all = Array.from(document.querySelectorAll("#msg-list .msg[data-id]"));
  if (!all.length) return;
  e.preventDefault();
  let i = all.indexOf(t);
  if (i === -1) i = e.key === "ArrowUp" ? all.length : -1;
  const next = all[Math.max(0, Math.min(all.length - 1, i + (e.key === "ArrowUp" ? -1 : 1)))];
  next.focus();
}

function pillClicked() {
  if (S.hasNewer) {
    openChat(S.openId);
    return;
  }
  S.unseenNew = 0;
  scrollToBottom();
  updatePill();
}

function newestConfirmed() {
  if (S.hasNewer) return null;
  return S.msgs.length ? S.msgs[S.msgs.length - 1].id : null;
}

async function maybeMarkRead() {
  const id = S.openId;
  if (!id || document.visibilityState !== "visible" || !$("search").hidden) return;
  const entry = S.entries.get(id);
  if (!entry) return;
  const newest = newestConfirmed();
  if (!newest) return;
  if (compareIds(newest, entry.last_read) <= 0 && !entry.unread_count && !entry.mention_count) return;
  const sent = S.readSent.get(id);
  if (sent && compareIds(newest, sent) <= 0 && !entry.unread_count) return;
  S.readSent.set(id, newest);
  entry.unread_count = 0;
  entry.mention_count = 0;
  if (compareIds(newest, entry.last_read) > 0) entry.last_read = newest;
  renderChatList();
  if (sent && compareIds(newest, sent) <= 0) return;
  try {
    const e = await api.markRead(id, newest);
    if (e && e.chat && S.entries.has(e.chat.id)) {
      S.entries.set(e.chat.id, e);
      renderChatList();
    }
  } catch (err) {
    S.readSent.delete(id);
    if (err.status !== 401) console.warn("marking read failed", err);
  }
}

// ---------------------------------------------------------------------------------------------
// Sending, editing, deleting, replying

function saveDraft() {
  if (!S.openId) return;
  const text = $("input").value;
  if (text || S.replyTo) S.drafts.set(S.openId, { text, replyTo: S.replyTo });
  else S.drafts.delete(S.openId);
}

function readyUploads(chatId) {
  return S.uploads.filter((u) => u.chat_id === chatId && u.state === "done");
}

function sendFromComposer() {
  const input = $("input");
  const body = input.value.replace(/\s+$/u, "");
  if (!S.openId) return;
  const chatUploads = S.uploads.filter((u) => u.chat_id === S.openId);
  if (chatUploads.some((u) => u.state === "uploading")) {
    toast("Wait for the uploads to finish, then send.");
    return;
  }
  const files = readyUploads(S.openId).slice(0, MAX_ATTACHMENTS);
  if (!body.trim() && !files.length) return;
  const n = charCount(body);
  if (n > MAX_BODY_CHARS) {
    toast("Message is " + n.toLocaleString() + " characters; the limit is " + MAX_BODY_CHARS.toLocaleString() + ".", "error");
    return;
  }
  const attachments = files.map((u) => ({ id: u.attachment.id, name: u.attachment.name || u.name }));
  S.uploads = S.uploads.filter((u) => !files.includes(u));
  renderUploads();
  input.value = "";
  S.drafts.delete(S.openId);
  updateCharCount();
  hideMentions();
  const replyTo = S.replyTo ? S.replyTo.id : null;
  S.replyTo = null;
  renderReplyBar();
  queueSend(S.openId, body, replyTo, attachments);
}

function queueSend(chatId, body, replyTo, attachments) {
  const p = { client_id: newClientId(), chat_id: chatId, body, reply_to: replyTo, attachments, status: "sending", error: null, via: null, timer: null, created_ms: Date.now(), hidden: false };
  S.pending.push(p);
  if (S.hasNewer && S.openId === chatId) openChat(chatId);
  renderMessages({ stick: true });
  renderThread();
  dispatchSend(p);
}

function dispatchSend(p) {
  p.status = "sending";
  p.error = null;
  const frame = { type: "send", client_id: p.client_id, chat_id: p.chat_id, body: p.body, reply_to: p.reply_to };
  if (p.attachments && p.attachments.length) frame.attachments = p.attachments;
  if (live.send(frame)) {
    p.via = "ws";
    clearTimeout(p.timer);
    // No ack in time: retry over HTTP with the same client_id (idempotent on the node).
    p.timer = setTimeout(() => sendViaHttp(p), 15000);
  } else {
    sendViaHttp(p);
  }
}

async function sendViaHttp(p) {
  clearTimeout(p.timer);
  p.via = "http";
  try {
    const m = await api.postMessage(p.chat_id, p.body, p.client_id, p.reply_to, p.attachments);
    confirmSend(p.client_id, m);
  } catch (e) {
    if (!S.pending.includes(p)) return;
    if (e.status === 0 || e.status === 502 || e.status === 503) {
      // Offline: keep it and send it when the connection is back.
      p.status = "queued";
      p.error = null;
    } else {
      p.status = "failed";
      p.error = errorText(e);
    }
    p.hidden = false;
    renderMessages();
    renderThread();
  }
}

function flushQueued() {
  for (const p of S.pending) if (p.status === "queued") dispatchSend(p);
}

function confirmSend(clientId, m) {
  const i = S.pending.findIndex((p) => p.client_id === clientId);
  if (i !== -1) {
    clearTimeout(S.pending[i].timer);
    S.pending.splice(i, 1);
  }
  if (m && m.id) applyMessage(m, { fromMe: true });
  else renderMessages();
  renderThread();
}

function retrySend(p) {
  p.hidden = false;
  dispatchSend(p);
  renderMessages();
}

function discardSend(p) {
  clearTimeout(p.timer);
  S.pending = S.pending.filter((x) => x !== p);
  renderMessages();
  renderThread();
}

function startEdit(id) {
  S.editingId = id;
  renderMessages({ stick: false });
  const ta = document.querySelector(".msg .edit-box textarea");
  if (ta) {
    ta.focus();
    ta.setSelectionRange(ta.value.length, ta.value.length);
  }
}

function cancelEdit() {
  S.editingId = null;
  renderMessages({ stick: false });
  $("input").focus();
}

function editBox(m) {
  const ta = h("textarea", { class: "edit-input", rows: 2, "aria-label": "Edit message" });
  ta.value = m.body;
  const save = async () => {
    const body = ta.value.replace(/\s+$/u, "");
    if (!body.trim() || body === m.body) {
      cancelEdit();
      return;
    }
    if (charCount(body) > MAX_BODY_CHARS) {
      toast("Message is too long; the limit is " + MAX_BODY_CHARS.toLocaleString() + " characters.", "error");
      return;
    }
    ta.disabled = true;
    try {
      const updated = await api.editMessage(m.chat_id, m.id, body);
      S.editingId = null;
      applyMessage(updated, {});
      $("input").focus();
    } catch (e) {
      ta.disabled = false;
      toast("Could not edit: " + errorText(e), "error");
    }
  };
  ta.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      save();
    } else if (e.key === "Escape") {
      e.preventDefault();
      cancelEdit();
    }
  });
  return h(
    "div",
    { class: "edit-box" },
    ta,
    h(
      "div",
      { class: "edit-buttons small" },
      h("span", { class: "muted", text: "Enter to save · Esc to cancel " }),
      h("button", { type: "button", class: "ghost small", onclick: cancelEdit, text: "Cancel" }),
      h("button", { type: "button", class: "primary small", onclick: save, text: "Save" }),
    ),
  );
}

async function deleteMsg(m) {
  const ok = await confirmDialog("Delete message?", "This message will be deleted for everyone. This cannot be undone.", "Delete");
  if (!ok) return;
  try {
    const updated = await api.deleteMessage(m.chat_id, m.id);
    applyMessage(updated, {});
  } catch (e) {
    toast("Could not delete: " + errorText(e), "error");
  }
}

function editLastOwn() {
  for (let i = S.msgs.length - 1; i >= 0; i--) {
    const m = S.msgs[i];
    if (isMe(m.author) && !m.deleted) {
      startEdit(m.id);
      return true;
    }
  }
  return false;
}

function startReply(m) {
  S.replyTo = m;
  renderReplyBar();
  $("input").focus();
}

function renderReplyBar() {
  const m = S.replyTo;
  show($("reply-bar"), !!m);
  if (!m) return;
  $("reply-to-name").textContent = userName(m.author);
  $("reply-to-text").textContent = preview(m.body, 80);
}

// ---------------------------------------------------------------------------------------------
// Threads

function openThread(id) {
  S.threadId = id;
  S.threadMsgs = new Map();
  const parent = findMessage(id);
  if (!parent && S.openId) fetchParent(S.openId, id);
  show($("thread"), true);
  document.body.classList.add("with-thread");
  renderThread();
  $("thread-input").focus();
  loadThreadReplies(S.openId, id);
}

/**
 * Replies can be anywhere after their parent, also outside the loaded window: page through
 * the history after the parent (at most 5 pages of 200) and keep the replies.
 */
async function loadThreadReplies(chatId, id) {
  let after = id;
  for (let page = 0; page < 5; page++) {
    let r;
    try {
      r = await api.messages(chatId, { after, limit: 200 });
    } catch {
      return;
    }
    if (S.threadId !== id || S.openId !== chatId) return;
    for (const m of r.messages) if (m.reply_to === id) S.threadMsgs.set(m.id, m);
    renderThread();
    if (!r.has_more || !r.messages.length) return;
    after = r.messages[r.messages.length - 1].id;
  }
}

function closeThread() {
  S.threadId = null;
  show($("thread"), false);
  document.body.classList.remove("with-thread");
}

function renderThread() {
  if (!S.threadId || !S.openId) return;
  const parent = findMessage(S.threadId);
  const byId = new Map(S.threadMsgs || []);
  for (const m of S.msgs) if (m.reply_to === S.threadId) byId.set(m.id, m);
  const replies = [...byId.values()].filter((m) => !m.deleted).sort((a, b) => compareIds(a.id, b.id));
  const els = [];
  if (parent) els.push(messageEl(parent, { cont: false, editing: false, parent: null, nReplies: 0, inThread: true }));
  else els.push(h("p", { class: "muted small pad", text: "Loading…" }));
  els.push(h("div", { class: "thread-count muted small", text: replyLabel(replies.length) }));
  let prev = null;
  for (const m of replies) {
    els.push(messageEl(m, { cont: isContinuation(prev, { ...m, reply_to: null }), editing: false, parent: null, nReplies: 0, inThread: true }));
    prev = m;
  }
  for (const p of S.pending) if (p.chat_id === S.openId && p.reply_to === S.threadId && !p.hidden) els.push(pendingEl(p));
  $("thread-list").replaceChildren(...els);
  const box = $("thread-list");
  box.scrollTop = box.scrollHeight;
}

function sendFromThread(e) {
  if (e) e.preventDefault();
  const ta = $("thread-input");
  const body = ta.value.replace(/\s+$/u, "");
  if (!body.trim() || !S.threadId || !S.openId) return;
  ta.value = "";
  queueSend(S.openId, body, S.threadId, []);
}

// ---------------------------------------------------------------------------------------------
// Reactions

let pickerFor = null;

function recentEmoji() {
  try {
    const v = JSON.parse(localStorage.getItem("confab.recentEmoji") || "null");
    if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v;
  } catch {
    /* ignore */
  }
  return DEFAULT_RECENT;
}

function rememberEmoji(e) {
  try {
    localStorage.setItem("confab.recentEmoji", JSON.stringify(pushRecent(recentEmoji(), e)));
  } catch {
    /* private mode */
  }
}

function openPicker(m) {
  pickerFor = m;
  $("emoji-search").value = "";
  renderPicker();
  $("emoji-picker").showModal();
  $("emoji-search").focus();
}

function emojiButton(e, name) {
  return h("button", { type: "button", class: "emoji-btn", dataset: { emoji: e }, title: ":" + name + ":", "aria-label": name.replace(/_/g, " "), onclick: () => pickEmoji(e), text: e });
}

function renderPicker() {
  const q = $("emoji-search").value;
  const names = new Map(searchEmoji("").map((p) => [p.emoji, p.name]));
  $("emoji-recent").replaceChildren(...recentEmoji().slice(0, 12).map((e) => emojiButton(e, names.get(e) || e)));
  const list = searchEmoji(q);
  $("emoji-grid").replaceChildren(...(list.length ? list.map((p) => emojiButton(p.emoji, p.name)) : [h("p", { class: "muted small", text: "No emoji matches." })]));
}

function pickEmoji(e) {
  const m = pickerFor;
  $("emoji-picker").close();
  if (!m) return;
  rememberEmoji(e);
  const cur = findMessage(m.id) || m;
  const mine = (cur.reactions || []).some((r) => r.emoji === e && (r.users || []).includes(S.me.id));
  if (!mine) toggleMyReaction(cur, e);
}

async function toggleMyReaction(m, emoji) {
  const cur = findMessage(m.id) || m;
  const had = (cur.reactions || []).some((r) => r.emoji === emoji && (r.users || []).includes(S.me.id));
  // Optimistic; the answer (and the event) carry the node's list.
  const optimistic = { ...cur, reactions: toggleReaction(cur.reactions, emoji, S.me.id) };
  replaceLocal(optimistic);
  try {
    const updated = had ? await api.unreact(m.chat_id, m.id, emoji) : await api.react(m.chat_id, m.id, emoji);
    if (!had) rememberEmoji(emoji);
    if (updated && updated.id) replaceLocal({ ...(findMessage(m.id) || updated), reactions: updated.reactions || [] });
  } catch (e) {
    replaceLocal(cur);
    toast("Could not react: " + errorText(e), "error");
  }
}

function replaceLocal(m) {
  const i = S.msgs.findIndex((x) => x.id === m.id);
  if (i !== -1) S.msgs[i] = m;
  if (S.threadMsgs && S.threadMsgs.has(m.id)) S.threadMsgs.set(m.id, m);
  if (S.parents.has(m.id)) S.parents.set(m.id, m);
  renderMessages();
  renderThread();
}

// ---------------------------------------------------------------------------------------------
// Uploads

let uploadSeq = 0;

function addFiles(fileList) {
  if (!S.openId || !S.openChat || S.openChat.joined === false) return;
  const files = Array.from(fileList || []);
  const room = MAX_ATTACHMENTS - S.uploads.filter((u) => u.chat_id === S.openId).length;
  if (files.length > room) toast("At most " + MAX_ATTACHMENTS + " files per message.", "error");
  for (const f of files.slice(0, Math.max(0, room))) startUpload(f);
  renderUploads();
}

function startUpload(file) {
  const u = { key: "u" + ++uploadSeq, chat_id: S.openId, name: file.name || "pasted-file", size: file.size, sent: 0, state: "uploading", error: null, attachment: null, abort: null };
  let f = file;
  if (!file.name) f = new File([file], u.name, { type: file.type });
  const { promise, abort } = uploadFile(f, (sent) => {
    u.sent = sent;
    updateUploadProgress(u);
  });
  u.abort = abort;
  S.uploads.push(u);
  promise
    .then((a) => {
      u.state = "done";
      u.attachment = a;
      renderUploads();
    })
    .catch((e) => {
      if (!S.uploads.includes(u)) return;
      u.state = "failed";
      u.error = errorText(e);
      renderUploads();
    });
}

function updateUploadProgress(u) {
  const el = document.querySelector('#upload-tray .upload[data-key="' + u.key + '"] progress');
  if (el) el.value = u.size ? u.sent / u.size : 0;
}

function removeUpload(u) {
  if (u.state === "uploading" && u.abort) u.abort();
  S.uploads = S.uploads.filter((x) => x !== u);
  renderUploads();
}

function renderUploads() {
  const list = S.uploads.filter((u) => u.chat_id === S.openId);
  $("upload-tray").replaceChildren(
    ...list.map((u) => {
      const a = u.attachment;
      let thumb;
      if (a && isImageAttachment(a)) {
        const t = a.thumbnails[a.thumbnails.length - 1];
        thumb = h("img", { class: "upload-thumb", src: "/api/v1/media/" + encodeURIComponent(t.id), alt: "", width: 48, height: 48 });
      } else {
        thumb = h("span", { class: "upload-thumb icon", "aria-hidden": "true", text: a ? fileIcon(a.mime) : "⏳" });
      }
      const status =
        u.state === "uploading"
          ? h("progress", { max: 1, value: u.size ? u.sent / u.size : 0, "aria-label": "Uploading " + u.name })
          : u.state === "failed"
            ? h("span", { class: "upload-error small", text: u.error || "failed" })
            : h("span", { class: "muted small", text: formatBytes(u.size) });
      return h(
        "li",
        { class: "upload", dataset: { key: u.key, state: u.state } },
        thumb,
        h("span", { class: "upload-meta" }, h("span", { class: "upload-name", text: u.name }), status),
        h("button", { type: "button", class: "ghost small upload-remove", "aria-label": "Remove " + u.name, onclick: () => removeUpload(u), text: "✕" }),
      );
    }),
  );
  show($("upload-tray"), list.length > 0);
}

let dragDepth = 0;

function hasFiles(e) {
  return e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
}

function wireDrop() {
  const target = $("chat");
  target.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth += 1;
    show($("drop-overlay"), true);
  });
  target.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  target.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) show($("drop-overlay"), false);
  });
  target.addEventListener("drop", (e) => {
    dragDepth = 0;
    show($("drop-overlay"), false);
    if (!e.dataTransfer || !e.dataTransfer.files || !e.dataTransfer.files.length) return;
    e.preventDefault();
    addFiles(e.dataTransfer.files);
  });
  $("input").addEventListener("paste", (e) => {
    const files = e.clipboardData && e.clipboardData.files;
    if (files && files.length) {
      e.preventDefault();
      addFiles(files);
    }
  });
}

function openLightbox(a) {
  const img = $("lightbox-img");
  img.src = "/api/v1/media/" + encodeURIComponent(a.id);
  img.alt = a.name;
  $("lightbox-name").textContent = a.name + " · " + formatBytes(a.size_bytes) + (a.width ? " · " + a.width + "×" + a.height : "");
  const dl = $("lightbox-download");
  dl.href = "/api/v1/media/" + encodeURIComponent(a.id);
  dl.download = a.name;
  $("lightbox").showModal();
  $("btn-lightbox-close").focus();
}

// ---------------------------------------------------------------------------------------------
// Applying messages and live events

/** Put a (new or changed) message into the open chat and the chat list. */
function applyMessage(m, { created = false, fromMe = false } = {}) {
  if (!m || !m.chat_id) return;
  const entry = S.entries.get(m.chat_id);
  const open = S.openId === m.chat_id;
  const wasAtBottom = open ? messagesAtBottom() : false;
  // Only take messages inside the loaded window (an edit of an old message we have not
  // loaded must not appear out of context; a new one past a jump window waits for the pill).
  let inWindow = false;
  if (open && !S.loading) {
    const known = S.msgs.some((x) => x.id === m.id);
    if (known) inWindow = true;
    else if (S.hasNewer) inWindow = false;
    else inWindow = created || !S.hasMore || (S.msgs.length > 0 && compareIds(m.id, S.msgs[0].id) > 0);
  } else if (open && created) {
    inWindow = true;
  }
  if (S.parents.has(m.id)) S.parents.set(m.id, m);
  if (S.threadId && m.reply_to === S.threadId && S.threadMsgs) S.threadMsgs.set(m.id, m);
  if (inWindow) {
    mergeMessages([m]);
    if (created && isMe(m.author) && !fromMe) {
      // Our own message arrived as an event before its ack: hide the matching bubble.
      const p = S.pending.find((x) => x.chat_id === m.chat_id && x.status === "sending" && !x.hidden && x.body === m.body);
      if (p) p.hidden = true;
    }
  }
  if (open && created && !isMe(m.author) && (!wasAtBottom || S.hasNewer)) S.unseenNew += 1;
  if (entry) {
    const last = entry.last_message;
    if (!last || compareIds(m.id, last.id) >= 0) {
      entry.last_message = last && last.id === m.id ? newerMessage(last, m) : m;
      if (created || !last) entry.last_activity_ms = Math.max(entry.last_activity_ms || 0, m.created_ms || 0);
    }
    if (created && !isMe(m.author) && !(open && document.visibilityState === "visible" && !S.hasNewer && $("search").hidden)) {
      if (!entry.last_read || compareIds(m.id, entry.last_read) > 0) {
        entry.unread_count = (entry.unread_count || 0) + 1;
        if (mentionsMe(m)) entry.mention_count = (entry.mention_count || 0) + 1;
      }
    }
    renderChatList();
  } else if (created) {
    scheduleRefreshChats(100);
  }
  if (created) S.typing.clear(m.chat_id, m.author);
  if (open) {
    renderMessages({ stick: fromMe ? true : null });
    renderThread();
    renderTyping();
    maybeMarkRead();
  }
}

function onEvent(ev) {
  switch (ev.type) {
    case "message.created":
      applyMessage(ev.message, { created: true });
      if (!isMe(ev.message.author)) {
        scheduleRefreshChats();
        notify(ev);
      }
      break;
    case "message.edited":
    case "message.deleted":
      applyMessage(ev.message, {});
      if (ev.type === "message.deleted") scheduleRefreshChats();
      break;
    case "message.reactions": {
      const m = S.openId === ev.chat_id ? findMessage(ev.message_id) : null;
      if (m) replaceLocal({ ...m, reactions: ev.reactions || [] });
      break;
    }
    case "message.state": {
      const m = S.openId === ev.chat_id ? S.msgs.find((x) => x.id === ev.message_id) : null;
      if (m) {
        mergeMessages([{ ...m, state: ev.state }]);
        renderMessages();
      }
      const e = S.entries.get(ev.chat_id);
      if (e && e.last_message && e.last_message.id === ev.message_id) e.last_message = newerMessage(e.last_message, { ...e.last_message, state: ev.state });
      break;
    }
    case "read_marker":
      if (isMe(ev.user_id)) {
        const e = S.entries.get(ev.chat_id);
        if (e && compareIds(ev.message_id, e.last_read) > 0) e.last_read = ev.message_id;
        scheduleRefreshChats(300);
      }
      break;
    case "chat.updated":
    case "chat.joined": {
      const c = ev.chat;
      const e = S.entries.get(c.id);
      if (e) e.chat = c;
      else if (ev.type === "chat.joined" || c.joined) S.entries.set(c.id, { chat: c, unread_count: 0, mention_count: 0, last_message: null, last_activity_ms: c.created_ms, last_read: null, notification_level: c.kind === "dm" ? "all" : "mentions" });
      if (c.dm_members) S.dmMembers.set(c.id, c.dm_members);
      if (S.openId === c.id) {
        S.openChat = c;
        renderHeader();
        if (ev.type === "chat.joined" && S.loadError) openChat(c.id);
      }
      if (c.kind === "dm") S.dmFetches.delete(c.id);
      renderChatList();
      scheduleRefreshChats();
      break;
    }
    case "chat.left": {
      const e = S.entries.get(ev.chat_id);
      S.entries.delete(ev.chat_id);
      if (S.openId === ev.chat_id) {
        closeChat();
        if (e) toast("You are no longer in " + (e.chat.kind === "dm" ? "this conversation" : "#" + e.chat.name) + ".");
      }
      renderChatList();
      break;
    }
    case "user.updated": {
      const u = ev.user;
      S.users.set(u.id, u);
      if (isMe(u.id)) {
        S.me = u;
        if (u.disabled) {
          sessionEnded();
          return;
        }
      }
      renderAll();
      break;
    }
    case "notifications.updated": {
      const e = S.entries.get(ev.chat_id);
      if (e) {
        e.notification_level = ev.level;
        renderChatList();
        if (S.openId === ev.chat_id) renderHeader();
      }
      break;
    }
    default:
      break;
  }
}

function onFrame(f) {
  if (f.type === "ack") {
    confirmSend(f.client_id, f.message);
  } else if (f.type === "error") {
    const p = f.client_id ? S.pending.find((x) => x.client_id === f.client_id) : null;
    if (p) {
      clearTimeout(p.timer);
      p.status = "failed";
      p.hidden = false;
      p.error = f.code === "rate_limited" ? "sending too fast" : f.message || f.code;
      renderMessages();
    } else if (f.code !== "rate_limited") {
      toast(f.message || f.code || "Server error", "error");
    }
  } else if (f.type === "presence") {
    S.presence.set(f.user_id, f.status);
    renderChatList();
    renderMessages();
    if (S.openChat && S.openChat.kind === "dm") renderHeader();
  } else if (f.type === "typing") {
    if (isMe(f.user_id)) return;
    const skew = Date.now() - (f.server_ms || Date.now());
    S.typing.set(f.chat_id, f.user_id, Math.max(f.expires_ms + skew, Date.now() + 1500));
    renderTyping();
  }
}

let typingTimer = null;
function renderTyping() {
  clearTimeout(typingTimer);
  const el = $("typing");
  if (!S.openId || !S.me) {
    el.textContent = "";
    return;
  }
  const ids = S.typing.active(S.openId, Date.now(), S.me.id);
  el.textContent = typingText(ids.map(userName));
  if (ids.length) typingTimer = setTimeout(renderTyping, 1000);
}

let lastTypingSent = 0;
function sendTyping() {
  if (!S.openId || !$("input").value.trim()) return;
  const now = Date.now();
  if (now - lastTypingSent < 3000) return;
  lastTypingSent = now;
  live.send({ type: "typing", chat_id: S.openId });
}

function onLiveOpen() {
  S.wasLive = true;
  if (S.firstOpen) {
    // The first connection defines "now" for the event stream: reload anything that may
    // have changed between the initial HTTP load and the hello.
    S.firstOpen = false;
    refreshChats();
    if (S.openId) catchUpOpenChat();
  }
  loadPresence();
  flushQueued();
  pullPushed();
}

function onLiveClosed() {
  // Sends that were in flight on the socket: finish them over HTTP (idempotent by client_id).
  for (const p of S.pending) {
    if (p.status === "sending" && p.via === "ws") sendViaHttp(p);
  }
}

let lostCheck = null;
function onLiveLost() {
  if (lostCheck) return;
  lostCheck = api
    .me()
    .then((me) => {
      if (S.me && me && me.id === S.me.id) S.me = me;
    })
    .catch((e) => {
      if (e.status === 401) sessionEnded();
    })
    .finally(() => {
      lostCheck = null;
    });
}

function onResync() {
  refreshChats();
  loadUsers();
  if (S.openId) openChat(S.openId);
}

async function catchUpOpenChat() {
  const id = S.openId;
  const gen = S.openGen;
  if (S.hasNewer) return;
  try {
    const r = await api.messages(id, { limit: PAGE });
    if (gen !== S.openGen) return;
    mergeMessages(r.messages);
    renderMessages();
    maybeMarkRead();
  } catch {
    /* the next event or reload heals it */
  }
}

let bannerTimer = null;
function setConnStatus(status, delay) {
  document.body.dataset.conn = status;
  const dot = $("conn-dot");
  dot.className = "dot " + status;
  const text = $("conn-text");
  clearInterval(bannerTimer);
  const banner = $("conn-banner");
  if (status === "live") {
    text.textContent = "Connected";
    show(banner, false);
  } else if (status === "connecting") {
    text.textContent = "Connecting…";
    if (S.wasLive) {
      $("conn-banner-text").textContent = "Reconnecting…";
      show(banner, true);
    }
  } else {
    const until = Date.now() + delay;
    const tick = () => {
      const s = Math.max(1, Math.round((until - Date.now()) / 1000));
      text.textContent = "Offline · retrying in " + s + " s";
      $("conn-banner-text").textContent = "Connection lost. Reconnecting in " + s + " s… Messages you send are kept until then.";
    };
    tick();
    bannerTimer = setInterval(tick, 1000);
    show(banner, true);
  }
  show($("btn-reconnect"), status === "offline");
}

// Sleep detection: after a suspend the socket may be dead without a close; reconnect.
let lastTick = Date.now();
setInterval(() => {
  const now = Date.now();
  if (sleptFor(now - lastTick, 5000) && S.me) {
    live.reconnectNow();
    refreshChats();
  }
  lastTick = now;
}, 5000);

// ---------------------------------------------------------------------------------------------
// Desktop notifications

function updateNotifyButton() {
  const can = "Notification" in window;
  show($("btn-notify"), can && Notification.permission === "default" && !!S.me);
}

async function askNotifyPermission() {
  if (!("Notification" in window)) return;
  try {
    await Notification.requestPermission();
  } catch {
    /* old browsers: callback form; ignore */
  }
  updateNotifyButton();
}

function notify(ev) {
  const permission = "Notification" in window ? Notification.permission : "denied";
  if (!shouldNotify(ev, { openChatId: S.openId, visible: document.visibilityState === "visible" && document.hasFocus(), permission })) return;
  const m = ev.message;
  const entry = S.entries.get(m.chat_id);
  const chat = entry ? entry.chat : null;
  const title = userName(m.author) + (chat && chat.kind !== "dm" ? " in #" + chat.name : "");
  try {
    const n = new Notification(title, { body: preview(m.body, 140) || "📎 attachment", tag: m.chat_id });
    n.onclick = () => {
      window.focus();
      openChat(m.chat_id);
      n.close();
    };
  } catch {
    /* notifications may be unavailable here */
  }
}

// ---------------------------------------------------------------------------------------------
// This browser as a push device (device.js, sw.js)

/** If this browser is enrolled as a device of the user: say so on the WebSocket, keep the
 *  service worker registered, and take what it hands over. */
async function attachDevice() {
  S.device = null;
  try {
    S.device = await loadDevice(S.me.id);
  } catch {
    /* no IndexedDB (private mode): no push on this browser */
  }
  live.deviceId = S.device ? S.device.id : null;
  if (S.device && "serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { type: "module" }).catch(() => {});
  }
  renderPushStatus();
}

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.addEventListener("message", (e) => {
    const data = e.data || {};
    if (data.type === "pushed") for (const m of data.messages || []) applyMessage(m, { created: true });
    if (data.type === "open_chat" && data.chat_id && S.entries.has(data.chat_id)) openChat(data.chat_id);
  });
}

/** On (re)connecting: whatever the relay still holds for this device came from the node too;
 *  mark it seen (so the service worker shows no notification for it later) and drop it there. */
async function pullPushed() {
  if (!S.device) return;
  try {
    const messages = await pullFromRelay(S.device);
    await firstSightings(messages.map((m) => m.id));
    for (const m of messages) applyMessage(m, { created: true });
  } catch {
    /* the relay is down: the node has every message anyway */
  }
}

function renderPushStatus(text) {
  const status = $("pf-push-status");
  if (!status) return;
  if (text) status.textContent = text;
  else if (S.device) status.textContent = "This browser is a push device (relay " + S.device.relay + ").";
  else status.textContent = "Not set up on this browser.";
  $("pf-push").textContent = S.device ? "Renew push subscription" : "Enable push on this browser";
}

/** Before this browser is a device: the relay it would enrol with, the node's default first
 *  and the other relays it offers as suggestions (any https relay may be typed when the node
 *  allows it; `chooseRelay` in device.js checks). */
async function renderRelayChoice() {
  const row = $("pf-relay-row");
  row.hidden = true;
  if (S.device) return;
  let settings;
  try {
    settings = await api.pushSettings();
  } catch {
    return;
  }
  const offered = settings.relay_urls || [];
  if (S.device || (!offered.length && !settings.other_relays_allowed)) return;
  $("pf-relay-options").replaceChildren(...offered.map((url) => h("option", { value: url })));
  const input = $("pf-relay");
  input.value = offered[0] || "";
  input.placeholder = "https://relay.example";
  row.hidden = false;
}

/** The user's push devices, each with a Remove button (this browser's removal also deletes
 *  its relay queue and its keys). */
async function renderDevices() {
  const list = $("pf-devices");
  list.replaceChildren();
  let devices = [];
  try {
    devices = (await api.devices()).devices || [];
  } catch {
    return;
  }
  for (const d of devices) {
    const mine = S.device && S.device.id === d.id;
    const label = d.name + (mine ? " (this browser)" : "") + " · since " + new Date(d.created_ms).toLocaleDateString();
    list.appendChild(
      h("li", { class: "device", dataset: { id: d.id } }, h("span", { text: label }), h("button", { type: "button", class: "ghost small", text: "Remove", onclick: () => removeDevice(d.id) })),
    );
  }
}

async function removeDevice(id) {
  try {
    await api.removeDevice(id);
    if (S.device && S.device.id === id) {
      const device = S.device;
      S.device = null;
      live.deviceId = null;
      const registration = "serviceWorker" in navigator ? await navigator.serviceWorker.getRegistration() : null;
      const subscription = registration ? await registration.pushManager.getSubscription() : null;
      if (subscription) await subscription.unsubscribe().catch(() => {});
      await retire(device).catch(() => {});
      live.reconnectNow();
    }
    renderPushStatus();
  } catch (err) {
    renderPushStatus("Could not remove the device: " + errorText(err));
  }
  renderDevices();
}

/** Asked from a click, as browsers require for notification permission and push. */
async function enablePush() {
  try {
    renderPushStatus("Asking for permission…");
    if ("Notification" in window && Notification.permission === "default") await Notification.requestPermission();
    if (!S.device) {
      renderPushStatus("Creating this browser's keys and registering with the relay…");
      const name = (navigator.userAgentData && navigator.userAgentData.platform) || navigator.platform || "Browser";
      S.device = await enrol(api, S.me.id, ("Browser on " + name).slice(0, 64), $("pf-relay").value);
      $("pf-relay-row").hidden = true;
      live.deviceId = S.device.id;
      live.reconnectNow();
    }
    if (!("serviceWorker" in navigator)) throw new Error("this browser has no service workers");
    renderPushStatus("Starting the service worker…");
    await navigator.serviceWorker.register("/sw.js", { type: "module" });
    const registration = await navigator.serviceWorker.ready;
    renderPushStatus("Subscribing to push…");
    try {
      const subscription = await withTimeout(
        registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64decode(S.device.vapid) }),
        PUSH_SUBSCRIBE_TIMEOUT_MS,
      );
      await setPushSubscription(S.device, subscription);
      renderPushStatus("Push is on for this browser.");
    } catch (err) {
      renderPushStatus("Registered as a device; the browser's push service refused: " + (err && err.message ? err.message : err));
    }
    renderDevices();
  } catch (err) {
    renderPushStatus("Could not set up push: " + errorText(err));
  }
}

/** A browser without a reachable push service may never answer `subscribe`. */
const PUSH_SUBSCRIBE_TIMEOUT_MS = 10000;

function withTimeout(promise, ms) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error("no answer in " + ms / 1000 + " s")), ms))]);
}

// ---------------------------------------------------------------------------------------------
// Dialogs: create channel, browse channels, start a DM, topic, profile

function openDialog(id) {
  const d = $(id);
  if (!d.open) d.showModal();
  return d;
}

function wireDialogClose() {
  for (const b of document.querySelectorAll("dialog [data-close]")) {
    b.addEventListener("click", () => b.closest("dialog").close());
  }
  // Escape in a search field first clears it in Chromium and keeps the dialog open: close it.
  for (const d of document.querySelectorAll("dialog")) {
    d.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && e.target instanceof HTMLInputElement && e.target.type === "search") {
        e.preventDefault();
        d.close();
      }
    });
  }
  // A click on the backdrop closes light dialogs.
  for (const id of ["emoji-picker", "lightbox", "dlg-switch", "dlg-browse"]) {
    $(id).addEventListener("click", (e) => {
      if (e.target !== $(id)) return;
      const r = $(id).getBoundingClientRect();
      const inside = e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
      if (!inside) $(id).close();
    });
  }
}

function openCreateChannel() {
  $("form-channel").reset();
  $("ch-error").textContent = "";
  openDialog("dlg-channel");
  $("ch-name").focus();
}

async function submitCreateChannel(e) {
  e.preventDefault();
  const name = $("ch-name").value.trim();
  const topic = $("ch-topic").value.trim();
  const visibility = new FormData($("form-channel")).get("visibility") === "private" ? "private" : "public";
  const err = $("ch-error");
  if (!name) {
    err.textContent = "Give the channel a name.";
    return;
  }
  const btn = $("form-channel").querySelector("button[type=submit]");
  btn.disabled = true;
  try {
    const chat = await api.createChannel(name, topic, visibility);
    $("dlg-channel").close();
    addChatEntry(chat);
    openChat(chat.id);
  } catch (ex) {
    err.textContent = errorText(ex);
  } finally {
    btn.disabled = false;
  }
}

function addChatEntry(chat) {
  if (!S.entries.has(chat.id)) {
    S.entries.set(chat.id, { chat, unread_count: 0, mention_count: 0, last_message: null, last_activity_ms: chat.created_ms || Date.now(), last_read: null, notification_level: chat.kind === "dm" ? "all" : "mentions" });
  } else {
    S.entries.get(chat.id).chat = chat;
  }
  renderChatList();
  scheduleRefreshChats(300);
}

let browseChannels = [];

async function openBrowse() {
  $("browse-filter").value = "";
  $("browse-error").textContent = "";
  $("browse-list").replaceChildren(h("li", { class: "muted pad", text: "Loading…" }));
  openDialog("dlg-browse");
  $("browse-filter").focus();
  try {
    browseChannels = await api.channels();
    renderBrowse();
  } catch (e) {
    $("browse-list").replaceChildren();
    $("browse-error").textContent = errorText(e);
  }
}

function renderBrowse() {
  const q = $("browse-filter").value.trim().toLowerCase();
  const list = browseChannels
    .filter((c) => !q || c.name.toLowerCase().includes(q) || (c.topic || "").toLowerCase().includes(q))
    .sort((a, b) => a.name.localeCompare(b.name));
  const items = list.map((c) => {
    const action = c.joined
      ? h("button", { type: "button", class: "small", "aria-label": "Open " + c.name, onclick: () => { $("dlg-browse").close(); openChat(c.id); }, text: "Open" })
      : h("button", { type: "button", class: "primary small join", "aria-label": "Join " + c.name, onclick: (e) => joinChannel(c, e.currentTarget), text: "Join" });
    return h(
      "li",
      { class: "pick" },
      h("span", { class: "chan-icon", "aria-hidden": "true", text: c.visibility === "private" ? "🔒" : "#" }),
      h(
        "span",
        { class: "pick-main" },
        h("span", { class: "pick-name", text: c.name }),
        h("span", { class: "muted small", text: (c.member_count || 0) + (c.member_count === 1 ? " member" : " members") + (c.topic ? " · " + c.topic : "") }),
      ),
      action,
    );
  });
  $("browse-list").replaceChildren(...(items.length ? items : [h("li", { class: "muted pad", text: browseChannels.length ? "No channel matches." : "No channels yet. Create one!" })]));
}

async function joinChannel(c, btn) {
  if (btn) btn.disabled = true;
  try {
    const chat = await api.join(c.id);
    if ($("dlg-browse").open) $("dlg-browse").close();
    addChatEntry(chat);
    openChat(chat.id);
  } catch (e) {
    if (btn) btn.disabled = false;
    const msg = "Could not join: " + errorText(e);
    if ($("dlg-browse").open) $("browse-error").textContent = msg;
    else toast(msg, "error");
  }
}

let dmUsers = [];
const dmPicked = new Set();

async function openNewDm() {
  dmPicked.clear();
  $("dm-filter").value = "";
  $("dm-error").textContent = "";
  $("dm-list").replaceChildren(h("li", { class: "muted pad", text: "Loading…" }));
  updateDmButton();
  openDialog("dlg-dm");
  $("dm-filter").focus();
  try {
    const list = await api.users();
    for (const u of list) S.users.set(u.id, u);
    dmUsers = list.filter((u) => !isMe(u.id) && !u.disabled);
    renderDmList();
  } catch (e) {
    $("dm-list").replaceChildren();
    $("dm-error").textContent = errorText(e);
  }
}

function renderDmList() {
  const q = $("dm-filter").value.trim().toLowerCase();
  const list = dmUsers
    .filter((u) => !q || u.id.toLowerCase().includes(q) || (u.display_name || "").toLowerCase().includes(q))
    .sort((a, b) => (a.display_name || a.username).localeCompare(b.display_name || b.username));
  const items = list.map((u) => {
    const box = h("input", { type: "checkbox", value: u.id, "aria-label": "Pick " + u.id });
    box.checked = dmPicked.has(u.id);
    box.addEventListener("change", () => {
      if (box.checked) dmPicked.add(u.id);
      else dmPicked.delete(u.id);
      updateDmButton();
    });
    const name = u.display_name || u.username;
    return h(
      "li",
      { class: "pick" },
      h("label", { class: "pick-label" }, box, avatarWithPresence(name, u.id, "small"), h("span", { class: "pick-main" }, h("span", { class: "pick-name", text: name }), h("span", { class: "muted small", text: u.id + (u.status_text ? " · " + u.status_text : "") }))),
    );
  });
  $("dm-list").replaceChildren(...(items.length ? items : [h("li", { class: "muted pad", text: dmUsers.length ? "Nobody matches." : "Nobody else is here yet." })]));
}

function updateDmButton() {
  const n = dmPicked.size;
  $("dm-start").disabled = n < 1 || n > 8;
  $("dm-start").textContent = n > 1 ? "Start group (" + n + ")" : "Start";
  $("dm-error").textContent = n > 8 ? "A direct message can include at most 8 other people." : "";
}

async function submitNewDm(e) {
  e.preventDefault();
  const ids = [...dmPicked];
  if (ids.length < 1 || ids.length > 8) return;
  const btn = $("dm-start");
  btn.disabled = true;
  try {
    const chat = await api.openDm(ids);
    S.dmMembers.set(chat.id, [S.me.id, ...ids]);
    $("dlg-dm").close();
    addChatEntry(chat);
    openChat(chat.id);
  } catch (ex) {
    $("dm-error").textContent = errorText(ex);
  } finally {
    btn.disabled = false;
  }
}

async function openDmWith(userId) {
  try {
    const chat = await api.openDm([userId]);
    S.dmMembers.set(chat.id, [S.me.id, userId]);
    addChatEntry(chat);
    openChat(chat.id);
  } catch (e) {
    toast("Could not open the conversation: " + errorText(e), "error");
  }
}

function editTopic() {
  const c = S.openChat;
  if (!c) return;
  $("topic-input").value = c.topic || "";
  $("topic-error").textContent = "";
  $("dlg-topic-title").textContent = "Topic for #" + c.name;
  openDialog("dlg-topic");
  $("topic-input").focus();
}

async function submitTopic(e) {
  e.preventDefault();
  const c = S.openChat;
  if (!c) return;
  try {
    const chat = await api.updateChat(c.id, { topic: $("topic-input").value.trim() });
    $("dlg-topic").close();
    if (S.openId === chat.id) S.openChat = chat;
    if (S.entries.has(chat.id)) S.entries.get(chat.id).chat = chat;
    renderHeader();
    renderChatList();
  } catch (ex) {
    $("topic-error").textContent = errorText(ex);
  }
}

async function leaveChat() {
  const c = S.openChat;
  if (!c) return;
  if (!(await confirmDialog("Leave #" + c.name + "?", "You can join public channels again from the channel browser.", "Leave"))) return;
  try {
    await api.leave(c.id);
    S.entries.delete(c.id);
    closeChat();
  } catch (e) {
    toast("Could not leave: " + errorText(e), "error");
  }
}

async function setNotifyLevel() {
  const id = S.openId;
  const level = $("notify-level").value;
  try {
    const e = await api.setNotifications(id, level);
    if (e && e.chat) S.entries.set(e.chat.id, e);
    renderChatList();
    if (level !== "mute") askNotifyPermissionIfDefault();
  } catch (ex) {
    toast("Could not change notifications: " + errorText(ex), "error");
  }
}

function askNotifyPermissionIfDefault() {
  if ("Notification" in window && Notification.permission === "default") askNotifyPermission();
}

function openProfile() {
  const me = S.me;
  $("pf-display").value = me.display_name || "";
  $("pf-status").value = me.status_text || "";
  $("pf-team").value = me.team || "";
  $("pf-dnd").checked = !!me.dnd;
  $("pf-error").textContent = "";
  renderPushStatus();
  renderRelayChoice();
  renderDevices();
  openDialog("dlg-profile");
  $("pf-display").focus();
}

async function submitProfile(e) {
  e.preventDefault();
  const fields = { display_name: $("pf-display").value.trim(), status_text: $("pf-status").value.trim(), team: $("pf-team").value.trim() };
  try {
    let me = await api.updateMe(fields);
    if (!!me.dnd !== $("pf-dnd").checked) me = await api.setDnd($("pf-dnd").checked);
    S.me = me;
    S.users.set(me.id, me);
    $("dlg-profile").close();
    renderAll();
  } catch (ex) {
    $("pf-error").textContent = errorText(ex);
  }
}

// ---------------------------------------------------------------------------------------------
// Quick switcher (Ctrl/⌘K)

let switchItems = [];
let switchSel = 0;

function openSwitcher() {
  if (!S.me) return;
  $("switch-input").value = "";
  openDialog("dlg-switch");
  renderSwitcher();
  $("switch-input").focus();
}

function renderSwitcher() {
  const q = $("switch-input").value;
  const cands = [];
  const dmWith = new Set();
  for (const e of sortByActivity([...S.entries.values()])) {
    const c = e.chat;
    const label = chatTitle(c);
    if (c.kind === "dm") for (const u of dmOthers(c)) if (dmOthers(c).length === 1) dmWith.add(u);
    cands.push({ key: c.id, label, hint: c.kind === "dm" ? "Direct message" : c.visibility === "private" ? "Private channel" : "Channel", icon: c.kind === "dm" ? "@" : c.visibility === "private" ? "🔒" : "#", unread: e.unread_count || 0, go: () => openChat(c.id) });
  }
  for (const u of S.users.values()) {
    if (isMe(u.id) || u.disabled || dmWith.has(u.id)) continue;
    cands.push({ key: "u:" + u.id, label: u.display_name || u.username, hint: u.id, icon: "@", unread: 0, go: () => openDmWith(u.id) });
  }
  const scored = cands
    .map((c, i) => ({ c, s: q.trim() ? Math.min(fuzzyScore(c.label, q) ?? 1e9, (fuzzyScore(c.hint, q) ?? 1e9) + 5) : i }))
    .filter((x) => x.s < 1e9)
    .sort((a, b) => a.s - b.s)
    .slice(0, 12)
    .map((x) => x.c);
  switchItems = scored;
  switchSel = 0;
  paintSwitcher();
}

function paintSwitcher() {
  $("switch-list").replaceChildren(
    ...(switchItems.length
      ? switchItems.map((c, i) =>
          h(
            "li",
            {
              class: "switch-item" + (i === switchSel ? " selected" : ""),
              role: "option",
              id: "switch-opt-" + i,
              "aria-selected": i === switchSel ? "true" : "false",
              onclick: () => chooseSwitch(i),
            },
            h("span", { class: "chan-icon", "aria-hidden": "true", text: c.icon }),
            h("span", { class: "pick-main" }, h("span", { class: "pick-name", text: c.label }), h("span", { class: "muted small", text: c.hint })),
            c.unread ? h("span", { class: "badge count", text: String(c.unread) }) : null,
          ),
        )
      : [h("li", { class: "muted pad", text: "Nothing matches." })]),
  );
  $("switch-input").setAttribute("aria-activedescendant", switchItems.length ? "switch-opt-" + switchSel : "");
  const sel = document.getElementById("switch-opt-" + switchSel);
  if (sel) sel.scrollIntoView({ block: "nearest" });
}

function chooseSwitch(i) {
  const c = switchItems[i];
  if (!c) return;
  $("dlg-switch").close();
  c.go();
}

function switcherKeydown(e) {
  if (e.key === "ArrowDown") {
    e.preventDefault();
    switchSel = Math.min(switchItems.length - 1, switchSel + 1);
    paintSwitcher();
  } else if (e.key === "ArrowUp") {
    e.preventDefault();
    switchSel = Math.max(0, switchSel - 1);
    paintSwitcher();
  } else if (e.key === "Enter") {
    e.preventDefault();
    chooseSwitch(switchSel);
  }
}

// ---------------------------------------------------------------------------------------------
// Search

const search = { q: "", offset: 0, hits: [], total: 0, gen: 0 };

function fillSearchFilters() {
  const chatSel = $("sf-chat");
  const cur = chatSel.value;
  chatSel.replaceChildren(h("option", { value: "", text: "all chats" }), ...sortByActivity([...S.entries.values()]).map((e) => h("option", { value: e.chat.id, text: (e.chat.kind === "dm" ? "@ " : "# ") + chatTitle(e.chat) })));
  chatSel.value = cur;
  const authorSel = $("sf-author");
  const curA = authorSel.value;
  const users = [...S.users.values()].sort((a, b) => (a.display_name || a.username).localeCompare(b.display_name || b.username));
  authorSel.replaceChildren(h("option", { value: "", text: "anyone" }), ...users.map((u) => h("option", { value: u.id, text: (u.display_name || u.username) + (isMe(u.id) ? " (you)" : "") })));
  authorSel.value = curA;
}

function searchFilters() {
  const hf = $("sf-has-file").value;
  return {
    q: search.q,
    chat_id: $("sf-chat").value || null,
    author: $("sf-author").value || null,
    from_ms: dateInputToMs($("sf-from").value),
    to_ms: dateInputToMs($("sf-to").value, true),
    has_attachment: hf === "true" ? true : hf === "false" ? false : null,
    order: $("sf-order").value,
    offset: search.offset,
    limit: 20,
  };
}

function submitSearch(e) {
  if (e) e.preventDefault();
  const q = $("search-input").value.trim();
  if (!q) return;
  search.q = q;
  search.offset = 0;
  search.hits = [];
  if ($("search").hidden) {
    fillSearchFilters();
    if (S.openId && !$("sf-chat").value) $("sf-chat").value = "";
  }
  show($("search"), true);
  renderPane();
  runSearch();
}

async function runSearch() {
  const gen = ++search.gen;
  $("search-title").textContent = "Results for “" + search.q + "”";
  $("search-status").textContent = "Searching…";
  if (search.offset === 0) $("search-results").replaceChildren();
  try {
    const r = await api.search(searchQueryString(searchFilters()));
    if (gen !== search.gen) return;
    search.total = r.total || 0;
    search.hits = search.offset === 0 ? r.hits : search.hits.concat(r.hits);
    renderSearch();
  } catch (e) {
    if (gen !== search.gen) return;
    $("search-status").textContent = "Search failed: " + errorText(e);
  }
}

function renderSearch() {
  const n = search.total;
  $("search-status").textContent = n === 0 ? "No messages match. Try other words or fewer filters." : n === 1 ? "1 message" : n.toLocaleString() + " messages";
  $("search-results").replaceChildren(
    ...search.hits.map((hit) => {
      const m = hit.message;
      const entry = S.entries.get(hit.chat_id);
      const where = entry ? (entry.chat.kind === "dm" ? chatTitle(entry.chat) : "#" + entry.chat.name) : "";
      const snippet = h("p", { class: "hit-snippet" });
      const parts = snippetParts(hit.snippet);
      if (parts.length) {
        for (const p of parts) snippet.appendChild(p.highlighted ? h("mark", { text: p.text }) : document.createTextNode(p.text));
      } else {
        snippet.textContent = preview(m.body, 200);
      }
      const files = (m.attachments || []).map((a) => a.name).join(", ");
      return h(
        "li",
        {},
        h(
          "button",
          { type: "button", class: "search-hit", onclick: () => jumpTo(hit.chat_id, m.id) },
          h("span", { class: "hit-head" }, avatar(userName(m.author), m.author, "small"), h("b", { text: userName(m.author) }), h("span", { class: "muted small", text: " " + where + " · " + dayLabel(m.created_ms) + " " + timeOfDay(m.created_ms) })),
          snippet,
          files ? h("span", { class: "muted small hit-files", text: "📎 " + files }) : null,
        ),
      );
    }),
  );
  show($("btn-search-more"), search.hits.length < search.total);
}

function jumpTo(chatId, msgId) {
  show($("search"), false);
  openChat(chatId, { around: msgId });
}

function closeSearch() {
  show($("search"), false);
  renderPane();
  maybeMarkRead();
}

// ---------------------------------------------------------------------------------------------
// Composer

function updateCharCount() {
  const n = charCount($("input").value);
  const el = $("char-count");
  el.textContent = n > MAX_BODY_CHARS - 5000 ? n.toLocaleString() + " / " + MAX_BODY_CHARS.toLocaleString() : "";
  el.classList.toggle("over", n > MAX_BODY_CHARS);
}

let mentionState = null; // {q, items, sel}

function updateMentions() {
  const ta = $("input");
  const q = mentionQuery(ta.value, ta.selectionStart);
  if (!q) return hideMentions();
  const users = rankUsers([...S.users.values()].filter((u) => !u.disabled), q.query, 6);
  const special = ["channel", "here"].filter((s) => s.startsWith(q.query) && S.openChat && S.openChat.kind !== "dm").map((s) => ({ username: s, display_name: "Notify everyone in this chat", id: s }));
  const items = users.concat(special);
  if (!items.length) return hideMentions();
  mentionState = { q, items, sel: 0 };
  paintMentions();
}

function paintMentions() {
  const pop = $("mention-pop");
  pop.replaceChildren(
    ...mentionState.items.map((u, i) =>
      h(
        "li",
        { role: "option", class: "mention-opt" + (i === mentionState.sel ? " selected" : ""), "aria-selected": i === mentionState.sel ? "true" : "false", onmousedown: (e) => { e.preventDefault(); completeMentionAt(i); } },
        h("b", { text: "@" + u.username }),
        h("span", { class: "muted small", text: " " + (u.display_name || "") }),
      ),
    ),
  );
  show(pop, true);
}

function hideMentions() {
  mentionState = null;
  show($("mention-pop"), false);
}

function completeMentionAt(i) {
  if (!mentionState) return;
  const u = mentionState.items[i];
  const ta = $("input");
  const r = completeMention(ta.value, mentionState.q, ta.selectionStart, u.username);
  ta.value = r.text;
  ta.setSelectionRange(r.caret, r.caret);
  hideMentions();
  ta.focus();
}

function composerKeydown(e) {
  if (mentionState) {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const n = mentionState.items.length;
      mentionState.sel = (mentionState.sel + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
      paintMentions();
      return;
    }
    if (e.key === "Enter" || e.key === "Tab") {
      e.preventDefault();
      completeMentionAt(mentionState.sel);
      return;
    }
    if (e.key === "Escape") {
      e.preventDefault();
      hideMentions();
      return;
    }
  }
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    sendFromComposer();
  } else if (e.key === "ArrowUp" && !e.shiftKey && e.currentTarget.value === "") {
    if (editLastOwn()) e.preventDefault();
  } else if (e.key === "Escape") {
    if (S.editingId) cancelEdit();
    else if (S.replyTo) {
      S.replyTo = null;
      renderReplyBar();
    }
  }
}

function globalKeydown(e) {
  if ((e.ctrlKey || e.metaKey) && !e.altKey && (e.key === "k" || e.key === "K")) {
    if (!S.me) return;
    e.preventDefault();
    openSwitcher();
  } else if (e.key === "Escape" && !document.querySelector("dialog[open]")) {
    if (!$("search").hidden) closeSearch();
    else if (S.threadId) closeThread();
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring and boot

function wire() {
  $("tab-login").addEventListener("click", () => setAuthMode("login"));
  $("tab-register").addEventListener("click", () => setAuthMode("register"));
  $("auth-form").addEventListener("submit", submitAuth);
  $("btn-logout").addEventListener("click", logout);
  $("btn-profile").addEventListener("click", openProfile);
  $("form-profile").addEventListener("submit", submitProfile);
  $("btn-new-channel").addEventListener("click", openCreateChannel);
  $("btn-browse").addEventListener("click", openBrowse);
  $("btn-new-dm").addEventListener("click", openNewDm);
  $("btn-switch").addEventListener("click", openSwitcher);
  $("btn-notify").addEventListener("click", askNotifyPermission);
  $("pf-push").addEventListener("click", enablePush);
  $("form-channel").addEventListener("submit", submitCreateChannel);
  $("form-dm").addEventListener("submit", submitNewDm);
  $("form-topic").addEventListener("submit", submitTopic);
  $("browse-filter").addEventListener("input", renderBrowse);
  $("dm-filter").addEventListener("input", renderDmList);
  $("switch-input").addEventListener("input", renderSwitcher);
  $("switch-input").addEventListener("keydown", switcherKeydown);
  $("emoji-search").addEventListener("input", renderPicker);
  $("emoji-search").addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      const first = document.querySelector("#emoji-grid .emoji-btn");
      if (first) pickEmoji(first.dataset.emoji);
    }
  });
  $("btn-lightbox-close").addEventListener("click", () => $("lightbox").close());
  $("btn-reconnect").addEventListener("click", () => live.poke());
  $("btn-banner-retry").addEventListener("click", () => live.poke());
  $("btn-back").addEventListener("click", () => document.body.classList.remove("show-chat"));
  $("btn-topic").addEventListener("click", editTopic);
  $("btn-leave").addEventListener("click", leaveChat);
  $("notify-level").addEventListener("change", setNotifyLevel);
  $("btn-join").addEventListener("click", () => S.openChat && joinChannel(S.openChat, $("btn-join")));
  $("btn-older").addEventListener("click", loadOlder);
  $("btn-newer").addEventListener("click", loadNewer);
  $("new-pill").addEventListener("click", pillClicked);
  $("messages").addEventListener("scroll", onMessagesScroll);
  $("messages").addEventListener("keydown", messagesKeydown);
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    sendFromComposer();
  });
  $("input").addEventListener("keydown", composerKeydown);
  $("input").addEventListener("input", () => {
    updateCharCount();
    sendTyping();
    updateMentions();
  });
  $("input").addEventListener("blur", () => setTimeout(hideMentions, 150));
  $("btn-attach").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (e) => {
    addFiles(e.target.files);
    e.target.value = "";
  });
  $("btn-reply-cancel").addEventListener("click", () => {
    S.replyTo = null;
    renderReplyBar();
  });
  $("btn-thread-close").addEventListener("click", closeThread);
  $("thread-form").addEventListener("submit", sendFromThread);
  $("thread-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) sendFromThread(e);
  });
  $("search-form").addEventListener("submit", submitSearch);
  $("btn-search-close").addEventListener("click", closeSearch);
  $("btn-search-more").addEventListener("click", () => {
    search.offset = search.hits.length;
    runSearch();
  });
  for (const id of ["sf-chat", "sf-author", "sf-has-file", "sf-from", "sf-to", "sf-order"]) {
    $(id).addEventListener("change", () => {
      if (!search.q) return;
      search.offset = 0;
      runSearch();
    });
  }
  wireDialogClose();
  wireDrop();
  document.addEventListener("keydown", globalKeydown);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      maybeMarkRead();
      live.poke();
    }
  });
  window.addEventListener("focus", maybeMarkRead);
  window.addEventListener("online", () => live.reconnectNow());
  // Leaving the page may keep it alive in the back/forward cache with its WebSocket open, and
  // a device with an open socket is not pushed to: close it, and reconnect if the page returns.
  window.addEventListener("pagehide", () => live.stop());
  window.addEventListener("pageshow", (e) => {
    if (e.persisted && S.me) live.start();
  });
  setUnauthenticatedHandler(sessionEnded);
}

async function boot() {
  wire();
  if (/Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent)) $("switch-kbd").textContent = "⌘K";
  setAuthMode("login");
  try {
    const me = await api.me();
    await enterApp(me);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) showAuth();
    else showAuth(errorText(e));
  }
}

boot();
