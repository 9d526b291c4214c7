// Unit tests for web/state.js. Run: node --test web/
import test from "node:test";
import assert from "node:assert/strict";

import { S, resetState } from "./state.js";

test("the state starts signed out with nothing loaded", () => {
  assert.equal(S.me, null);
  assert.equal(S.openId, null);
  assert.equal(S.openGen, 0);
  assert.equal(S.entries.size, 0);
  assert.deepEqual(S.pending, []);
  assert.equal(S.firstOpen, true);
});

test("resetState replaces everything but continues the chat generation", () => {
  const before = S;
  S.me = { id: "alice@local" };
  S.openId = "c1";
  S.entries.set("c1", { chat: { id: "c1" } });
  S.pending.push({ client_id: "x" });
  S.typing.set("c1", "bob@local", 10000);
  S.firstOpen = false;
  resetState(8);
  assert.notEqual(S, before, "a new object, seen through the live binding");
  assert.equal(S.openGen, 8);
  assert.equal(S.me, null);
  assert.equal(S.openId, null);
  assert.equal(S.entries.size, 0);
  assert.deepEqual(S.pending, []);
  assert.deepEqual(S.typing.active("c1", 0, "alice@local"), [], "a fresh typing tracker");
  assert.equal(S.firstOpen, true);
  assert.equal(before.entries.size, 1, "the old state is left as it was");
});
