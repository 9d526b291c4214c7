// Rendering the open chat's messages: groups, day separators, pending sends, the new-messages pill.

import { api } from "./api.js";
import { $, h, reconcile, show } from "./dom.js";
import { attachmentsEl } from "./files.js";
import { dayKey, dayLabel, MENTION_ALL, preview, renderMessage, timeOfDay } from "./format.js";
import { isContinuation, replyLabel, threadReplies } from "./logic.js";
import { avatarWithPresence, isMe, knownMention, mentionsMe, presenceOf, userName } from "./people.js";
import { openPicker, reactionsEl } from "./reactions.js";
import { deleteMsg, discardSend, editBox, retrySend, startEdit, startReply } from "./sending.js";
import { S } from "./state.js";
import { openThread, renderThread } from "./thread.js";

export function messagesAtBottom() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 60;
}

export function scrollToBottom() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function canDelete(m) {
  if (!S.me || m.deleted) return false;
  if (isMe(m.author) || S.me.is_admin) return true;
  const role = S.openChat && S.openChat.my_role;
  return !!S.openChat && S.openChat.kind === "channel" && (role === "owner" || role === "admin");
}

export function findMessage(id) {
  return S.msgs.find((x) => x.id === id) || S.parents.get(id) || (S.threadMsgs && S.threadMsgs.get(id)) || null;
}

export function fetchParent(chatId, id) {
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

export function renderMessages({ stick = null } = {}) {
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

export function updatePill() {
  const pill = $("new-pill");
  const show_ = S.openId !== null && (S.unseenNew > 0 || (S.hasNewer && S.unseenNew > 0));
  pill.hidden = !show_;
  if (show_) pill.textContent = S.unseenNew > 1 ? S.unseenNew + " new messages ↓" : "New messages ↓";
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

export function messageEl(m, { cont, editing, parent, nReplies, inThread = false }) {
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

export function pendingEl(p) {
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
