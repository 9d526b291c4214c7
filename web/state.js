// The client's state: one mutable object `S` for the signed-in session, replaced on sign-out.

import { TypingTracker } from "./logic.js";

export const PAGE = 50;
export const MAX_ATTACHMENTS = 10;

// ---------------------------------------------------------------------------------------------
// State

function freshState() {
  return {
    me: null,
    device: null, // this browser as a push device of `me` (device.js), if enrolled
    users: new Map(), // user id -> User
    userFetches: new Set(),
    entries: new Map(), // chat id -> ChatListEntry
    dmMembers: new Map(), // chat id -> [user id]
    dmFetches: new Set(),
    presence: new Map(), // user id -> "online" | "away" | "offline"
    typing: new TypingTracker(),
    openId: null,
    openChat: null,
    openGen: 0,
    msgs: [], // confirmed messages of the open chat, sorted by id
    hasMore: false, // older messages exist
    hasNewer: false, // newer messages exist beyond the loaded window (after a jump)
    loadingOlder: false,
    loadingNewer: false,
    loadError: null,
    loading: false,
    dividerId: null, // first unread message when the chat was opened
    flashId: null,
    pending: [], // {client_id, chat_id, body, reply_to, attachments, status, error, via, timer, created_ms, hidden}
    editingId: null,
    replyTo: null, // message being replied to from the main composer
    threadId: null, // parent message id of the open thread
    threadMsgs: new Map(), // replies of the open thread fetched beyond the loaded window
    parents: new Map(), // message id -> Message fetched for reply quotes
    readSent: new Map(),
    drafts: new Map(),
    uploads: [], // {key, chat_id, name, size, sent, state, error, attachment, abort}
    msgCache: new Map(),
    firstOpen: true,
    wasLive: false,
    unseenNew: 0,
  };
}

export let S = freshState();
S.openGen = 0;

/** Sign-out: a fresh state whose chat generation continues from `gen` (late answers are dropped). */
export function resetState(gen) {
  S = freshState();
  S.openGen = gen;
}
