// User-facing text for API errors (pure; unit-tested by errors.test.mjs).

import { ApiError } from "./api.js";

export function errorText(e) {
  if (!(e instanceof ApiError)) return String((e && e.message) || e);
  switch (e.code) {
    case "invalid_credentials":
      return "Wrong username or password.";
    case "rate_limited":
      return "Too many attempts. Try again" + (e.retryAfter ? " in " + e.retryAfter + " s." : " later.");
    case "registration_closed":
      return "Registration is closed on this node. Ask an administrator for an account.";
    case "username_taken":
      return "That username is taken.";
    case "invalid_username":
      return "Usernames are 1–32 characters of a–z, 0–9, “.”, “_” and “-”, starting with a letter or digit.";
    case "invalid_password":
      return "Passwords are 8 to 1024 characters.";
    case "user_disabled":
      return "This account is disabled.";
    case "not_a_member":
      return "You are not a member of this chat.";
    case "forbidden":
      return "You are not allowed to do that.";
    case "payload_too_large":
      return e.message || "The file is too large.";
    default:
      return e.message || e.code;
  }
}
