// Reactions: chips under a message, the emoji picker with recent emoji, toggling your reaction.

import { api } from "./api.js";
import { $, h, toast } from "./dom.js";
import { DEFAULT_RECENT, searchEmoji } from "./emoji.js";
import { errorText } from "./errors.js";
import { pushRecent, toggleReaction } from "./logic.js";
import { findMessage, renderMessages } from "./messages.js";
import { userName } from "./people.js";
import { S } from "./state.js";
import { renderThread } from "./thread.js";

export function reactionsEl(m) {
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

export function openPicker(m) {
  pickerFor = m;
  $("emoji-search").value = "";
  renderPicker();
  $("emoji-picker").showModal();
  $("emoji-search").focus();
}

function emojiButton(e, name) {
  return h("button", { type: "button", class: "emoji-btn", dataset: { emoji: e }, title: ":" + name + ":", "aria-label": name.replace(/_/g, " "), onclick: () => pickEmoji(e), text: e });
}

export function renderPicker() {
  const q = $("emoji-search").value;
  const names = new Map(searchEmoji("").map((p) => [p.emoji, p.name]));
  $("emoji-recent").replaceChildren(...recentEmoji().slice(0, 12).map((e) => emojiButton(e, names.get(e) || e)));
  const list = searchEmoji(q);
  $("emoji-grid").replaceChildren(...(list.length ? list.map((p) => emojiButton(p.emoji, p.name)) : [h("p", { class: "muted small", text: "No emoji matches." })]));
}

export function pickEmoji(e) {
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

export function replaceLocal(m) {
  const i = S.msgs.findIndex((x) => x.id === m.id);
  if (i !== -1) S.msgs[i] = m;
  if (S.threadMsgs && S.threadMsgs.has(m.id)) S.threadMsgs.set(m.id, m);
  if (S.parents.has(m.id)) S.parents.set(m.id, m);
  renderMessages();
  renderThread();
}
