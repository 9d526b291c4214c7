// Unit tests for web/dom.js's element builder and reconciler, against a minimal stand-in for
// the DOM (only what h() and reconcile() use). Run: node --test web/
import test from "node:test";
import assert from "node:assert/strict";

import { h, reconcile } from "./dom.js";

class FakeNode {
  constructor(name) {
    this.name = name;
    this.parent = null;
    this.kids = [];
    this.moves = 0;
  }
  get firstChild() {
    return this.kids[0] || null;
  }
  get nextSibling() {
    if (!this.parent) return null;
    const k = this.parent.kids;
    return k[k.indexOf(this) + 1] || null;
  }
  insertBefore(el, ref) {
    if (el.parent) el.parent.kids.splice(el.parent.kids.indexOf(el), 1);
    el.parent = this;
    this.kids.splice(ref ? this.kids.indexOf(ref) : this.kids.length, 0, el);
    this.moves += 1;
    return el;
  }
  appendChild(el) {
    return this.insertBefore(el, null);
  }
  removeChild(el) {
    this.kids.splice(this.kids.indexOf(el), 1);
    el.parent = null;
    return el;
  }
}

class FakeElement extends FakeNode {
  constructor(tag) {
    super(tag);
    this.className = "";
    this.textContent = "";
    this.dataset = {};
    this.attrs = {};
    this.listeners = {};
    this.disabled = false;
  }
  setAttribute(k, v) {
    this.attrs[k] = v;
  }
  addEventListener(type, fn) {
    this.listeners[type] = fn;
  }
}

globalThis.document = {
  createElement: (tag) => new FakeElement(tag),
  createTextNode: (text) => Object.assign(new FakeNode("#text"), { text }),
};

function containerOf(names) {
  const c = new FakeNode("container");
  const nodes = names.map((n) => c.appendChild(new FakeNode(n)));
  c.moves = 0;
  return { c, nodes };
}

const names = (c) => c.kids.map((k) => k.name);

test("reconcile leaves children that are already in place alone", () => {
  const { c, nodes } = containerOf(["a", "b", "c"]);
  reconcile(c, nodes);
  assert.deepEqual(names(c), ["a", "b", "c"]);
  assert.equal(c.moves, 0);
});

test("reconcile inserts new nodes, drops the rest and keeps node identity", () => {
  const { c, nodes } = containerOf(["a", "b", "c", "d"]);
  const x = new FakeNode("x");
  reconcile(c, [nodes[0], x, nodes[2]]);
  assert.deepEqual(names(c), ["a", "x", "c"]);
  assert.equal(c.kids[2], nodes[2], "the same node, not a copy");
  assert.equal(c.moves, 2, "x inserted and c moved up; b and d removed");
  assert.equal(nodes[3].parent, null);
  reconcile(c, []);
  assert.deepEqual(names(c), []);
});

test("reconcile reorders", () => {
  const { c, nodes } = containerOf(["a", "b", "c"]);
  reconcile(c, [nodes[2], nodes[0], nodes[1]]);
  assert.deepEqual(names(c), ["c", "a", "b"]);
  assert.equal(c.moves, 1, "moving c to the front is enough");
});

test("h sets classes, text, listeners, data, properties and attributes", () => {
  const onclick = () => {};
  const el = h("button", { class: "tool danger", text: "Delete", onclick, dataset: { act: "delete" }, disabled: true, "aria-label": "Delete message", title: 5, hidden: false, role: null, lang: undefined });
  assert.equal(el.name, "button");
  assert.equal(el.className, "tool danger");
  assert.equal(el.textContent, "Delete");
  assert.equal(el.listeners.click, onclick);
  assert.deepEqual(el.dataset, { act: "delete" });
  assert.equal(el.disabled, true, "a known property set directly");
  assert.deepEqual(el.attrs, { "aria-label": "Delete message", title: "5" }, "false, null and undefined are left out");
  assert.deepEqual(h("input", { autofocus: true }).attrs, { autofocus: "" }, "true as an attribute is present and empty");
});

test("h appends children, a list of them flattened, strings as text nodes", () => {
  const child = h("b", { text: "x" });
  const el = h("p", null, "one", null, [child, false, "two"], undefined);
  assert.deepEqual(names(el), ["#text", "b", "#text"]);
  assert.equal(el.kids[0].text, "one");
  assert.equal(el.kids[1], child);
  assert.equal(el.kids[2].text, "two");
});
