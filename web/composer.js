// The composer: character count, @mention completion, keyboard handling, typing indicator.

import { live } from "./connection.js";
import { $, h, show } from "./dom.js";
import { charCount, MAX_BODY_CHARS } from "./format.js";
import { completeMention, mentionQuery, rankUsers, typingText } from "./logic.js";
import { userName } from "./people.js";
import { cancelEdit, editLastOwn, renderReplyBar, sendFromComposer } from "./sending.js";
import { S } from "./state.js";

let typingTimer = null;
export function renderTyping() {
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
export function sendTyping() {
  if (!S.openId || !$("input").value.trim()) return;
  const now = Date.now();
  if (now - lastTypingSent < 3000) return;
  lastTypingSent = now;
  live.send({ type: "typing", chat_id: S.openId });
}

// ---------------------------------------------------------------------------------------------
// Composer

export function updateCharCount() {
  const n = charCount($("input").value);
  const el = $("char-count");
  el.textContent = n > MAX_BODY_CHARS - 5000 ? n.toLocaleString() + " / " + MAX_BODY_CHARS.toLocaleString() : "";
  el.classList.toggle("over", n > MAX_BODY_CHARS);
}

let mentionState = null; // {q, items, sel}

export function updateMentions() {
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

export function hideMentions() {
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

export function composerKeydown(e) {
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
