// The live connection: the WebSocket client, its status and banner, catching up, sleep detection.

import { api, Live } from "./api.js";
import { loadUsers, sessionEnded } from "./auth.js";
import { refreshChats } from "./chatlist.js";
import { $, show } from "./dom.js";
import { onEvent, onFrame } from "./events.js";
import { maybeMarkRead, mergeMessages, openChat } from "./history.js";
import { sleptFor } from "./logic.js";
import { renderMessages } from "./messages.js";
import { loadPresence } from "./people.js";
import { pullPushed } from "./profile.js";
import { flushQueued, sendViaHttp } from "./sending.js";
import { PAGE, S } from "./state.js";

export const live = new Live({
  onStatus: setConnStatus,
  onOpen: onLiveOpen,
  onClosed: onLiveClosed,
  onLost: onLiveLost,
  onEvent: onEvent,
  onResync: onResync,
  onFrame: onFrame,
});

function onLiveOpen() {
  S.wasLive = true;
  if (S.firstOpen) {
    // The first connection defines "now" for the event stream: reload anything that may
    // have changed between the initial HTTP load and the hello.
    S.firstOpen = false;
    refreshChats();
    if (S.openId) catchUpOpenChat();
  }
  loadPresence();
  flushQueued();
  pullPushed();
}

function onLiveClosed() {
  // Sends that were in flight on the socket: finish them over HTTP (idempotent by client_id).
  for (const p of S.pending) {
    if (p.status === "sending" && p.via === "ws") sendViaHttp(p);
  }
}

let lostCheck = null;
function onLiveLost() {
  if (lostCheck) return;
  lostCheck = api
    .me()
    .then((me) => {
      if (S.me && me && me.id === S.me.id) S.me = me;
    })
    .catch((e) => {
      if (e.status === 401) sessionEnded();
    })
    .finally(() => {
      lostCheck = null;
    });
}

function onResync() {
  refreshChats();
  loadUsers();
  if (S.openId) openChat(S.openId);
}

async function catchUpOpenChat() {
  const id = S.openId;
  const gen = S.openGen;
  if (S.hasNewer) return;
  try {
    const r = await api.messages(id, { limit: PAGE });
    if (gen !== S.openGen) return;
    mergeMessages(r.messages);
    renderMessages();
    maybeMarkRead();
  } catch {
    /* the next event or reload heals it */
  }
}

let bannerTimer = null;
function setConnStatus(status, delay) {
  document.body.dataset.conn = status;
  const dot = $("conn-dot");
  dot.className = "dot " + status;
  const text = $("conn-text");
  clearInterval(bannerTimer);
  const banner = $("conn-banner");
  if (status === "live") {
    text.textContent = "Connected";
    show(banner, false);
  } else if (status === "connecting") {
    text.textContent = "Connecting…";
    if (S.wasLive) {
      $("conn-banner-text").textContent = "Reconnecting…";
      show(banner, true);
    }
  } else {
    const until = Date.now() + delay;
    const tick = () => {
      const s = Math.max(1, Math.round((until - Date.now()) / 1000));
      text.textContent = "Offline · retrying in " + s + " s";
      $("conn-banner-text").textContent = "Connection lost. Reconnecting in " + s + " s… Messages you send are kept until then.";
    };
    tick();
    bannerTimer = setInterval(tick, 1000);
    show(banner, true);
  }
  show($("btn-reconnect"), status === "offline");
}

// Sleep detection: after a suspend the socket may be dead without a close; reconnect.
let lastTick = Date.now();
setInterval(() => {
  const now = Date.now();
  if (sleptFor(now - lastTick, 5000) && S.me) {
    live.reconnectNow();
    refreshChats();
  }
  lastTick = now;
}, 5000);
