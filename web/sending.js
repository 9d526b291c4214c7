// Sending (WebSocket with HTTP fallback), editing, deleting and replying to messages.

import { api, newClientId } from "./api.js";
import { hideMentions, updateCharCount } from "./composer.js";
import { live } from "./connection.js";
import { $, confirmDialog, h, show, toast } from "./dom.js";
import { errorText } from "./errors.js";
import { applyMessage } from "./events.js";
import { renderUploads } from "./files.js";
import { charCount, MAX_BODY_CHARS, preview } from "./format.js";
import { openChat } from "./history.js";
import { renderMessages } from "./messages.js";
import { isMe, userName } from "./people.js";
import { MAX_ATTACHMENTS, S } from "./state.js";
import { renderThread } from "./thread.js";

export function saveDraft() {
  if (!S.openId) return;
  const text = $("input").value;
  if (text || S.replyTo) S.drafts.set(S.openId, { text, replyTo: S.replyTo });
  else S.drafts.delete(S.openId);
}

function readyUploads(chatId) {
  return S.uploads.filter((u) => u.chat_id === chatId && u.state === "done");
}

export function sendFromComposer() {
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

export function queueSend(chatId, body, replyTo, attachments) {
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

export async function sendViaHttp(p) {
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

export function flushQueued() {
  for (const p of S.pending) if (p.status === "queued") dispatchSend(p);
}

export function confirmSend(clientId, m) {
  const i = S.pending.findIndex((p) => p.client_id === clientId);
  if (i !== -1) {
    clearTimeout(S.pending[i].timer);
    S.pending.splice(i, 1);
  }
  if (m && m.id) applyMessage(m, { fromMe: true });
  else renderMessages();
  renderThread();
}

export function retrySend(p) {
  p.hidden = false;
  dispatchSend(p);
  renderMessages();
}

export function discardSend(p) {
  clearTimeout(p.timer);
  S.pending = S.pending.filter((x) => x !== p);
  renderMessages();
  renderThread();
}

export function startEdit(id) {
  S.editingId = id;
  renderMessages({ stick: false });
  const ta = document.querySelector(".msg .edit-box textarea");
  if (ta) {
    ta.focus();
    ta.setSelectionRange(ta.value.length, ta.value.length);
  }
}

export function cancelEdit() {
  S.editingId = null;
  renderMessages({ stick: false });
  $("input").focus();
}

export function editBox(m) {
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

export async function deleteMsg(m) {
  const ok = await confirmDialog("Delete message?", "This message will be deleted for everyone. This cannot be undone.", "Delete");
  if (!ok) return;
  try {
    const updated = await api.deleteMessage(m.chat_id, m.id);
    applyMessage(updated, {});
  } catch (e) {
    toast("Could not delete: " + errorText(e), "error");
  }
}

export function editLastOwn() {
  for (let i = S.msgs.length - 1; i >= 0; i--) {
    const m = S.msgs[i];
    if (isMe(m.author) && !m.deleted) {
      startEdit(m.id);
      return true;
    }
  }
  return false;
}

export function startReply(m) {
  S.replyTo = m;
  renderReplyBar();
  $("input").focus();
}

export function renderReplyBar() {
  const m = S.replyTo;
  show($("reply-bar"), !!m);
  if (!m) return;
  $("reply-to-name").textContent = userName(m.author);
  $("reply-to-text").textContent = preview(m.body, 80);
}
