// Applying messages and live events (WebSocket events and frames) to the state and the page.

import { sessionEnded } from "./auth.js";
import { renderChatList, scheduleRefreshChats } from "./chatlist.js";
import { renderTyping } from "./composer.js";
import { $, toast } from "./dom.js";
import { compareIds, newerMessage } from "./format.js";
import { closeChat, maybeMarkRead, mergeMessages, openChat } from "./history.js";
import { findMessage, messagesAtBottom, renderMessages } from "./messages.js";
import { notify } from "./notify.js";
import { isMe, mentionsMe } from "./people.js";
import { replaceLocal } from "./reactions.js";
import { confirmSend } from "./sending.js";
import { S } from "./state.js";
import { renderThread } from "./thread.js";
import { renderAll, renderHeader } from "./views.js";

/** Put a (new or changed) message into the open chat and the chat list. */
export function applyMessage(m, { created = false, fromMe = false } = {}) {
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

export function onEvent(ev) {
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

export function onFrame(f) {
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
