// The profile dialog and this browser as a push device (device.js, sw.js).

import { api } from "./api.js";
import { live } from "./connection.js";
import { b64decode, enrol, firstSightings, loadDevice, pullFromRelay, retire, setPushSubscription } from "./device.js";
import { $, h, openDialog } from "./dom.js";
import { errorText } from "./errors.js";
import { applyMessage } from "./events.js";
import { openChat } from "./history.js";
import { S } from "./state.js";
import { renderAll } from "./views.js";

/** If this browser is enrolled as a device of the user: say so on the WebSocket, keep the
 *  service worker registered, and take what it hands over. */
export async function attachDevice() {
  S.device = null;
  try {
    S.device = await loadDevice(S.me.id);
  } catch {
    /* no IndexedDB (private mode): no push on this browser */
  }
  live.deviceId = S.device ? S.device.id : null;
  if (S.device && "serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { type: "module" }).catch(() => {});
  }
  renderPushStatus();
}

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.addEventListener("message", (e) => {
    const data = e.data || {};
    if (data.type === "pushed") for (const m of data.messages || []) applyMessage(m, { created: true });
    if (data.type === "open_chat" && data.chat_id && S.entries.has(data.chat_id)) openChat(data.chat_id);
  });
}

/** On (re)connecting: whatever the relay still holds for this device came from the node too;
 *  mark it seen (so the service worker shows no notification for it later) and drop it there. */
export async function pullPushed() {
  if (!S.device) return;
  try {
    const messages = await pullFromRelay(S.device);
    await firstSightings(messages.map((m) => m.id));
    for (const m of messages) applyMessage(m, { created: true });
  } catch {
    /* the relay is down: the node has every message anyway */
  }
}

function renderPushStatus(text) {
  const status = $("pf-push-status");
  if (!status) return;
  if (text) status.textContent = text;
  else if (S.device) status.textContent = "This browser is a push device (relay " + S.device.relay + ").";
  else status.textContent = "Not set up on this browser.";
  $("pf-push").textContent = S.device ? "Renew push subscription" : "Enable push on this browser";
}

/** Before this browser is a device: the relay it would enrol with, the node's default first
 *  and the other relays it offers as suggestions (any https relay may be typed when the node
 *  allows it; `chooseRelay` in device.js checks). */
async function renderRelayChoice() {
  const row = $("pf-relay-row");
  row.hidden = true;
  if (S.device) return;
  let settings;
  try {
    settings = await api.pushSettings();
  } catch {
    return;
  }
  const offered = settings.relay_urls || [];
  if (S.device || (!offered.length && !settings.other_relays_allowed)) return;
  $("pf-relay-options").replaceChildren(...offered.map((url) => h("option", { value: url })));
  const input = $("pf-relay");
  input.value = offered[0] || "";
  input.placeholder = "https://relay.example";
  row.hidden = false;
}

/** The user's push devices, each with a Remove button (this browser's removal also deletes
 *  its relay queue and its keys). */
async function renderDevices() {
  const list = $("pf-devices");
  list.replaceChildren();
  let devices = [];
  try {
    devices = (await api.devices()).devices || [];
  } catch {
    return;
  }
  for (const d of devices) {
    const mine = S.device && S.device.id === d.id;
    const label = d.name + (mine ? " (this browser)" : "") + " · since " + new Date(d.created_ms).toLocaleDateString();
    list.appendChild(
      h("li", { class: "device", dataset: { id: d.id } }, h("span", { text: label }), h("button", { type: "button", class: "ghost small", text: "Remove", onclick: () => removeDevice(d.id) })),
    );
  }
}

async function removeDevice(id) {
  try {
    await api.removeDevice(id);
    if (S.device && S.device.id === id) {
      const device = S.device;
      S.device = null;
      live.deviceId = null;
      const registration = "serviceWorker" in navigator ? await navigator.serviceWorker.getRegistration() : null;
      const subscription = registration ? await registration.pushManager.getSubscription() : null;
      if (subscription) await subscription.unsubscribe().catch(() => {});
      await retire(device).catch(() => {});
      live.reconnectNow();
    }
    renderPushStatus();
  } catch (err) {
    renderPushStatus("Could not remove the device: " + errorText(err));
  }
  renderDevices();
}

/** Asked from a click, as browsers require for notification permission and push. */
export async function enablePush() {
  try {
    renderPushStatus("Asking for permission…");
    if ("Notification" in window && Notification.permission === "default") await Notification.requestPermission();
    if (!S.device) {
      renderPushStatus("Creating this browser's keys and registering with the relay…");
      const name = (navigator.userAgentData && navigator.userAgentData.platform) || navigator.platform || "Browser";
      S.device = await enrol(api, S.me.id, ("Browser on " + name).slice(0, 64), $("pf-relay").value);
      $("pf-relay-row").hidden = true;
      live.deviceId = S.device.id;
      live.reconnectNow();
    }
    if (!("serviceWorker" in navigator)) throw new Error("this browser has no service workers");
    renderPushStatus("Starting the service worker…");
    await navigator.serviceWorker.register("/sw.js", { type: "module" });
    const registration = await navigator.serviceWorker.ready;
    renderPushStatus("Subscribing to push…");
    try {
      const subscription = await withTimeout(
        registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64decode(S.device.vapid) }),
        PUSH_SUBSCRIBE_TIMEOUT_MS,
      );
      await setPushSubscription(S.device, subscription);
      renderPushStatus("Push is on for this browser.");
    } catch (err) {
      renderPushStatus("Registered as a device; the browser's push service refused: " + (err && err.message ? err.message : err));
    }
    renderDevices();
  } catch (err) {
    renderPushStatus("Could not set up push: " + errorText(err));
  }
}

/** A browser without a reachable push service may never answer `subscribe`. */
const PUSH_SUBSCRIBE_TIMEOUT_MS = 10000;

function withTimeout(promise, ms) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error("no answer in " + ms / 1000 + " s")), ms))]);
}

export function openProfile() {
  const me = S.me;
  $("pf-display").value = me.display_name || "";
  $("pf-status").value = me.status_text || "";
  $("pf-team").value = me.team || "";
  $("pf-dnd").checked = !!me.dnd;
  $("pf-error").textContent = "";
  renderPushStatus();
  renderRelayChoice();
  renderDevices();
  openDialog("dlg-profile");
  $("pf-display").focus();
}

export async function submitProfile(e) {
  e.preventDefault();
  const fields = { display_name: $("pf-display").value.trim(), status_text: $("pf-status").value.trim(), team: $("pf-team").value.trim() };
  try {
    let me = await api.updateMe(fields);
    if (!!me.dnd !== $("pf-dnd").checked) me = await api.setDnd($("pf-dnd").checked);
    S.me = me;
    S.users.set(me.id, me);
    $("dlg-profile").close();
    renderAll();
  } catch (ex) {
    $("pf-error").textContent = errorText(ex);
  }
}
