// Sign in, create account, sign out, and entering or leaving the app.

import { api, ApiError } from "./api.js";
import { clearChatList, refreshChats } from "./chatlist.js";
import { live } from "./connection.js";
import { $, show } from "./dom.js";
import { errorText } from "./errors.js";
import { charCount } from "./format.js";
import { openChat } from "./history.js";
import { updateNotifyButton } from "./notify.js";
import { loadPresence } from "./people.js";
import { attachDevice } from "./profile.js";
import { resetState, S } from "./state.js";
import { renderAll, renderMe, renderPane } from "./views.js";

let authMode = "login";

export function setAuthMode(mode) {
  authMode = mode;
  $("tab-login").setAttribute("aria-selected", String(mode === "login"));
  $("tab-register").setAttribute("aria-selected", String(mode === "register"));
  show($("auth-display-row"), mode === "register");
  show($("auth-hint"), mode === "register");
  $("auth-password").autocomplete = mode === "register" ? "new-password" : "current-password";
  $("auth-submit").textContent = mode === "register" ? "Create account" : "Sign in";
  $("auth-error").textContent = "";
}

export function showAuth(message = "") {
  show($("boot"), false);
  show($("app"), false);
  show($("auth"), true);
  $("auth-error").textContent = message;
  $("auth-password").value = "";
  $("auth-username").focus();
  document.title = "Confab";
}

export async function submitAuth(e) {
  e.preventDefault();
  const username = $("auth-username").value.trim().toLowerCase();
  const password = $("auth-password").value;
  const display = $("auth-display").value.trim();
  const err = $("auth-error");
  err.textContent = "";
  if (!username || !password) {
    err.textContent = "Enter a username and a password.";
    return;
  }
  if (authMode === "register") {
    if (!/^[a-z0-9][a-z0-9._-]{0,31}$/.test(username)) {
      err.textContent = errorText(new ApiError(400, "invalid_username"));
      return;
    }
    if (charCount(password) < 8) {
      err.textContent = errorText(new ApiError(400, "invalid_password"));
      return;
    }
  }
  const btn = $("auth-submit");
  btn.disabled = true;
  try {
    const user = authMode === "register" ? await api.register(username, password, display || undefined) : await api.login(username, password);
    $("auth-password").value = "";
    await enterApp(user);
  } catch (ex) {
    err.textContent = errorText(ex);
  } finally {
    btn.disabled = false;
  }
}

export async function logout() {
  try {
    await api.logout();
  } catch {
    /* the session is gone either way */
  }
  leaveApp();
  showAuth();
}

function leaveApp() {
  live.stop();
  for (const p of S.pending) clearTimeout(p.timer);
  for (const u of S.uploads) if (u.abort) u.abort();
  resetState(S.openGen + 1);
  clearChatList();
  $("msg-list").replaceChildren();
  $("upload-tray").replaceChildren();
  show($("thread"), false);
  show($("search"), false);
  document.body.classList.remove("with-thread");
  for (const d of document.querySelectorAll("dialog[open]")) d.close();
  if (location.hash) history.replaceState(null, "", location.pathname);
}

export function sessionEnded() {
  if (!S.me) return;
  leaveApp();
  showAuth("Your session has ended. Please sign in again.");
}

// ---------------------------------------------------------------------------------------------
// Entering the app and loading data

export async function enterApp(me) {
  S.me = me;
  S.users.set(me.id, me);
  show($("boot"), false);
  show($("auth"), false);
  show($("app"), true);
  renderMe();
  updateNotifyButton();
  await attachDevice();
  live.start();
  await Promise.all([loadUsers(), refreshChats(), loadPresence()]);
  const want = decodeURIComponent(location.hash.replace(/^#/, ""));
  if (want && S.entries.has(want)) openChat(want);
  else renderPane();
}

export async function loadUsers() {
  try {
    const list = await api.users();
    for (const u of list) S.users.set(u.id, u);
    renderAll();
  } catch (e) {
    if (e.status !== 401) console.warn("loading users failed", e);
  }
}
