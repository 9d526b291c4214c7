// Search: the filters, running GET /search, results with highlighted snippets, jumping to a hit.

import { api } from "./api.js";
import { $, h, show } from "./dom.js";
import { errorText } from "./errors.js";
import { dayLabel, preview, timeOfDay } from "./format.js";
import { maybeMarkRead, openChat } from "./history.js";
import { dateInputToMs, searchQueryString, snippetParts, sortByActivity } from "./logic.js";
import { avatar, chatTitle, isMe, userName } from "./people.js";
import { S } from "./state.js";
import { renderPane } from "./views.js";

export const search = { q: "", offset: 0, hits: [], total: 0, gen: 0 };

function fillSearchFilters() {
  const chatSel = $("sf-chat");
  const cur = chatSel.value;
  chatSel.replaceChildren(h("option", { value: "", text: "all chats" }), ...sortByActivity([...S.entries.values()]).map((e) => h("option", { value: e.chat.id, text: (e.chat.kind === "dm" ? "@ " : "# ") + chatTitle(e.chat) })));
  chatSel.value = cur;
  const authorSel = $("sf-author");
  const curA = authorSel.value;
  const users = [...S.users.values()].sort((a, b) => (a.display_name || a.username).localeCompare(b.display_name || b.username));
  authorSel.replaceChildren(h("option", { value: "", text: "anyone" }), ...users.map((u) => h("option", { value: u.id, text: (u.display_name || u.username) + (isMe(u.id) ? " (you)" : "") })));
  authorSel.value = curA;
}

function searchFilters() {
  const hf = $("sf-has-file").value;
  return {
    q: search.q,
    chat_id: $("sf-chat").value || null,
    author: $("sf-author").value || null,
    from_ms: dateInputToMs($("sf-from").value),
    to_ms: dateInputToMs($("sf-to").value, true),
    has_attachment: hf === "true" ? true : hf === "false" ? false : null,
    order: $("sf-order").value,
    offset: search.offset,
    limit: 20,
  };
}

export function submitSearch(e) {
  if (e) e.preventDefault();
  const q = $("search-input").value.trim();
  if (!q) return;
  search.q = q;
  search.offset = 0;
  search.hits = [];
  if ($("search").hidden) {
    fillSearchFilters();
    if (S.openId && !$("sf-chat").value) $("sf-chat").value = "";
  }
  show($("search"), true);
  renderPane();
  runSearch();
}

export async function runSearch() {
  const gen = ++search.gen;
  $("search-title").textContent = "Results for “" + search.q + "”";
  $("search-status").textContent = "Searching…";
  if (search.offset === 0) $("search-results").replaceChildren();
  try {
    const r = await api.search(searchQueryString(searchFilters()));
    if (gen !== search.gen) return;
    search.total = r.total || 0;
    search.hits = search.offset === 0 ? r.hits : search.hits.concat(r.hits);
    renderSearch();
  } catch (e) {
    if (gen !== search.gen) return;
    $("search-status").textContent = "Search failed: " + errorText(e);
  }
}

function renderSearch() {
  const n = search.total;
  $("search-status").textContent = n === 0 ? "No messages match. Try other words or fewer filters." : n === 1 ? "1 message" : n.toLocaleString() + " messages";
  $("search-results").replaceChildren(
    ...search.hits.map((hit) => {
      const m = hit.message;
      const entry = S.entries.get(hit.chat_id);
      const where = entry ? (entry.chat.kind === "dm" ? chatTitle(entry.chat) : "#" + entry.chat.name) : "";
      const snippet = h("p", { class: "hit-snippet" });
      const parts = snippetParts(hit.snippet);
      if (parts.length) {
        for (const p of parts) snippet.appendChild(p.highlighted ? h("mark", { text: p.text }) : document.createTextNode(p.text));
      } else {
        snippet.textContent = preview(m.body, 200);
      }
      const files = (m.attachments || []).map((a) => a.name).join(", ");
      return h(
        "li",
        {},
        h(
          "button",
          { type: "button", class: "search-hit", onclick: () => jumpTo(hit.chat_id, m.id) },
          h("span", { class: "hit-head" }, avatar(userName(m.author), m.author, "small"), h("b", { text: userName(m.author) }), h("span", { class: "muted small", text: " " + where + " · " + dayLabel(m.created_ms) + " " + timeOfDay(m.created_ms) })),
          snippet,
          files ? h("span", { class: "muted small hit-files", text: "📎 " + files }) : null,
        ),
      );
    }),
  );
  show($("btn-search-more"), search.hits.length < search.total);
}

function jumpTo(chatId, msgId) {
  show($("search"), false);
  openChat(chatId, { around: msgId });
}

export function closeSearch() {
  show($("search"), false);
  renderPane();
  maybeMarkRead();
}
