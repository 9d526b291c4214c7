// Unit tests for web/logic.js and web/emoji.js. Run: node --test web/
import test from "node:test";
import assert from "node:assert/strict";

import {
  Reconnector,
  TypingTracker,
  completeMention,
  dateInputToMs,
  fileIcon,
  firstUnreadId,
  fitSize,
  formatBytes,
  fuzzyScore,
  isContinuation,
  isImageAttachment,
  localpart,
  mentionQuery,
  pickThumbnail,
  pushRecent,
  rankUsers,
  replyLabel,
  searchQueryString,
  shouldNotify,
  sleptFor,
  snippetParts,
  sortByActivity,
  tabTitle,
  threadReplies,
  toggleReaction,
  typingText,
  unreadTotals,
} from "./logic.js";
import { EMOJI, PICKER, searchEmoji } from "./emoji.js";

const msg = (id, author, extra = {}) => ({ id, author, created_ms: 1000, deleted: false, ...extra });

test("firstUnreadId skips own, deleted and read messages", () => {
  const msgs = [msg("01", "bob"), msg("02", "me"), msg("03", "bob", { deleted: true }), msg("04", "bob"), msg("05", "bob")];
  assert.equal(firstUnreadId(msgs, "02", "me"), "04");
  assert.equal(firstUnreadId(msgs, null, "me"), "01");
  assert.equal(firstUnreadId(msgs, "05", "me"), null);
  assert.equal(firstUnreadId([msg("09", "me")], "01", "me"), null);
});

test("unread totals and the tab title", () => {
  const entries = [
    { unread_count: 3, mention_count: 1, notification_level: "all" },
    { unread_count: 5, mention_count: 0, notification_level: "mute" },
    { unread_count: 0, mention_count: 2, notification_level: "mute" },
  ];
  assert.deepEqual(unreadTotals(entries), { unread: 3, mentions: 3 });
  assert.equal(tabTitle({ unread: 3, mentions: 1 }), "(3) Confab");
  assert.equal(tabTitle({ unread: 0, mentions: 0 }), "Confab");
});

test("chats sort by activity", () => {
  const e = (id, t) => ({ chat: { id, created_ms: 0 }, last_activity_ms: t });
  assert.deepEqual(
    sortByActivity([e("a", 1), e("b", 3), e("c", 2)]).map((x) => x.chat.id),
    ["b", "c", "a"],
  );
});

test("notifications: only when the node says so and the chat is not in view", () => {
  const ev = { notify: true, message: { chat_id: "c1" } };
  assert.equal(shouldNotify(ev, { openChatId: "c2", visible: true, permission: "granted" }), true);
  assert.equal(shouldNotify(ev, { openChatId: "c1", visible: true, permission: "granted" }), false);
  assert.equal(shouldNotify(ev, { openChatId: "c1", visible: false, permission: "granted" }), true);
  assert.equal(shouldNotify({ ...ev, notify: false }, { openChatId: null, visible: false, permission: "granted" }), false);
  assert.equal(shouldNotify(ev, { openChatId: null, visible: false, permission: "default" }), false);
});

test("grouping consecutive messages", () => {
  const a = msg("1", "bob", { created_ms: 0 });
  assert.equal(isContinuation(a, msg("2", "bob", { created_ms: 60000 })), true);
  assert.equal(isContinuation(a, msg("2", "eve", { created_ms: 60000 })), false);
  assert.equal(isContinuation(a, msg("2", "bob", { created_ms: 6 * 60000 })), false);
  assert.equal(isContinuation(a, msg("2", "bob", { created_ms: 1, reply_to: "1" })), false);
  assert.equal(isContinuation(null, a), false);
});

test("threads and replies", () => {
  const list = [msg("1", "a"), msg("2", "b", { reply_to: "1" }), msg("3", "c", { reply_to: "1" }), msg("4", "d", { reply_to: "1", deleted: true })];
  const t = threadReplies(list);
  assert.deepEqual(
    t.get("1").map((m) => m.id),
    ["2", "3"],
  );
  assert.equal(replyLabel(1), "1 reply");
  assert.equal(replyLabel(2), "2 replies");
});

test("reactions toggle optimistically and recent emoji stay unique", () => {
  let r = toggleReaction([], "👍", "me");
  assert.deepEqual(r, [{ emoji: "👍", count: 1, users: ["me"] }]);
  r = toggleReaction(r, "👍", "bob");
  assert.equal(r[0].count, 2);
  r = toggleReaction(r, "👍", "me");
  assert.deepEqual(r, [{ emoji: "👍", count: 1, users: ["bob"] }]);
  assert.deepEqual(toggleReaction(r, "👍", "bob"), []);
  assert.deepEqual(pushRecent(["a", "b", "c"], "b"), ["b", "a", "c"]);
  assert.deepEqual(pushRecent(["a", "b"], "c", 2), ["c", "a"]);
});

test("file sizes and thumbnails", () => {
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1536), "1.5 KB");
  assert.equal(formatBytes(5 * 1024 * 1024), "5.0 MB");
  assert.equal(formatBytes(300 * 1024 * 1024), "300 MB");
  const a = { mime: "image/png", thumbnails: [{ id: "big", width: 800, height: 400 }, { id: "small", width: 160, height: 80 }] };
  assert.equal(isImageAttachment(a), true);
  assert.equal(isImageAttachment({ mime: "text/plain", thumbnails: [] }), false);
  assert.equal(pickThumbnail(a, 100).id, "small");
  assert.equal(pickThumbnail(a, 400).id, "big");
  assert.equal(pickThumbnail(a, 2000).id, "big");
  assert.deepEqual(fitSize(800, 400, 360, 260), { width: 360, height: 180 });
  assert.deepEqual(fitSize(100, 50, 360, 260), { width: 100, height: 50 });
});

test("mention parsing at the caret", () => {
  assert.deepEqual(mentionQuery("hi @bo", 6), { start: 3, query: "bo" });
  assert.deepEqual(mentionQuery("@", 1), { start: 0, query: "" });
  assert.equal(mentionQuery("mail a@b", 8), null);
  assert.equal(mentionQuery("hi @bob there", 13), null);
  const q = mentionQuery("hi @bo and", 6);
  assert.deepEqual(completeMention("hi @bo and", q, 6, "bob"), { text: "hi @bob  and", caret: 8 });
  const users = [
    { username: "bob", display_name: "Robert" },
    { username: "alice", display_name: "Bobby Tables" },
    { username: "carol", display_name: "Carol" },
  ];
  assert.deepEqual(
    rankUsers(users, "bo").map((u) => u.username),
    ["bob", "alice"],
  );
});

test("fuzzy matching for the quick switcher", () => {
  assert.equal(fuzzyScore("engineering", "eng"), 0);
  assert.ok(fuzzyScore("dev-engineering", "eng") > 0);
  assert.ok(fuzzyScore("engineering", "egr") >= 10);
  assert.equal(fuzzyScore("random", "xyz"), null);
});

test("typing tracker expires and formats", () => {
  const t = new TypingTracker();
  t.set("c", "bob", 2000);
  t.set("c", "eve", 5000);
  t.set("c", "me", 5000);
  assert.deepEqual(t.active("c", 1000, "me"), ["bob", "eve"]);
  assert.deepEqual(t.active("c", 3000, "me"), ["eve"]);
  t.clear("c", "eve");
  assert.deepEqual(t.active("c", 3000, "me"), []);
  assert.equal(typingText([]), "");
  assert.equal(typingText(["A"]), "A is typing…");
  assert.equal(typingText(["A", "B"]), "A and B are typing…");
  assert.equal(typingText(["A", "B", "C", "D"]), "A, B and 2 others are typing…");
});

test("reconnect state machine backs off, resets when live, and ignores stray timers", () => {
  const rc = new Reconnector(() => 0.5);
  assert.deepEqual(rc.start(), { do: "connect" });
  assert.deepEqual(rc.start(), { do: "none" });
  assert.deepEqual(rc.closed(), { do: "wait", ms: 500 });
  assert.deepEqual(rc.timer(), { do: "connect" });
  assert.deepEqual(rc.closed(), { do: "wait", ms: 1000 });
  assert.deepEqual(rc.poke(), { do: "connect" });
  assert.deepEqual(rc.closed(), { do: "wait", ms: 2000 });
  assert.deepEqual(rc.timer(), { do: "connect" });
  assert.deepEqual(rc.live(), { do: "none" });
  assert.equal(rc.state, "live");
  assert.deepEqual(rc.timer(), { do: "none" }, "no reconnect while live");
  assert.deepEqual(rc.closed(), { do: "wait", ms: 500 }, "backoff reset after a live connection");
  for (let i = 0; i < 20; i++) {
    rc.timer();
    rc.closed();
  }
  assert.equal(rc.closed().ms, 30000, "capped at 30 s");
  rc.stop();
  assert.deepEqual(rc.closed(), { do: "none" }, "stopped: no retries");
  assert.deepEqual(rc.timer(), { do: "none" });
  assert.ok(sleptFor(60000, 5000));
  assert.ok(!sleptFor(5200, 5000));
});

test("search query strings and snippets", () => {
  assert.equal(searchQueryString({ q: "a b", order: "newest" }), "q=a+b&order=newest&offset=0&limit=20");
  assert.equal(
    searchQueryString({ q: "x", chat_id: "c1", author: "bob@local", from_ms: 5, to_ms: 9, has_attachment: false, offset: 20, limit: 10 }),
    "q=x&chat_id=c1&author=bob%40local&from_ms=5&to_ms=9&has_attachment=false&offset=20&limit=10",
  );
  const d = dateInputToMs("2025-03-04");
  assert.equal(new Date(d).getDate(), 4);
  assert.ok(dateInputToMs("2025-03-04", true) > d);
  assert.equal(dateInputToMs(""), null);
  assert.deepEqual(snippetParts([{ text: "a", highlighted: true }, { text: "<b>" }, null, { text: 5 }]), [
    { text: "a", highlighted: true },
    { text: "<b>", highlighted: false },
  ]);
  assert.deepEqual(snippetParts(null), []);
});

test("emoji shortcodes and picker", () => {
  assert.equal(EMOJI.tada, "🎉");
  assert.equal(EMOJI["+1"], "👍");
  assert.ok(PICKER.length > 100);
  assert.equal(new Set(PICKER.map((p) => p.emoji)).size, PICKER.length, "picker entries are unique");
  assert.ok(searchEmoji("thumbs").some((p) => p.emoji === "👍"));
  assert.ok(searchEmoji(":tada:").some((p) => p.emoji === "🎉"));
});

test("fileIcon picks a card icon by MIME type", () => {
  assert.equal(fileIcon("image/png"), "🖼️");
  assert.equal(fileIcon("video/mp4"), "🎞️");
  assert.equal(fileIcon("audio/ogg"), "🎵");
  assert.equal(fileIcon("application/pdf"), "📕");
  assert.equal(fileIcon("application/zip"), "🗜️");
  assert.equal(fileIcon("application/x-7z-compressed"), "🗜️");
  assert.equal(fileIcon("text/plain"), "📄");
  assert.equal(fileIcon("application/octet-stream"), "📎");
  assert.equal(fileIcon(null), "📎");
  assert.equal(fileIcon(undefined), "📎");
});

test("localpart is the user id before its last @", () => {
  assert.equal(localpart("alice@node.example"), "alice");
  assert.equal(localpart("a@b@node.example"), "a@b");
  assert.equal(localpart("alice"), "alice");
  assert.equal(localpart("@node.example"), "@node.example", "nothing before the @: the whole id");
  assert.equal(localpart(42), "42");
});
