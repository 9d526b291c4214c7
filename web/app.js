// Confab browser client: the entry point (index.html loads it). Wires the page's controls to the
// modules below and boots. Plain ES modules, no build step, no third-party code.
// Runs under a strict CSP: no inline script or style, no eval, and message text is only ever
// placed into the page as text nodes (see format.js).

import { api, ApiError, setUnauthenticatedHandler } from "./api.js";
import { enterApp, logout, sessionEnded, setAuthMode, showAuth, submitAuth } from "./auth.js";
import { composerKeydown, hideMentions, sendTyping, updateCharCount, updateMentions } from "./composer.js";
import { live } from "./connection.js";
import { editTopic, joinChannel, leaveChat, openBrowse, openCreateChannel, openNewDm, renderBrowse, renderDmList, submitCreateChannel, submitNewDm, submitTopic } from "./dialogs.js";
import { $, wireDialogClose } from "./dom.js";
import { errorText } from "./errors.js";
import { addFiles, wireDrop } from "./files.js";
import { loadNewer, loadOlder, maybeMarkRead, messagesKeydown, onMessagesScroll, pillClicked } from "./history.js";
import { askNotifyPermission, setNotifyLevel } from "./notify.js";
import { enablePush, openProfile, submitProfile } from "./profile.js";
import { pickEmoji, renderPicker } from "./reactions.js";
import { closeSearch, runSearch, search, submitSearch } from "./search.js";
import { renderReplyBar, sendFromComposer } from "./sending.js";
import { S } from "./state.js";
import { openSwitcher, renderSwitcher, switcherKeydown } from "./switcher.js";
import { closeThread, sendFromThread } from "./thread.js";

function globalKeydown(e) {
  if ((e.ctrlKey || e.metaKey) && !e.altKey && (e.key === "k" || e.key === "K")) {
    if (!S.me) return;
    e.preventDefault();
    openSwitcher();
  } else if (e.key === "Escape" && !document.querySelector("dialog[open]")) {
    if (!$("search").hidden) closeSearch();
    else if (S.threadId) closeThread();
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring and boot

function wire() {
  $("tab-login").addEventListener("click", () => setAuthMode("login"));
  $("tab-register").addEventListener("click", () => setAuthMode("register"));
  $("auth-form").addEventListener("submit", submitAuth);
  $("btn-logout").addEventListener("click", logout);
  $("btn-profile").addEventListener("click", openProfile);
  $("form-profile").addEventListener("submit", submitProfile);
  $("btn-new-channel").addEventListener("click", openCreateChannel);
  $("btn-browse").addEventListener("click", openBrowse);
  $("btn-new-dm").addEventListener("click", openNewDm);
  $("btn-switch").addEventListener("click", openSwitcher);
  $("btn-notify").addEventListener("click", askNotifyPermission);
  $("pf-push").addEventListener("click", enablePush);
  $("form-channel").addEventListener("submit", submitCreateChannel);
  $("form-dm").addEventListener("submit", submitNewDm);
  $("form-topic").addEventListener("submit", submitTopic);
  $("browse-filter").addEventListener("input", renderBrowse);
  $("dm-filter").addEventListener("input", renderDmList);
  $("switch-input").addEventListener("input", renderSwitcher);
  $("switch-input").addEventListener("keydown", switcherKeydown);
  $("emoji-search").addEventListener("input", renderPicker);
  $("emoji-search").addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      const first = document.querySelector("#emoji-grid .emoji-btn");
      if (first) pickEmoji(first.dataset.emoji);
    }
  });
  $("btn-lightbox-close").addEventListener("click", () => $("lightbox").close());
  $("btn-reconnect").addEventListener("click", () => live.poke());
  $("btn-banner-retry").addEventListener("click", () => live.poke());
  $("btn-back").addEventListener("click", () => document.body.classList.remove("show-chat"));
  $("btn-topic").addEventListener("click", editTopic);
  $("btn-leave").addEventListener("click", leaveChat);
  $("notify-level").addEventListener("change", setNotifyLevel);
  $("btn-join").addEventListener("click", () => S.openChat && joinChannel(S.openChat, $("btn-join")));
  $("btn-older").addEventListener("click", loadOlder);
  $("btn-newer").addEventListener("click", loadNewer);
  $("new-pill").addEventListener("click", pillClicked);
  $("messages").addEventListener("scroll", onMessagesScroll);
  $("messages").addEventListener("keydown", messagesKeydown);
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    sendFromComposer();
  });
  $("input").addEventListener("keydown", composerKeydown);
  $("input").addEventListener("input", () => {
    updateCharCount();
    sendTyping();
    updateMentions();
  });
  $("input").addEventListener("blur", () => setTimeout(hideMentions, 150));
  $("btn-attach").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (e) => {
    addFiles(e.target.files);
    e.target.value = "";
  });
  $("btn-reply-cancel").addEventListener("click", () => {
    S.replyTo = null;
    renderReplyBar();
  });
  $("btn-thread-close").addEventListener("click", closeThread);
  $("thread-form").addEventListener("submit", sendFromThread);
  $("thread-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) sendFromThread(e);
  });
  $("search-form").addEventListener("submit", submitSearch);
  $("btn-search-close").addEventListener("click", closeSearch);
  $("btn-search-more").addEventListener("click", () => {
    search.offset = search.hits.length;
    runSearch();
  });
  for (const id of ["sf-chat", "sf-author", "sf-has-file", "sf-from", "sf-to", "sf-order"]) {
    $(id).addEventListener("change", () => {
      if (!search.q) return;
      search.offset = 0;
      runSearch();
    });
  }
  wireDialogClose();
  wireDrop();
  document.addEventListener("keydown", globalKeydown);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      maybeMarkRead();
      live.poke();
    }
  });
  window.addEventListener("focus", maybeMarkRead);
  window.addEventListener("online", () => live.reconnectNow());
  // Leaving the page may keep it alive in the back/forward cache with its WebSocket open, and
  // a device with an open socket is not pushed to: close it, and reconnect if the page returns.
  window.addEventListener("pagehide", () => live.stop());
  window.addEventListener("pageshow", (e) => {
    if (e.persisted && S.me) live.start();
  });
  setUnauthenticatedHandler(sessionEnded);
}

async function boot() {
  wire();
  if (/Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent)) $("switch-kbd").textContent = "⌘K";
  setAuthMode("login");
  try {
    const me = await api.me();
    await enterApp(me);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) showAuth();
    else showAuth(errorText(e));
  }
}

boot();
