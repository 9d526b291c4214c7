// Dialogs: create a channel, browse and join channels, start a DM, edit the topic, leave.

import { api } from "./api.js";
import { addChatEntry, renderChatList } from "./chatlist.js";
import { $, confirmDialog, h, openDialog, toast } from "./dom.js";
import { errorText } from "./errors.js";
import { closeChat, openChat } from "./history.js";
import { avatarWithPresence, isMe } from "./people.js";
import { S } from "./state.js";
import { renderHeader } from "./views.js";

export function openCreateChannel() {
  $("form-channel").reset();
  $("ch-error").textContent = "";
  openDialog("dlg-channel");
  $("ch-name").focus();
}

export async function submitCreateChannel(e) {
  e.preventDefault();
  const name = $("ch-name").value.trim();
  const topic = $("ch-topic").value.trim();
  const visibility = new FormData($("form-channel")).get("visibility") === "private" ? "private" : "public";
  const err = $("ch-error");
  if (!name) {
    err.textContent = "Give the channel a name.";
    return;
  }
  const btn = $("form-channel").querySelector("button[type=submit]");
  btn.disabled = true;
  try {
    const chat = await api.createChannel(name, topic, visibility);
    $("dlg-channel").close();
    addChatEntry(chat);
    openChat(chat.id);
  } catch (ex) {
    err.textContent = errorText(ex);
  } finally {
    btn.disabled = false;
  }
}

let browseChannels = [];

/**
 * Opens the picker dialog `dlg-<name>` with its filter and error line cleared and "Loading…" in
 * its list, then runs `load` to fill it; a failure empties the list and says why.
 */
async function openPicker(name, load) {
  $(name + "-filter").value = "";
  $(name + "-error").textContent = "";
  $(name + "-list").replaceChildren(h("li", { class: "muted pad", text: "Loading…" }));
  openDialog("dlg-" + name);
  $(name + "-filter").focus();
  try {
    await load();
  } catch (e) {
    $(name + "-list").replaceChildren();
    $(name + "-error").textContent = errorText(e);
  }
}

export async function openBrowse() {
  await openPicker("browse", async () => {
    browseChannels = await api.channels();
    renderBrowse();
  });
}

export function renderBrowse() {
  const q = $("browse-filter").value.trim().toLowerCase();
  const list = browseChannels
    .filter((c) => !q || c.name.toLowerCase().includes(q) || (c.topic || "").toLowerCase().includes(q))
    .sort((a, b) => a.name.localeCompare(b.name));
  const items = list.map((c) => {
    const action = c.joined
      ? h("button", { type: "button", class: "small", "aria-label": "Open " + c.name, onclick: () => { $("dlg-browse").close(); openChat(c.id); }, text: "Open" })
      : h("button", { type: "button", class: "primary small join", "aria-label": "Join " + c.name, onclick: (e) => joinChannel(c, e.currentTarget), text: "Join" });
    return h(
      "li",
      { class: "pick" },
      h("span", { class: "chan-icon", "aria-hidden": "true", text: c.visibility === "private" ? "🔒" : "#" }),
      h(
        "span",
        { class: "pick-main" },
        h("span", { class: "pick-name", text: c.name }),
        h("span", { class: "muted small", text: (c.member_count || 0) + (c.member_count === 1 ? " member" : " members") + (c.topic ? " · " + c.topic : "") }),
      ),
      action,
    );
  });
  $("browse-list").replaceChildren(...(items.length ? items : [h("li", { class: "muted pad", text: browseChannels.length ? "No channel matches." : "No channels yet. Create one!" })]));
}

export async function joinChannel(c, btn) {
  if (btn) btn.disabled = true;
  try {
    const chat = await api.join(c.id);
    if ($("dlg-browse").open) $("dlg-browse").close();
    addChatEntry(chat);
    openChat(chat.id);
  } catch (e) {
    if (btn) btn.disabled = false;
    const msg = "Could not join: " + errorText(e);
    if ($("dlg-browse").open) $("browse-error").textContent = msg;
    else toast(msg, "error");
  }
}

let dmUsers = [];
const dmPicked = new Set();

export async function openNewDm() {
  dmPicked.clear();
  updateDmButton();
  await openPicker("dm", async () => {
    const list = await api.users();
    for (const u of list) S.users.set(u.id, u);
    dmUsers = list.filter((u) => !isMe(u.id) && !u.disabled);
    renderDmList();
  });
}

export function renderDmList() {
  const q = $("dm-filter").value.trim().toLowerCase();
  const list = dmUsers
    .filter((u) => !q || u.id.toLowerCase().includes(q) || (u.display_name || "").toLowerCase().includes(q))
    .sort((a, b) => (a.display_name || a.username).localeCompare(b.display_name || b.username));
  const items = list.map((u) => {
    const box = h("input", { type: "checkbox", value: u.id, "aria-label": "Pick " + u.id });
    box.checked = dmPicked.has(u.id);
    box.addEventListener("change", () => {
      if (box.checked) dmPicked.add(u.id);
      else dmPicked.delete(u.id);
      updateDmButton();
    });
    const name = u.display_name || u.username;
    return h(
      "li",
      { class: "pick" },
      h("label", { class: "pick-label" }, box, avatarWithPresence(name, u.id, "small"), h("span", { class: "pick-main" }, h("span", { class: "pick-name", text: name }), h("span", { class: "muted small", text: u.id + (u.status_text ? " · " + u.status_text : "") }))),
    );
  });
  $("dm-list").replaceChildren(...(items.length ? items : [h("li", { class: "muted pad", text: dmUsers.length ? "Nobody matches." : "Nobody else is here yet." })]));
}

function updateDmButton() {
  const n = dmPicked.size;
  $("dm-start").disabled = n < 1 || n > 8;
  $("dm-start").textContent = n > 1 ? "Start group (" + n + ")" : "Start";
  $("dm-error").textContent = n > 8 ? "A direct message can include at most 8 other people." : "";
}

export async function submitNewDm(e) {
  e.preventDefault();
  const ids = [...dmPicked];
  if (ids.length < 1 || ids.length > 8) return;
  const btn = $("dm-start");
  btn.disabled = true;
  try {
    const chat = await api.openDm(ids);
    S.dmMembers.set(chat.id, [S.me.id, ...ids]);
    $("dlg-dm").close();
    addChatEntry(chat);
    openChat(chat.id);
  } catch (ex) {
    $("dm-error").textContent = errorText(ex);
  } finally {
    btn.disabled = false;
  }
}

export async function openDmWith(userId) {
  try {
    const chat = await api.openDm([userId]);
    S.dmMembers.set(chat.id, [S.me.id, userId]);
    addChatEntry(chat);
    openChat(chat.id);
  } catch (e) {
    toast("Could not open the conversation: " + errorText(e), "error");
  }
}

export function editTopic() {
  const c = S.openChat;
  if (!c) return;
  $("topic-input").value = c.topic || "";
  $("topic-error").textContent = "";
  $("dlg-topic-title").textContent = "Topic for #" + c.name;
  openDialog("dlg-topic");
  $("topic-input").focus();
}

export async function submitTopic(e) {
  e.preventDefault();
  const c = S.openChat;
  if (!c) return;
  try {
    const chat = await api.updateChat(c.id, { topic: $("topic-input").value.trim() });
    $("dlg-topic").close();
    if (S.openId === chat.id) S.openChat = chat;
    if (S.entries.has(chat.id)) S.entries.get(chat.id).chat = chat;
    renderHeader();
    renderChatList();
  } catch (ex) {
    $("topic-error").textContent = errorText(ex);
  }
}

export async function leaveChat() {
  const c = S.openChat;
  if (!c) return;
  if (!(await confirmDialog("Leave #" + c.name + "?", "You can join public channels again from the channel browser.", "Leave"))) return;
  try {
    await api.leave(c.id);
    S.entries.delete(c.id);
    closeChat();
  } catch (e) {
    toast("Could not leave: " + errorText(e), "error");
  }
}
