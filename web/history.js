// Opening a chat, paging its history older and newer, scrolling, and read markers.

import { api } from "./api.js";
import { renderChatList } from "./chatlist.js";
import { hideMentions, renderTyping, updateCharCount } from "./composer.js";
import { $, show, toast } from "./dom.js";
import { errorText } from "./errors.js";
import { renderUploads } from "./files.js";
import { compareIds, mergeCopy, upsertSorted } from "./format.js";
import { firstUnreadId } from "./logic.js";
import { messagesAtBottom, renderMessages, scrollToBottom, updatePill } from "./messages.js";
import { renderReplyBar, saveDraft } from "./sending.js";
import { PAGE, S } from "./state.js";
import { closeThread } from "./thread.js";
import { renderHeader, renderPane } from "./views.js";

export async function openChat(id, { around = null } = {}) {
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

export function closeChat() {
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

export function mergeMessages(list) {
  for (const m of list) {
    if (!m || !m.id) continue;
    const i = S.msgs.findIndex((x) => x.id === m.id);
    if (i === -1) upsertSorted(S.msgs, m);
    else S.msgs[i] = mergeCopy(S.msgs[i], m);
  }
}

export async function loadOlder() {
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

export async function loadNewer() {
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

export function onMessagesScroll() {
  const box = $("messages");
  if (box.scrollTop < 40) loadOlder();
  if (box.scrollHeight - box.scrollTop - box.clientHeight < 200) loadNewer();
  if (messagesAtBottom() && !S.hasNewer && S.unseenNew) {
    S.unseenNew = 0;
    updatePill();
  }
}

/** Keyboard: ↑/↓ in the message log move between messages (their tools show on focus). */
export function messagesKeydown(e) {
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

export function pillClicked() {
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

export async function maybeMarkRead() {
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
