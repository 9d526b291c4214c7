// Names and presence: user names, DM members, presence dots and avatars.

import { api } from "./api.js";
import { renderChatList } from "./chatlist.js";
import { h } from "./dom.js";
import { hashIndex, initials, MENTION_ALL } from "./format.js";
import { localpart } from "./logic.js";
import { renderMessages } from "./messages.js";
import { S } from "./state.js";
import { renderAll, renderHeader } from "./views.js";

export function userName(id) {
  const u = S.users.get(id);
  if (u) return u.display_name || u.username || localpart(id);
  fetchUser(id);
  return localpart(id);
}

function fetchUser(id) {
  if (!id || S.userFetches.has(id)) return;
  S.userFetches.add(id);
  api
    .user(id)
    .then((u) => {
      if (u && u.id) {
        S.users.set(u.id, u);
        renderAll();
      }
    })
    .catch(() => {
      /* unknown or remote user: keep showing the id */
    });
}

export function isMe(id) {
  return S.me !== null && id === S.me.id;
}

export function mentionsMe(m) {
  return !!(m && S.me && (m.mention_all || (Array.isArray(m.mentions) && m.mentions.includes(S.me.id))));
}

/** Whether "@name" names someone here (or everyone), so it is shown as a mention. */
export function knownMention(name) {
  if (MENTION_ALL.has(name) || name === "everyone") return true;
  for (const u of S.users.values()) if (u.username === name) return true;
  return false;
}

export function presenceOf(id) {
  if (isMe(id)) return "online";
  return S.presence.get(id) || "offline";
}

function presenceDot(id) {
  const st = presenceOf(id);
  return h("span", { class: "presence " + st, title: st === "online" ? "Online" : st === "away" ? "Away" : "Offline", "aria-label": st });
}

export function chatTitle(chat) {
  if (!chat) return "";
  if (chat.kind === "dm") {
    const members = S.dmMembers.get(chat.id) || chat.dm_members;
    if (members) {
      const others = members.filter((u) => !isMe(u));
      if (others.length) return others.map(userName).join(", ");
      return userName(S.me.id) + " (you)";
    }
    fetchDmMembers(chat.id);
    return chat.name || "Direct message";
  }
  return chat.name;
}

export function dmOthers(chat) {
  const members = S.dmMembers.get(chat.id) || chat.dm_members || [];
  return members.filter((u) => !isMe(u));
}

function fetchDmMembers(chatId) {
  if (S.dmFetches.has(chatId)) return;
  S.dmFetches.add(chatId);
  api
    .members(chatId)
    .then((ms) => {
      S.dmMembers.set(
        chatId,
        ms.map((m) => m.user_id),
      );
      renderChatList();
      if (S.openId === chatId) renderHeader();
    })
    .catch(() => S.dmFetches.delete(chatId));
}

export function avatar(name, key, extra = "") {
  return h("span", { class: "avatar av" + hashIndex(key || name, 8) + (extra ? " " + extra : ""), "aria-hidden": "true", text: initials(name) });
}

export function avatarWithPresence(name, userId, extra = "") {
  return h("span", { class: "avatar-wrap" }, avatar(name, userId, extra), presenceDot(userId));
}

export async function loadPresence() {
  try {
    const list = await api.presence();
    for (const p of list) S.presence.set(p.user_id, p.status);
    renderChatList();
    renderMessages();
  } catch {
    /* presence is decoration */
  }
}
