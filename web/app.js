// Confab browser client: UI and state. Plain ES module, no build step, no third-party code.
// Runs under a strict CSP: no inline script or style, no eval, and message text is only ever
// placed into the page as text nodes (see format.js).

import { api, ApiError, Live, newClientId, setUnauthenticatedHandler } from "./api.js";
import {
  MAX_BODY_CHARS,
  MENTION_ALL,
  charCount,
  compareIds,
  dayKey,
  dayLabel,
  hashIndex,
  initials,
  newerMessage,
  preview,
  renderMessage,
  shortStamp,
  timeOfDay,
  upsertSorted,
} from "./format.js";

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const GROUP_MS = 5 * 60 * 1000;

// ---------------------------------------------------------------------------------------------
// State

const S = {
  me: null,
  users: new Map(), // user id -> User
  userFetches: new Set(), // user ids being (or already) fetched one by one
  entries: new Map(), // chat id -> ChatListEntry
  dmMembers: new Map(), // chat id -> [user id] (DM membership does not change)
  dmFetches: new Set(),
  openId: null,
  openChat: null, // Chat of the open chat (may be a public channel we have not joined)
  openGen: 0,
  msgs: [], // confirmed messages of the open chat, sorted by id
  hasMore: false,
  loadingOlder: false,
  loadError: null,
  loading: false,
  pending: [], // {client_id, chat_id, body, status: "sending"|"failed", error, via, timer, created_ms, hidden}
  editingId: null,
  readSent: new Map(), // chat id -> message id of the last read marker we posted
  drafts: new Map(), // chat id -> composer text
  msgCache: new Map(), // key -> {sig, el}
  firstOpen: true,
};

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
    default:
      return e.message || e.code;
  }
}

// ---------------------------------------------------------------------------------------------
// Names

function localpart(id) {
  const i = String(id).lastIndexOf("@");
  return i > 0 ? id.slice(0, i) : String(id);
}

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

function chatTitle(chat) {
  if (!chat) return "";
  if (chat.kind === "dm") {
    const members = S.dmMembers.get(chat.id);
    if (members) {
      const others = members.filter((u) => !isMe(u));
      if (others.length) return others.map(userName).join(", ");
    } else {
      fetchDmMembers(chat.id);
    }
    return chat.name || "Direct message";
  }
  return chat.name;
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
  Object.assign(S, {
    me: null,
    users: new Map(),
    userFetches: new Set(),
    entries: new Map(),
    dmMembers: new Map(),
    dmFetches: new Set(),
    openId: null,
    openChat: null,
    msgs: [],
    hasMore: false,
    loadError: null,
    pending: [],
    editingId: null,
    loading: false,
    readSent: new Map(),
    drafts: new Map(),
    msgCache: new Map(),
    firstOpen: true,
  });
  clearTimeout(chatsTimer);
  S.openGen += 1;
  $("chat-list").replaceChildren();
  $("msg-list").replaceChildren();
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
  live.start();
  await Promise.all([loadUsers(), refreshChats()]);
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
      for (const e of list) next.set(e.chat.id, e);
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
// Rendering: me, chat list, header, messages

function renderAll() {
  if (!S.me) return;
  renderMe();
  renderChatList();
  renderHeader();
  renderMessages();
}

function renderMe() {
  if (!S.me) return;
  const name = S.me.display_name || S.me.username;
  $("me-name").textContent = name;
  $("me-id").textContent = S.me.id + (S.me.is_admin ? " · admin" : "");
  const av = $("me-avatar");
  av.className = "avatar av" + hashIndex(S.me.id, 8);
  av.textContent = initials(name);
}

function sortedEntries() {
  const act = (e) => e.last_activity_ms || (e.last_message && e.last_message.created_ms) || e.chat.created_ms || 0;
  return [...S.entries.values()].sort((a, b) => act(b) - act(a));
}

function renderChatList() {
  if (!S.me) return;
  const entries = sortedEntries();
  const channels = entries.filter((e) => e.chat.kind !== "dm");
  const dms = entries.filter((e) => e.chat.kind === "dm");
  const section = (title, list, emptyText) =>
    h(
      "section",
      { class: "chat-section" },
      h("h4", { class: "section-title", text: title }),
      list.length ? list.map(chatItem) : h("p", { class: "muted small pad", text: emptyText }),
    );
  reconcile($("chat-list"), [section("Channels", channels, "No channels yet."), section("Direct messages", dms, "No conversations yet.")]);
  let unread = 0;
  for (const e of entries) unread += e.unread_count || 0;
  document.title = unread ? "(" + unread + ") Confab" : "Confab";
}

function chatItem(e) {
  const c = e.chat;
  const title = chatTitle(c);
  const active = c.id === S.openId;
  const unread = e.unread_count > 0;
  const others = c.kind === "dm" ? (S.dmMembers.get(c.id) || []).filter((u) => !isMe(u)) : [];
  const icon = c.kind === "dm" ? avatar(title, others.length === 1 ? others[0] : c.id, "small") : h("span", { class: "chan-icon", "aria-hidden": "true", text: c.visibility === "private" ? "🔒" : "#" });
  let pv = "";
  if (e.last_message) {
    const m = e.last_message;
    const who = isMe(m.author) ? "You" : c.kind === "dm" && !isGroupDm(c) ? "" : userName(m.author);
    const text = m.deleted ? "message deleted" : preview(m.body, 70);
    pv = who ? who + ": " + text : text;
  } else if (c.topic) {
    pv = c.topic;
  }
  const badges = h("span", { class: "badges" });
  if (e.mention_count > 0) badges.appendChild(h("span", { class: "badge mention", title: e.mention_count + " mentions", text: "@" + e.mention_count }));
  if (unread) badges.appendChild(h("span", { class: "badge", title: e.unread_count + " unread", text: e.unread_count > 99 ? "99+" : String(e.unread_count) }));
  return h(
    "button",
    {
      type: "button",
      class: "chat-item" + (active ? " active" : "") + (unread ? " unread" : ""),
      "aria-current": active ? "page" : null,
      onclick: () => openChat(c.id),
    },
    icon,
    h(
      "span",
      { class: "chat-item-main" },
      h("span", { class: "chat-item-top" }, h("span", { class: "chat-item-name", text: title }), h("span", { class: "chat-item-time muted", text: shortStamp(e.last_activity_ms) })),
      h("span", { class: "chat-item-bottom" }, h("span", { class: "chat-item-preview muted", text: pv }), badges),
    ),
  );
}

function isGroupDm(chat) {
  const m = S.dmMembers.get(chat.id);
  return m ? m.length > 2 : (chat.member_count || 0) > 2;
}

function renderPane() {
  const open = S.openId !== null;
  show($("empty"), !open);
  show($("chat"), open);
  document.body.classList.toggle("show-chat", open);
}

function renderHeader() {
  const c = S.openChat;
  if (!c) return;
  const dm = c.kind === "dm";
  $("chat-name").textContent = dm ? chatTitle(c) : (c.visibility === "private" ? "🔒 " : "# ") + c.name;
  $("chat-topic").textContent = c.topic || "";
  $("chat-members").textContent = c.member_count ? c.member_count + (c.member_count === 1 ? " member" : " members") : "";
  const joined = c.joined !== false;
  show($("btn-topic"), !dm && joined);
  show($("btn-leave"), !dm && joined);
  show($("join-bar"), !joined);
  show($("composer"), joined);
  show($("composer-hint"), joined);
  $("join-text").textContent = joined ? "" : "You are previewing #" + c.name + ".";
  $("input").placeholder = dm ? "Message " + chatTitle(c) : "Message #" + c.name;
}

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
  return S.openChat && S.openChat.kind === "channel" && (role === "owner" || role === "admin");
}

function renderMessages({ stick = null } = {}) {
  if (!S.openId) return;
  const box = $("messages");
  const atBottom = stick === null ? messagesAtBottom() : stick;
  const els = [];
  const keep = new Map();
  let prev = null;
  let lastDay = null;
  const addDay = (ms) => {
    const k = dayKey(ms);
    if (k === lastDay) return;
    lastDay = k;
    const label = dayLabel(ms);
    const key = "day:" + k;
    let c = S.msgCache.get(key);
    if (!c || c.sig !== label) {
      c = { sig: label, el: h("div", { class: "day-sep", role: "separator" }, h("span", { text: label })) };
    }
    keep.set(key, c);
    els.push(c.el);
    prev = null;
  };
  for (const m of S.msgs) {
    addDay(m.created_ms);
    const cont = prev !== null && prev.author === m.author && !prev.deleted && m.created_ms - prev.created_ms < GROUP_MS;
    const editing = S.editingId === m.id;
    const sig = JSON.stringify([m.body, m.edited_ms, m.deleted, m.state, cont, editing, userName(m.author), canDelete(m), mentionsMe(m), S.me.username]);
    let c = S.msgCache.get(m.id);
    if (!c || c.sig !== sig) c = { sig, el: messageEl(m, cont, editing) };
    keep.set(m.id, c);
    els.push(c.el);
    prev = m;
  }
  for (const p of S.pending) {
    if (p.chat_id !== S.openId || p.hidden) continue;
    addDay(p.created_ms);
    const sig = JSON.stringify([p.status, p.error, p.body]);
    const key = "p:" + p.client_id;
    let c = S.msgCache.get(key);
    if (!c || c.sig !== sig) c = { sig, el: pendingEl(p) };
    keep.set(key, c);
    els.push(c.el);
  }
  S.msgCache = keep;
  reconcile($("msg-list"), els);
  show($("btn-older"), S.hasMore);
  const status = $("msg-status");
  if (S.loadError) {
    status.textContent = S.loadError;
    show(status, true);
  } else if (!S.msgs.length && !S.pending.some((p) => p.chat_id === S.openId)) {
    status.textContent = S.loading ? "Loading…" : "No messages yet. Say hello!";
    show(status, true);
  } else {
    show(status, false);
  }
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function messageEl(m, cont, editing) {
  const own = isMe(m.author);
  const name = userName(m.author);
  const cls = ["msg"];
  if (cont) cls.push("cont");
  if (own) cls.push("own");
  if (m.deleted) cls.push("deleted");
  if (!own && mentionsMe(m)) cls.push("mentions-me");
  const time = h("time", {
    class: "msg-time muted",
    datetime: new Date(m.created_ms).toISOString(),
    title: new Date(m.created_ms).toLocaleString(),
    text: timeOfDay(m.created_ms),
  });
  const head = cont
    ? null
    : h("div", { class: "msg-head" }, h("span", { class: "msg-author", title: m.author, text: name }), time);
  let body;
  if (m.deleted) {
    body = h("div", { class: "msg-body muted", text: "This message was deleted." });
  } else if (editing) {
    body = editBox(m);
  } else {
    body = h("div", { class: "msg-body" });
    renderMessage(body, m.body, document, { isMe: (n) => (S.me && n === S.me.username) || MENTION_ALL.has(n) });
    if (m.edited_ms) body.appendChild(h("span", { class: "edited muted", title: new Date(m.edited_ms).toLocaleString(), text: " (edited)" }));
    if (own) body.appendChild(h("span", { class: "msg-state state-" + m.state, title: m.state, "aria-label": m.state, text: m.state === "sent" ? "✓" : "✓✓" }));
  }
  const tools =
    !m.deleted && !editing
      ? h(
          "div",
          { class: "msg-tools" },
          own ? h("button", { type: "button", class: "tool", title: "Edit", "aria-label": "Edit message", onclick: () => startEdit(m.id), text: "Edit" }) : null,
          canDelete(m) ? h("button", { type: "button", class: "tool danger", title: "Delete", "aria-label": "Delete message", onclick: () => deleteMsg(m), text: "Delete" }) : null,
        )
      : null;
  return h(
    "div",
    { class: cls.join(" "), dataset: { id: m.id } },
    h("div", { class: "msg-gutter" }, cont ? h("span", { class: "gutter-time muted", text: timeOfDay(m.created_ms) }) : avatar(name, m.author)),
    h("div", { class: "msg-main" }, head, body),
    tools && tools.childNodes.length ? tools : null,
  );
}

function pendingEl(p) {
  const failed = p.status === "failed";
  const body = h("div", { class: "msg-body" });
  renderMessage(body, p.body, document, {});
  return h(
    "div",
    { class: "msg own pending" + (failed ? " failed" : "") },
    h("div", { class: "msg-gutter" }),
    h(
      "div",
      { class: "msg-main" },
      body,
      failed
        ? h(
            "div",
            { class: "msg-error" },
            h("span", { text: "Not sent" + (p.error ? ": " + p.error : ".") + " " }),
            h("button", { type: "button", class: "link small", onclick: () => retrySend(p), text: "Retry" }),
            " ",
            h("button", { type: "button", class: "link small", onclick: () => discardSend(p), text: "Discard" }),
          )
        : h("span", { class: "msg-state muted", text: "sending…" }),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Opening a chat, history, read markers

async function openChat(id) {
  const switching = S.openId !== id;
  if (S.openId && switching) S.drafts.set(S.openId, $("input").value);
  const entry = S.entries.get(id);
  S.openGen += 1;
  const gen = S.openGen;
  S.openId = id;
  S.openChat = entry ? entry.chat : null;
  S.msgs = [];
  S.hasMore = false;
  S.loadError = null;
  S.loading = true;
  S.editingId = null;
  S.msgCache = new Map();
  history.replaceState(null, "", "#" + encodeURIComponent(id));
  if (switching) {
    $("input").value = S.drafts.get(id) || "";
    updateCharCount();
  }
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
  if (S.openChat.joined !== false && window.matchMedia("(min-width: 760px)").matches) $("input").focus();
  try {
    const r = await api.messages(id, { limit: PAGE });
    if (gen !== S.openGen) return;
    mergeMessages(r.messages);
    S.hasMore = !!r.has_more;
    S.loadError = null;
  } catch (e) {
    if (gen !== S.openGen) return;
    S.loadError = e.code === "not_a_member" || e.code === "forbidden" ? "Join this channel to see its messages." : "Could not load messages: " + errorText(e);
  }
  S.loading = false;
  renderMessages({ stick: true });
  maybeMarkRead();
}

function closeChat() {
  S.openGen += 1;
  S.openId = null;
  S.openChat = null;
  S.msgs = [];
  S.msgCache = new Map();
  $("msg-list").replaceChildren();
  if (location.hash) history.replaceState(null, "", location.pathname);
  renderPane();
  renderChatList();
}

function mergeMessages(list) {
  for (const m of list) {
    const i = S.msgs.findIndex((x) => x.id === m.id);
    if (i === -1) upsertSorted(S.msgs, m);
    else S.msgs[i] = newerMessage(S.msgs[i], m);
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
    const fromBottom = box.scrollHeight - box.scrollTop;
    mergeMessages(r.messages);
    S.hasMore = !!r.has_more;
    renderMessages({ stick: false });
    box.scrollTop = box.scrollHeight - fromBottom;
  } catch (e) {
    toast("Could not load earlier messages: " + errorText(e), "error");
  } finally {
    S.loadingOlder = false;
  }
}

function newestConfirmed() {
  return S.msgs.length ? S.msgs[S.msgs.length - 1].id : null;
}

async function maybeMarkRead() {
  const id = S.openId;
  if (!id || document.visibilityState !== "visible") return;
  const entry = S.entries.get(id);
  if (!entry) return;
  const newest = newestConfirmed();
  if (!newest) return;
  if (compareIds(newest, entry.last_read) <= 0 && !entry.unread_count && !entry.mention_count) return;
  const sent = S.readSent.get(id);
  if (sent && compareIds(newest, sent) <= 0) return;
  S.readSent.set(id, newest);
  // Show it as read at once; the answer carries the node's counts.
  entry.unread_count = 0;
  entry.mention_count = 0;
  if (compareIds(newest, entry.last_read) > 0) entry.last_read = newest;
  renderChatList();
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
// Sending, editing, deleting

function sendFromComposer() {
  const input = $("input");
  const body = input.value.replace(/\s+$/u, "");
  if (!S.openId || !body.trim()) return;
  const n = charCount(body);
  if (n > MAX_BODY_CHARS) {
    toast("Message is " + n.toLocaleString() + " characters; the limit is " + MAX_BODY_CHARS.toLocaleString() + ".", "error");
    return;
  }
  input.value = "";
  S.drafts.delete(S.openId);
  updateCharCount();
  const p = { client_id: newClientId(), chat_id: S.openId, body, status: "sending", error: null, via: null, timer: null, created_ms: Date.now(), hidden: false };
  S.pending.push(p);
  renderMessages({ stick: true });
  dispatchSend(p);
}

function dispatchSend(p) {
  p.status = "sending";
  p.error = null;
  if (live.send({ type: "send", client_id: p.client_id, chat_id: p.chat_id, body: p.body, reply_to: null })) {
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
    const m = await api.postMessage(p.chat_id, p.body, p.client_id, null);
    confirmSend(p.client_id, m);
  } catch (e) {
    if (!S.pending.includes(p)) return;
    p.status = "failed";
    p.hidden = false;
    p.error = e.status === 0 ? "offline" : errorText(e);
    renderMessages();
  }
}

function confirmSend(clientId, m) {
  const i = S.pending.findIndex((p) => p.client_id === clientId);
  if (i !== -1) {
    clearTimeout(S.pending[i].timer);
    S.pending.splice(i, 1);
  }
  if (m && m.id) applyMessage(m, { fromMe: true });
  else renderMessages();
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
  if (!window.confirm("Delete this message? This cannot be undone.")) return;
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

// ---------------------------------------------------------------------------------------------
// Applying messages and live events

/** Put a (new or changed) message into the open chat and the chat list. */
function applyMessage(m, { created = false, fromMe = false } = {}) {
  if (!m || !m.chat_id) return;
  const entry = S.entries.get(m.chat_id);
  const open = S.openId === m.chat_id;
  // Only take messages inside the loaded window (an edit of an old message we have not
  // loaded must not appear out of context).
  const inWindow =
    open &&
    (created || S.msgs.some((x) => x.id === m.id) || (!S.loading && (!S.hasMore || (S.msgs.length > 0 && compareIds(m.id, S.msgs[0].id) > 0))));
  if (inWindow) {
    mergeMessages([m]);
    if (created && isMe(m.author) && !fromMe) {
      // Our own message arrived as an event before its ack: hide the matching bubble.
      const p = S.pending.find((x) => x.chat_id === m.chat_id && x.status === "sending" && !x.hidden && x.body === m.body);
      if (p) p.hidden = true;
    }
  }
  if (entry) {
    const last = entry.last_message;
    if (!last || compareIds(m.id, last.id) >= 0) {
      entry.last_message = last && last.id === m.id ? newerMessage(last, m) : m;
      if (created || !last) entry.last_activity_ms = Math.max(entry.last_activity_ms || 0, m.created_ms || 0);
    }
    if (created && !isMe(m.author) && !(open && document.visibilityState === "visible")) {
      if (!entry.last_read || compareIds(m.id, entry.last_read) > 0) {
        entry.unread_count = (entry.unread_count || 0) + 1;
        if (mentionsMe(m)) entry.mention_count = (entry.mention_count || 0) + 1;
      }
    }
    renderChatList();
  } else if (created) {
    scheduleRefreshChats(100);
  }
  if (open) {
    renderMessages({ stick: fromMe ? true : null });
    maybeMarkRead();
  }
}

function onEvent(ev) {
  switch (ev.type) {
    case "message.created":
      applyMessage(ev.message, { created: true });
      if (!isMe(ev.message.author)) scheduleRefreshChats();
      break;
    case "message.edited":
    case "message.deleted":
      applyMessage(ev.message, {});
      if (ev.type === "message.deleted") scheduleRefreshChats();
      break;
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
      else if (ev.type === "chat.joined" || c.joined) S.entries.set(c.id, { chat: c, unread_count: 0, mention_count: 0, last_message: null, last_activity_ms: c.created_ms, last_read: null });
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
    } else {
      toast(f.message || f.code || "Server error", "error");
    }
  }
}

function onLiveOpen() {
  // The first connection defines "now" for the event stream: reload anything that may have
  // changed between the initial HTTP load and the hello.
  if (S.firstOpen) {
    S.firstOpen = false;
    refreshChats();
    if (S.openId) catchUpOpenChat();
  }
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

function setConnStatus(status, delay) {
  const dot = $("conn-dot");
  dot.className = "dot " + status;
  const text = $("conn-text");
  if (status === "live") text.textContent = "Connected";
  else if (status === "connecting") text.textContent = "Connecting…";
  else text.textContent = "Offline · retrying in " + Math.max(1, Math.round(delay / 1000)) + " s";
  show($("btn-reconnect"), status === "offline");
}

// ---------------------------------------------------------------------------------------------
// Dialogs: create channel, browse channels, start a DM

function openDialog(id) {
  const d = $(id);
  if (!d.open) d.showModal();
  return d;
}

function wireDialogClose() {
  for (const b of document.querySelectorAll("dialog [data-close]")) {
    b.addEventListener("click", () => b.closest("dialog").close());
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
    S.entries.set(chat.id, { chat, unread_count: 0, mention_count: 0, last_message: null, last_activity_ms: chat.created_ms || Date.now(), last_read: null });
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
      ? h("button", { type: "button", class: "small", onclick: () => { $("dlg-browse").close(); openChat(c.id); }, text: "Open" })
      : h("button", { type: "button", class: "primary small", onclick: (e) => joinChannel(c, e.currentTarget), text: "Join" });
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
    if (btn && $("dlg-browse").open) $("dlg-browse").close();
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
      h("label", { class: "pick-label" }, box, avatar(name, u.id, "small"), h("span", { class: "pick-main" }, h("span", { class: "pick-name", text: name }), h("span", { class: "muted small", text: u.id + (u.status_text ? " · " + u.status_text : "") }))),
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

// ---------------------------------------------------------------------------------------------
// Chat header actions

async function editTopic() {
  const c = S.openChat;
  if (!c) return;
  const topic = window.prompt("Topic for #" + c.name, c.topic || "");
  if (topic === null) return;
  try {
    const chat = await api.updateChat(c.id, { topic: topic.trim() });
    if (S.openId === chat.id) S.openChat = chat;
    if (S.entries.has(chat.id)) S.entries.get(chat.id).chat = chat;
    renderHeader();
    renderChatList();
  } catch (e) {
    toast("Could not change the topic: " + errorText(e), "error");
  }
}

async function leaveChat() {
  const c = S.openChat;
  if (!c || !window.confirm("Leave #" + c.name + "?")) return;
  try {
    await api.leave(c.id);
    S.entries.delete(c.id);
    closeChat();
  } catch (e) {
    toast("Could not leave: " + errorText(e), "error");
  }
}

// ---------------------------------------------------------------------------------------------
// Composer

function updateCharCount() {
  const n = charCount($("input").value);
  const el = $("char-count");
  el.textContent = n > MAX_BODY_CHARS - 5000 ? n.toLocaleString() + " / " + MAX_BODY_CHARS.toLocaleString() : "";
  el.classList.toggle("over", n > MAX_BODY_CHARS);
}

function composerKeydown(e) {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    sendFromComposer();
  } else if (e.key === "ArrowUp" && !e.shiftKey && e.currentTarget.value === "") {
    if (editLastOwn()) e.preventDefault();
  } else if (e.key === "Escape" && S.editingId) {
    cancelEdit();
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring and boot

function wire() {
  $("tab-login").addEventListener("click", () => setAuthMode("login"));
  $("tab-register").addEventListener("click", () => setAuthMode("register"));
  $("auth-form").addEventListener("submit", submitAuth);
  $("btn-logout").addEventListener("click", logout);
  $("btn-new-channel").addEventListener("click", openCreateChannel);
  $("btn-browse").addEventListener("click", openBrowse);
  $("btn-new-dm").addEventListener("click", openNewDm);
  $("form-channel").addEventListener("submit", submitCreateChannel);
  $("form-dm").addEventListener("submit", submitNewDm);
  $("browse-filter").addEventListener("input", renderBrowse);
  $("dm-filter").addEventListener("input", renderDmList);
  $("btn-reconnect").addEventListener("click", () => live.poke());
  $("btn-back").addEventListener("click", () => document.body.classList.remove("show-chat"));
  $("btn-topic").addEventListener("click", editTopic);
  $("btn-leave").addEventListener("click", leaveChat);
  $("btn-join").addEventListener("click", () => S.openChat && joinChannel(S.openChat, $("btn-join")));
  $("btn-older").addEventListener("click", loadOlder);
  $("messages").addEventListener("scroll", () => {
    if ($("messages").scrollTop < 40) loadOlder();
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    sendFromComposer();
  });
  $("input").addEventListener("keydown", composerKeydown);
  $("input").addEventListener("input", updateCharCount);
  wireDialogClose();
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      maybeMarkRead();
      live.poke();
    }
  });
  window.addEventListener("focus", maybeMarkRead);
  window.addEventListener("online", () => live.poke());
  setUnauthenticatedHandler(sessionEnded);
}

async function boot() {
  wire();
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
