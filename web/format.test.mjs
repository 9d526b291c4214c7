// Unit tests for web/format.js. Run: node --test web/
import test from "node:test";
import assert from "node:assert/strict";

import {
  backoffMs,
  charCount,
  compareIds,
  dayLabel,
  initials,
  mergeCopy,
  newerMessage,
  parseMessage,
  plainText,
  preview,
  renderMessage,
  safeHref,
  trimUrl,
  upsertSorted,
} from "./format.js";

const T = (v) => ({ t: "text", v });

test("plain text stays one text node", () => {
  assert.deepEqual(parseMessage("hello world"), [T("hello world")]);
  assert.deepEqual(parseMessage(""), []);
  assert.deepEqual(parseMessage(null), []);
});

test("HTML is never interpreted", () => {
  const s = '<img src=x onerror="alert(1)"> &amp; <script>x</script>';
  assert.deepEqual(parseMessage(s), [T(s)]);
});

test("bold, italic and inline code", () => {
  assert.deepEqual(parseMessage("a *b* c"), [T("a "), { t: "b", c: [T("b")] }, T(" c")]);
  assert.deepEqual(parseMessage("_it_"), [{ t: "i", c: [T("it")] }]);
  assert.deepEqual(parseMessage("run `ls -la` now"), [T("run "), { t: "code", v: "ls -la" }, T(" now")]);
  assert.deepEqual(parseMessage("*bold _and italic_*"), [{ t: "b", c: [T("bold "), { t: "i", c: [T("and italic")] }] }]);
});

test("markers inside code are literal", () => {
  assert.deepEqual(parseMessage("`*not bold*`"), [{ t: "code", v: "*not bold*" }]);
});

test("markers that do not form a span stay text", () => {
  for (const s of ["2 * 3 * 4", "snake_case_name", "a*b*c", "x * spaced *", "*", "**", "_", "unclosed *bold", "`", "``", "*\nb*"]) {
    assert.deepEqual(plainText(s), s, s);
    assert.ok(parseMessage(s).every((n) => n.t === "text"), s);
  }
});

test("code blocks", () => {
  assert.deepEqual(parseMessage("```\nfn main() {}\n```"), [{ t: "pre", v: "fn main() {}" }]);
  assert.deepEqual(parseMessage("x ```a *b* <c>``` y"), [T("x "), { t: "pre", v: "a *b* <c>" }, T(" y")]);
  assert.deepEqual(parseMessage("```unclosed"), [T("```unclosed")]);
});

test("links: http and https only, trailing punctuation trimmed", () => {
  assert.deepEqual(parseMessage("see https://example.com/a?b=1."), [
    T("see "),
    { t: "link", v: "https://example.com/a?b=1", href: "https://example.com/a?b=1" },
    T("."),
  ]);
  assert.deepEqual(parseMessage("(http://x.org/wiki/A_(b))"), [
    T("("),
    { t: "link", v: "http://x.org/wiki/A_(b)", href: "http://x.org/wiki/A_(b)" },
    T(")"),
  ]);
  for (const s of ["javascript:alert(1)", "data:text/html,hi", "ftp://x.org", "xhttps://a.b", "https://", "http:///x"]) {
    assert.ok(parseMessage(s).every((n) => n.t !== "link"), s);
  }
  assert.equal(safeHref("javascript:alert(1)"), null);
  assert.equal(safeHref("https://a.example/"), "https://a.example/");
  assert.equal(trimUrl("https://a.b/c),"), "https://a.b/c");
});

test("link inside bold", () => {
  assert.deepEqual(parseMessage("*https://a.example*"), [{ t: "b", c: [{ t: "link", v: "https://a.example", href: "https://a.example/" }] }]);
});

test("mentions", () => {
  assert.deepEqual(parseMessage("hi @bob."), [T("hi "), { t: "mention", v: "bob" }, T(".")]);
  assert.deepEqual(parseMessage("@channel"), [{ t: "mention", v: "channel" }]);
  assert.deepEqual(parseMessage("mail me@example.org"), [T("mail me@example.org")]);
  assert.deepEqual(parseMessage("@a.b-c_d, hi"), [{ t: "mention", v: "a.b-c_d" }, T(", hi")]);
});

test("pathological input stays fast and loses no characters", () => {
  const inputs = [
    "*a ".repeat(33000),
    "_".repeat(100000),
    "`".repeat(100000),
    "*_`".repeat(33000),
    "```".repeat(33000) + "x",
    "https://a.b/" + "x".repeat(99000),
    "*".repeat(50000) + "a" + "*".repeat(49999),
  ];
  for (const s of inputs) {
    const t0 = process.hrtime.bigint();
    const nodes = parseMessage(s);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.ok(Array.isArray(nodes));
    assert.ok(ms < 5000, "took " + ms + " ms");
  }
  // Nothing is dropped except the markers themselves.
  const s = "*a ".repeat(1000);
  assert.equal(plainText(s), s);
});

// A minimal Document stand-in: enough to prove rendering only creates elements and text nodes.
class FakeNode {
  constructor(tag) {
    this.tagName = tag;
    this.children = [];
    this.attrs = {};
    this._text = "";
  }
  appendChild(c) {
    this.children.push(c);
    return c;
  }
  set textContent(v) {
    this.children = [{ text: String(v) }];
  }
  get textContent() {
    return this.children.map((c) => (c instanceof FakeNode ? c.textContent : c.text)).join("");
  }
  set innerHTML(_v) {
    throw new Error("innerHTML must not be used");
  }
}
const fakeDoc = {
  createElement: (tag) => new FakeNode(tag),
  createTextNode: (text) => ({ text }),
};

test("renderMessage builds elements and text nodes only", () => {
  const root = new FakeNode("div");
  renderMessage(root, "<b>x</b> *y* `z` https://a.example/p?q=<1> @me @you", fakeDoc, { isMe: (n) => n === "me" });
  assert.equal(root.textContent, "<b>x</b> y z https://a.example/p?q=<1> @me @you");
  const tags = root.children.filter((c) => c instanceof FakeNode).map((c) => c.tagName);
  assert.deepEqual(tags, ["strong", "code", "a", "span", "span"]);
  assert.equal(root.children[0].text, "<b>x</b> ");
  const a = root.children.find((c) => c.tagName === "a");
  assert.equal(a.href, "https://a.example/p?q=");
  assert.equal(a.rel, "noopener noreferrer nofollow");
  const spans = root.children.filter((c) => c.tagName === "span");
  assert.equal(spans[0].className, "mention mention-me");
  assert.equal(spans[1].className, "mention");
});

test("preview flattens, trims and truncates", () => {
  assert.equal(preview("  *hi*\n\nthere  "), "hi there");
  assert.equal(preview("x".repeat(100), 10), "xxxxxxxxx…");
  assert.equal(preview("😀".repeat(20), 5), "😀😀😀😀…");
});

test("charCount counts Unicode scalar values", () => {
  assert.equal(charCount("abc"), 3);
  assert.equal(charCount("😀"), 1);
  assert.equal(charCount("é"), 1);
});

test("compareIds and upsertSorted", () => {
  assert.ok(compareIds("01a", "01b") < 0);
  assert.ok(compareIds("01b", "01a") > 0);
  assert.equal(compareIds("x", "x"), 0);
  assert.ok(compareIds("01a", null) > 0);
  assert.ok(compareIds(null, "01a") < 0);
  const list = [];
  for (const id of ["c", "a", "b", "a"]) upsertSorted(list, { id, n: id });
  assert.deepEqual(
    list.map((m) => m.id),
    ["a", "b", "c"],
  );
});

test("newerMessage prefers deleted, later edits, and advanced states", () => {
  const base = { id: "1", body: "a", edited_ms: null, deleted: false, state: "sent" };
  const edited = { ...base, body: "b", edited_ms: 5 };
  const del = { ...base, body: "", deleted: true, state: "deleted" };
  assert.equal(newerMessage(base, edited), edited);
  assert.equal(newerMessage(edited, base), edited);
  assert.equal(newerMessage(edited, del), del);
  assert.equal(newerMessage(del, edited), del);
  const viewed = { ...base, state: "viewed" };
  assert.deepEqual(newerMessage(viewed, edited), { ...edited, state: "viewed" });
  assert.equal(newerMessage(null, base), base);
});

test("mergeCopy keeps the newer copy and takes reactions from a copy that is not older", () => {
  const base = { id: "1", body: "a", edited_ms: null, deleted: false, state: "sent" };
  const reacted = { ...base, reactions: [{ emoji: "👍", count: 1, users: ["bob"] }] };
  const del = { ...base, body: "", deleted: true, state: "deleted" };
  // The deleted copy wins, but carries the reactions of the other (not older) copy.
  assert.deepEqual(mergeCopy(del, reacted), { ...del, reactions: reacted.reactions });
  // An older copy (an earlier edit) lends no reactions.
  const edited = { ...base, body: "b", edited_ms: 5, reactions: [] };
  assert.equal(mergeCopy(edited, reacted), edited);
  // No reactions on the other copy: the newer copy as it is.
  assert.equal(mergeCopy(del, base), del);
  // The other copy is the newer one: taken whole, its reactions included.
  const later = { ...reacted, body: "c", edited_ms: 9 };
  assert.equal(mergeCopy(base, later), later);
});

test("dayLabel and initials", () => {
  const now = new Date(2025, 5, 15, 12, 0).getTime();
  assert.equal(dayLabel(new Date(2025, 5, 15, 1, 0).getTime(), now), "Today");
  assert.equal(dayLabel(new Date(2025, 5, 14, 23, 0).getTime(), now), "Yesterday");
  assert.equal(dayLabel(new Date(2025, 2, 3).getTime(), now), "3 Mar");
  assert.equal(dayLabel(new Date(2024, 2, 3).getTime(), now), "3 Mar 2024");
  assert.equal(initials("Alice Smith"), "AS");
  assert.equal(initials("bob@local"), "B");
  assert.equal(initials(""), "?");
});

test("backoff grows and is capped", () => {
  const mid = () => 0.5;
  assert.equal(backoffMs(0, mid), 500);
  assert.equal(backoffMs(1, mid), 1000);
  assert.equal(backoffMs(5, mid), 16000);
  assert.equal(backoffMs(50, mid), 30000);
});

test("strike, quotes, lists, mailto and emoji shortcodes", () => {
  assert.deepEqual(parseMessage("~gone~"), [{ t: "s", c: [T("gone")] }]);
  assert.deepEqual(parseMessage("> quoted *b*\nafter"), [{ t: "quote", c: [T("quoted "), { t: "b", c: [T("b")] }] }, T("after")]);
  assert.deepEqual(parseMessage("list:\n- one\n- two"), [T("list:"), { t: "ul", items: [[T("one")], [T("two")]] }]);
  assert.deepEqual(parseMessage("3. c\n4. d"), [{ t: "ol", start: 3, items: [[T("c")], [T("d")]] }]);
  assert.deepEqual(parseMessage("mail mailto:a@b.example now"), [T("mail "), { t: "link", v: "mailto:a@b.example", href: "mailto:a@b.example" }, T(" now")]);
  assert.deepEqual(parseMessage("yay :tada: :nope:"), [T("yay "), { t: "emoji", v: "🎉", name: "tada" }, T(" :nope:")]);
  assert.deepEqual(parseMessage("10:30:00"), [T("10:30:00")]);
  for (const s of ["mailto:javascript:alert(1)", "mailto:<x>@y", "-no space", ">"]) {
    assert.ok(parseMessage(s).every((n) => n.t !== "link" && n.t !== "ul"), s);
  }
  assert.equal(plainText("- a\n- b"), "a b");
});

test("block markup renders as elements with text children only", () => {
  const root = new FakeNode("div");
  renderMessage(root, "> <img src=x onerror=alert(1)>\n- <b>x</b>\n~<i>~ :tada:", fakeDoc, {});
  const tags = root.children.filter((c) => c instanceof FakeNode).map((c) => c.tagName);
  assert.deepEqual(tags, ["blockquote", "ul", "del", "span"]);
  assert.equal(root.children[0].textContent, "<img src=x onerror=alert(1)>");
  assert.equal(root.children[1].children[0].tagName, "li");
  assert.equal(root.children[1].textContent, "<b>x</b>");
});

test("mentions of unknown names render as plain text when a `known` check is given", () => {
  const root = new FakeNode("div");
  renderMessage(root, "@import x @bob @here", fakeDoc, { known: (n) => n === "bob" || n === "here" });
  const spans = root.children.filter((c) => c instanceof FakeNode).map((c) => c.textContent);
  assert.deepEqual(spans, ["@bob", "@here"]);
  assert.equal(root.textContent, "@import x @bob @here");
});
