// The sidebar's chat list: loading GET /chats (coalesced) and rendering channels and DMs.

import { api } from "./api.js";
import { $, h, reconcile } from "./dom.js";
import { compareIds, preview, shortStamp } from "./format.js";
import { maybeMarkRead, openChat } from "./history.js";
import { sortByActivity, tabTitle, unreadTotals } from "./logic.js";
import { avatar, avatarWithPresence, chatTitle, dmOthers, isMe, presenceOf, userName } from "./people.js";
import { S } from "./state.js";
import { renderHeader } from "./views.js";

// GET /chats, coalesced: at most one in flight, and one more if anything changed meanwhile.
let chatsInFlight = null;
let chatsDirty = false;
let chatsTimer = null;

export function refreshChats() {
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

export function scheduleRefreshChats(delay = 800) {
  clearTimeout(chatsTimer);
  chatsTimer = setTimeout(() => refreshChats(), delay);
}

export function renderChatList() {
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

export function addChatEntry(chat) {
  if (!S.entries.has(chat.id)) {
    S.entries.set(chat.id, { chat, unread_count: 0, mention_count: 0, last_message: null, last_activity_ms: chat.created_ms || Date.now(), last_read: null, notification_level: chat.kind === "dm" ? "all" : "mentions" });
  } else {
    S.entries.get(chat.id).chat = chat;
  }
  renderChatList();
  scheduleRefreshChats(300);
}

/** Sign-out: no pending refresh, and an empty list with no cached items. */
export function clearChatList() {
  clearTimeout(chatsTimer);
  $("chat-list").replaceChildren();
  chatItemCache.clear();
  sidebarSections.clear();
}
