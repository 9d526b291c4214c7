// The thread panel: a parent message, its replies (also beyond the loaded window) and a composer.

import { api } from "./api.js";
import { $, h, show } from "./dom.js";
import { compareIds } from "./format.js";
import { isContinuation, replyLabel } from "./logic.js";
import { fetchParent, findMessage, messageEl, pendingEl } from "./messages.js";
import { queueSend } from "./sending.js";
import { S } from "./state.js";

export function openThread(id) {
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

export function closeThread() {
  S.threadId = null;
  show($("thread"), false);
  document.body.classList.remove("with-thread");
}

export function renderThread() {
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

export function sendFromThread(e) {
  if (e) e.preventDefault();
  const ta = $("thread-input");
  const body = ta.value.replace(/\s+$/u, "");
  if (!body.trim() || !S.threadId || !S.openId) return;
  ta.value = "";
  queueSend(S.openId, body, S.threadId, []);
}
