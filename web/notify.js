// Desktop notifications and a chat's notification level.

import { api } from "./api.js";
import { renderChatList } from "./chatlist.js";
import { $, show, toast } from "./dom.js";
import { errorText } from "./errors.js";
import { preview } from "./format.js";
import { openChat } from "./history.js";
import { shouldNotify } from "./logic.js";
import { userName } from "./people.js";
import { S } from "./state.js";

export function updateNotifyButton() {
  const can = "Notification" in window;
  show($("btn-notify"), can && Notification.permission === "default" && !!S.me);
}

export async function askNotifyPermission() {
  if (!("Notification" in window)) return;
  try {
    await Notification.requestPermission();
  } catch {
    /* old browsers: callback form; ignore */
  }
  updateNotifyButton();
}

export function notify(ev) {
  const permission = "Notification" in window ? Notification.permission : "denied";
  if (!shouldNotify(ev, { openChatId: S.openId, visible: document.visibilityState === "visible" && document.hasFocus(), permission })) return;
  const m = ev.message;
  const entry = S.entries.get(m.chat_id);
  const chat = entry ? entry.chat : null;
  const title = userName(m.author) + (chat && chat.kind !== "dm" ? " in #" + chat.name : "");
  try {
    const n = new Notification(title, { body: preview(m.body, 140) || "📎 attachment", tag: m.chat_id });
    n.onclick = () => {
      window.focus();
      openChat(m.chat_id);
      n.close();
    };
  } catch {
    /* notifications may be unavailable here */
  }
}

export async function setNotifyLevel() {
  const id = S.openId;
  const level = $("notify-level").value;
  try {
    const e = await api.setNotifications(id, level);
    if (e && e.chat) S.entries.set(e.chat.id, e);
    renderChatList();
    if (level !== "mute") askNotifyPermissionIfDefault();
  } catch (ex) {
    toast("Could not change notifications: " + errorText(ex), "error");
  }
}

function askNotifyPermissionIfDefault() {
  if ("Notification" in window && Notification.permission === "default") askNotifyPermission();
}
