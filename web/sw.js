// The service worker: wakes on a Web Push from the device's relay (a content-free
// `{"v":1,"pending":N}`), fetches and opens the sealed envelopes, and shows one notification per
// message it has not shown before. Clicking a notification opens its chat.

import { b64decode, firstSightings, loadAnyDevice, pullFromRelay, setPushSubscription } from "./device.js";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  event.waitUntil(onPush());
});

async function onPush() {
  const device = await loadAnyDevice();
  if (!device) return;
  let messages = [];
  try {
    messages = await pullFromRelay(device);
  } catch {
    // A push must show something (userVisibleOnly); say there is news without content.
    await self.registration.showNotification("Confab", { body: "New messages", tag: "confab-pending" });
    return;
  }
  const fresh = new Set(await firstSightings(messages.map((m) => m.id)));
  const shown = messages.filter((m) => fresh.has(m.id));
  for (const m of shown) {
    await self.registration.showNotification(m.author, {
      body: m.body ? m.body.slice(0, 200) : "📎 attachment",
      tag: m.id,
      data: { chat_id: m.chat_id, message_id: m.id },
    });
  }
  // The page, if open, shows them too (deduped by id there).
  const pages = await self.clients.matchAll({ type: "window" });
  for (const page of pages) page.postMessage({ type: "pushed", messages });
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const chat = event.notification.data && event.notification.data.chat_id;
  const url = "/" + (chat ? "#" + encodeURIComponent(chat) : "");
  event.waitUntil(
    (async () => {
      // An open app page switches to the chat; other pages of this origin (a media file, say)
      // are left alone and a new app window opens.
      const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const app = pages.find((page) => new URL(page.url).pathname === "/");
      if (app) {
        app.postMessage({ type: "open_chat", chat_id: chat });
        return app.focus().catch(() => {});
      }
      return self.clients.openWindow(url);
    })(),
  );
});

self.addEventListener("pushsubscriptionchange", (event) => {
  event.waitUntil(
    (async () => {
      const device = await loadAnyDevice();
      if (!device || !device.vapid) return;
      const subscription = await self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64decode(device.vapid) });
      await setPushSubscription(device, subscription);
    })(),
  );
});
