// Rendering the signed-in user, which pane shows, and the open chat's header.

import { renderChatList } from "./chatlist.js";
import { $, show } from "./dom.js";
import { hashIndex, initials } from "./format.js";
import { renderMessages } from "./messages.js";
import { chatTitle, dmOthers, presenceOf } from "./people.js";
import { S } from "./state.js";
import { renderThread } from "./thread.js";

export function renderAll() {
  if (!S.me) return;
  renderMe();
  renderChatList();
  renderHeader();
  renderMessages();
  renderThread();
}

export function renderMe() {
  if (!S.me) return;
  const name = S.me.display_name || S.me.username;
  $("me-name").textContent = name;
  const dnd = S.me.dnd ? "🔕 Do not disturb" : "";
  $("me-status").textContent = [dnd, S.me.status_text].filter(Boolean).join(" · ") || S.me.id + (S.me.is_admin ? " · admin" : "");
  const av = $("me-avatar");
  av.className = "avatar av" + hashIndex(S.me.id, 8);
  av.textContent = initials(name);
  $("me-presence").className = "presence " + (S.me.dnd ? "dnd" : "online");
}

export function renderPane() {
  const open = S.openId !== null;
  const searching = !$("search").hidden;
  show($("empty"), !open && !searching);
  show($("chat"), open && !searching);
  document.body.classList.toggle("show-chat", open || searching);
}

export function renderHeader() {
  const c = S.openChat;
  if (!c) return;
  const dm = c.kind === "dm";
  $("chat-name").textContent = dm ? chatTitle(c) : (c.visibility === "private" ? "🔒 " : "# ") + c.name;
  let sub = c.topic || "";
  if (dm) {
    const others = dmOthers(c);
    if (others.length === 1) {
      const u = S.users.get(others[0]);
      const st = presenceOf(others[0]);
      sub = (st === "online" ? "● Online" : st === "away" ? "◐ Away" : "○ Offline") + (u && u.status_text ? " · " + u.status_text : "");
    }
  }
  $("chat-topic").textContent = sub;
  $("chat-members").textContent = !dm && c.member_count ? c.member_count + (c.member_count === 1 ? " member" : " members") : "";
  const joined = c.joined !== false;
  const entry = S.entries.get(c.id);
  show($("btn-topic"), !dm && joined);
  show($("btn-leave"), !dm && joined);
  show($("join-bar"), !joined);
  show($("composer"), joined);
  show($("composer-hint"), joined);
  const sel = $("notify-level");
  show(sel.parentElement, joined && !!entry);
  if (entry) sel.value = entry.notification_level || (dm ? "all" : "mentions");
  $("join-text").textContent = joined ? "" : "You are previewing #" + c.name + ".";
  $("input").placeholder = dm ? "Message " + chatTitle(c) : "Message #" + c.name;
}
