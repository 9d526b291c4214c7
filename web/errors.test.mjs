// Unit tests for web/errors.js. Run: node --test web/
import test from "node:test";
import assert from "node:assert/strict";

import { ApiError } from "./api.js";
import { errorText } from "./errors.js";

test("errorText explains the API's error codes", () => {
  const text = (code, message) => errorText(new ApiError(400, code, message));
  assert.equal(text("invalid_credentials"), "Wrong username or password.");
  assert.equal(text("registration_closed"), "Registration is closed on this node. Ask an administrator for an account.");
  assert.equal(text("username_taken"), "That username is taken.");
  assert.match(text("invalid_username"), /^Usernames are 1–32 characters/);
  assert.equal(text("invalid_password"), "Passwords are 8 to 1024 characters.");
  assert.equal(text("user_disabled"), "This account is disabled.");
  assert.equal(text("not_a_member"), "You are not a member of this chat.");
  assert.equal(text("forbidden", "node says no"), "You are not allowed to do that.", "known codes ignore the node's message");
});

test("errorText for rate limits says when to retry", () => {
  assert.equal(errorText(new ApiError(429, "rate_limited", null, 7)), "Too many attempts. Try again in 7 s.");
  assert.equal(errorText(new ApiError(429, "rate_limited")), "Too many attempts. Try again later.");
});

test("errorText falls back to the node's message, then the code", () => {
  assert.equal(errorText(new ApiError(413, "payload_too_large", "Files are at most 25 MB.")), "Files are at most 25 MB.");
  assert.equal(errorText(new ApiError(413, "payload_too_large")), "payload_too_large", "ApiError's message defaults to the code");
  assert.equal(errorText(new ApiError(409, "conflict", "Already there.")), "Already there.");
  assert.equal(errorText(new ApiError(502)), "HTTP 502");
});

test("errorText of other errors is their message", () => {
  assert.equal(errorText(new TypeError("Failed to fetch")), "Failed to fetch");
  assert.equal(errorText("plain"), "plain");
  assert.equal(errorText(null), "null");
});
