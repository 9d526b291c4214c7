// The quick switcher (Ctrl/⌘K): chats and people, fuzzy matched, keyboard only.

import { openDmWith } from "./dialogs.js";
import { $, h, openDialog } from "./dom.js";
import { openChat } from "./history.js";
import { fuzzyScore, sortByActivity } from "./logic.js";
import { chatTitle, dmOthers, isMe } from "./people.js";
import { S } from "./state.js";

let switchItems = [];
let switchSel = 0;

export function openSwitcher() {
  if (!S.me) return;
  $("switch-input").value = "";
  openDialog("dlg-switch");
  renderSwitcher();
  $("switch-input").focus();
}

export function renderSwitcher() {
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

export function switcherKeydown(e) {
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
