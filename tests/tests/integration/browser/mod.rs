//! The web client (web/) in a real headless Chromium over WebDriver (chromedriver), against a
//! real node: two people chatting live, unread badges and the first-unread divider, edit and
//! delete, reactions, uploads, search, reconnecting after a node restart, an XSS corpus and
//! zero CSP violations. Screenshots of the main screens are saved under
//! `$CARGO_TARGET_DIR/confab-screenshots/` (the path is printed).
//!
//! Needs Debian's `chromium` and `chromium-driver`, and `firefox-esr` for the real push
//! subscription (`firefox.rs`); without them these tests FAIL.

mod firefox;
mod harness;
mod media;
mod push;
mod xss;

use std::time::Duration;

use serde_json::json;

use crate::common::*;
pub use harness::*;

/// A node with `names` registered, a chromedriver, and a browser signed in for each of
/// `signed_in` (indices into `names`).
pub struct Scene {
    pub node: TestNode,
    pub clients: Vec<Client>,
    pub driver: Driver,
}

impl Scene {
    pub async fn new(names: &[&str]) -> Scene {
        let (node, clients) = setup(names).await;
        let driver = Driver::start().await;
        Scene { node, clients, driver }
    }

    pub async fn browser(&self, username: &str) -> Browser {
        self.browser_with(username, BrowserOpts::default()).await
    }

    pub async fn browser_with(&self, username: &str, opts: BrowserOpts) -> Browser {
        let b = Browser::open(&self.driver, username, opts).await;
        b.sign_in(&self.node.base_url(), username, PASSWORD).await;
        b
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_two_users_chat_live_both_ways() {
    let scene = Scene::new(&["alice", "bob"]).await;
    let (alice_api, bob_api) = (&scene.clients[0], &scene.clients[1]);
    bob_api.patch_me(json!({"display_name": "Bob Martin"})).await.must("bob's display name");
    let chat = public_channel(alice_api, "general", &[bob_api]).await;

    // The sign-in screen, as a new visitor sees it.
    let a = Browser::open(&scene.driver, "alice", BrowserOpts::default()).await;
    a.goto(&format!("{}/", scene.node.base_url())).await;
    a.wait("the sign-in form", "!document.getElementById('auth').hidden").await;
    a.screenshot("01-sign-in").await;
    a.assert_clean("sign-in screen").await;
    a.sign_in(&scene.node.base_url(), "alice", PASSWORD).await;
    let b = scene.browser("bob").await;

    a.open_chat(&chat.id).await;
    b.open_chat(&chat.id).await;

    // Alice → Bob, formatted.
    a.send_message("Hello *Bob*, shall we ship on _Friday_?").await;
    let first = b.wait_message("Hello Bob, shall we ship on Friday?").await;
    assert!(
        b.eval(&format!("!!document.querySelector('.msg[data-id=\"{first}\"] .msg-body strong')"))
            .await
            .as_bool()
            .unwrap_or(false),
        "bold text is rendered as <strong>"
    );
    // Alice sees her own message confirmed (not pending), authored by her.
    a.wait_message("shall we ship").await;
    a.wait("no pending bubble", "document.querySelectorAll('#msg-list .msg.pending').length === 0")
        .await;

    // Bob types: Alice sees the typing indicator, then the message.
    b.type_into("#input", "Sounds good").await;
    a.wait(
        "Bob's typing indicator",
        "document.getElementById('typing').textContent.includes('Bob Martin')",
    )
    .await;
    b.type_into("#input", ", see you there \u{e007}").await;
    let reply = a.wait_message("Sounds good, see you there").await;
    assert!(!reply.is_empty());
    a.wait(
        "the typing indicator to clear after the message",
        "!document.getElementById('typing').textContent.includes('Bob Martin')",
    )
    .await;

    // Message states: Bob had the chat open and visible, so Alice's message becomes viewed.
    a.wait_args(
        "alice's message to show as viewed",
        "!!document.querySelector('.msg[data-id=\"' + arguments[0] + '\"] .msg-state.state-viewed')",
        vec![json!(first)],
    )
    .await;

    // Presence: Bob is online for Alice.
    a.wait(
        "bob's presence dot",
        "!!document.querySelector('.msg[data-author=\"bob@local\"] .presence.online')",
    )
    .await;

    // Exactly one copy of each message on both sides and on the node.
    for br in [&a, &b] {
        let n = br.eval("document.querySelectorAll('#msg-list .msg[data-id]').length").await;
        assert_eq!(n, json!(2), "{}: two messages shown", br.name);
    }
    let all = alice_api.all_messages(&chat.id).await.must("history");
    assert_eq!(all.len(), 2, "the node has exactly the two messages");

    // Drafts are kept per chat: start a draft, switch to a DM and back.
    let (_, dm) = alice_api.dm(&["bob@local"]).await.must("dm");
    a.wait_args(
        "the DM in the sidebar",
        "!!document.querySelector('.chat-item[data-chat-id=\"' + arguments[0] + '\"]')",
        vec![json!(dm.id)],
    )
    .await;
    a.type_into("#input", "half-written thought").await;
    a.open_chat(&dm.id).await;
    assert_eq!(a.eval("document.getElementById('input').value").await, json!(""));
    a.send_message("psst, a direct message").await;
    b.wait_args(
        "the DM to appear for Bob with an unread badge",
        "(() => { const i = document.querySelector('.chat-item[data-chat-id=\"' + arguments[0] + '\"]'); \
          return i && i.classList.contains('unread') && i.querySelector('.badge.count') && i.querySelector('.badge.count').textContent === '1'; })()",
        vec![json!(dm.id)],
    )
    .await;
    a.open_chat(&chat.id).await;
    assert_eq!(
        a.eval("document.getElementById('input').value").await,
        json!("half-written thought"),
        "the draft came back"
    );

    // Keyboard: ↑ in the message log focuses the newest message and shows its tools.
    a.type_into("#messages", "\u{e013}").await;
    a.wait(
        "a focused message with its tools shown",
        "document.activeElement && document.activeElement.classList.contains('msg') && \
         getComputedStyle(document.activeElement.querySelector('.msg-tools')).display === 'flex'",
    )
    .await;

    a.assert_clean("live chat").await;
    b.assert_clean("live chat").await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_unread_badges_divider_scrollback_and_pill() {
    let scene = Scene::new(&["alice", "bob"]).await;
    let (alice_api, bob_api) = (&scene.clients[0], &scene.clients[1]);
    let general = public_channel(alice_api, "general", &[bob_api]).await;
    let random = public_channel(alice_api, "random", &[bob_api]).await;

    // 120 messages Alice has read, then 4 she has not (one mentions her).
    let mut last = String::new();
    for i in 0..120 {
        last = bob_api
            .send(&general.id, &format!("filler message number {i}"))
            .await
            .must("filler")
            .id;
    }
    alice_api.read(&general.id, &last).await.must("read");

    let a = scene.browser("alice").await;
    a.open_chat(&random.id).await;
    for t in ["new one", "new two", "hey @alice look at this", "new four"] {
        bob_api.send(&general.id, t).await.must("unread message");
    }
    a.wait_args(
        "the unread badge (4) and the mention badge on #general",
        "(() => { const i = document.querySelector('.chat-item[data-chat-id=\"' + arguments[0] + '\"]'); \
          if (!i || !i.classList.contains('unread')) return false; \
          const c = i.querySelector('.badge.count'), m = i.querySelector('.badge.mention'); \
          return c && c.textContent === '4' && m && m.textContent.includes('1'); })()",
        vec![json!(general.id)],
    )
    .await;
    a.wait("the unread count in the tab title", "document.title.startsWith('(4)')").await;
    // Bold when unread.
    let weight = a.eval_args_weight(&general.id).await;
    assert!(weight >= 600, "unread chat name is bold (font-weight {weight})");
    // Sorted by activity: #general (just active) is above #random.
    let order = a
        .eval("Array.from(document.querySelectorAll('.chat-item[data-chat-id]')).map(e => e.dataset.chatId)")
        .await;
    let order: Vec<String> = serde_json::from_value(order).unwrap_or_default();
    let gi = order.iter().position(|x| *x == general.id);
    let ri = order.iter().position(|x| *x == random.id);
    assert!(gi < ri, "sidebar sorted by activity: {order:?}");

    // Opening #general: the divider sits right before the first unread message, in view.
    a.open_chat(&general.id).await;
    let v = a
        .wait(
            "the new-messages divider",
            "(() => { const d = document.querySelector('#msg-list .unread-divider'); if (!d) return null; \
              const n = d.nextElementSibling; const box = document.getElementById('messages').getBoundingClientRect(); \
              const r = d.getBoundingClientRect(); \
              return {next: n && n.querySelector('.msg-body') ? n.querySelector('.msg-body').textContent : null, \
                      visible: r.top >= box.top - 1 && r.bottom <= box.bottom + 1}; })()",
        )
        .await;
    assert_eq!(v["next"], json!("new one"), "divider before the first unread: {v}");
    assert_eq!(v["visible"], json!(true), "divider scrolled into view: {v}");
    a.wait_args(
        "the badges to clear",
        "(() => { const i = document.querySelector('.chat-item[data-chat-id=\"' + arguments[0] + '\"]'); \
          return i && !i.classList.contains('unread') && !i.querySelector('.badge'); })()",
        vec![json!(general.id)],
    )
    .await;
    a.wait("the tab title without a count", "document.title === 'Confab'").await;
    let mut cleared = false;
    for _ in 0..50 {
        let e = alice_api.chat_entry(&general.id).await.must("entry");
        if e.is_some_and(|e| e.unread_count == 0) {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cleared, "the node's read marker moved to the newest message");
    a.screenshot("02-unread-divider").await;

    // Infinite scroll back without jumping: note the top message's position, scroll to the
    // top; older messages load and the noted message stays where it was on screen.
    let before = a
        .eval("document.querySelectorAll('#msg-list .msg[data-id]').length")
        .await
        .as_u64()
        .unwrap_or(0);
    assert!(before <= 60, "only the newest page loads first ({before})");
    a.js_args(
        "const box = document.getElementById('messages'); box.scrollTop = 0; \
         const first = document.querySelector('#msg-list .msg[data-id]'); \
         window.__anchor = {id: first.dataset.id, top: first.getBoundingClientRect().top};",
        vec![],
    )
    .await;
    a.wait(
        "older messages to load",
        "document.querySelectorAll('#msg-list .msg[data-id]').length > 60",
    )
    .await;
    let shift = a
        .eval(
            "Math.abs(document.querySelector('.msg[data-id=\"' + window.__anchor.id + '\"]').getBoundingClientRect().top - window.__anchor.top)",
        )
        .await
        .as_f64()
        .unwrap_or(999.0);
    assert!(shift < 4.0, "the view jumped by {shift}px while loading older messages");

    // Scrolled up: a new message shows the "new messages" pill instead of scrolling.
    bob_api.send(&general.id, "fresh while scrolled up").await.must("send");
    a.wait("the new-messages pill", "!document.getElementById('new-pill').hidden").await;
    a.click("#new-pill").await;
    a.wait(
        "the list at the bottom and the pill gone",
        "(() => { const b = document.getElementById('messages'); \
          return document.getElementById('new-pill').hidden && b.scrollHeight - b.scrollTop - b.clientHeight < 80; })()",
    )
    .await;
    a.wait_message("fresh while scrolled up").await;

    // Day separators exist and consecutive messages from one author are grouped.
    let v = a
        .eval(
            "({days: document.querySelectorAll('#msg-list .day-sep').length, \
               grouped: document.querySelectorAll('#msg-list .msg.cont').length})",
        )
        .await;
    assert!(v["days"].as_u64().unwrap_or(0) >= 1, "a day separator: {v}");
    assert!(v["grouped"].as_u64().unwrap_or(0) >= 50, "grouped messages: {v}");

    a.assert_clean("unread").await;
    a.close().await;
}

impl Browser {
    async fn eval_args_weight(&self, chat_id: &str) -> u64 {
        self.js_args(
            "const i = document.querySelector('.chat-item[data-chat-id=\"' + arguments[0] + '\"] .chat-item-name'); \
             return i ? Number(getComputedStyle(i).fontWeight) : 0;",
            vec![json!(chat_id)],
        )
        .await
        .as_u64()
        .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_edit_delete_reply_and_reactions() {
    let scene = Scene::new(&["alice", "bob"]).await;
    let (alice_api, bob_api) = (&scene.clients[0], &scene.clients[1]);
    let chat = public_channel(alice_api, "general", &[bob_api]).await;
    let a = scene.browser("alice").await;
    let b = scene.browser("bob").await;
    a.open_chat(&chat.id).await;
    b.open_chat(&chat.id).await;

    // Edit with ↑ in the empty composer.
    a.send_message("first draft of the plan").await;
    let id = a.wait_message("first draft of the plan").await;
    b.wait_message("first draft of the plan").await;
    a.wait(
        "the message confirmed",
        "document.querySelectorAll('#msg-list .msg.pending').length === 0",
    )
    .await;
    a.type_into("#input", "\u{e013}").await; // ArrowUp
    a.wait("the edit box", "!!document.querySelector('.msg .edit-box textarea')").await;
    a.clear(".msg .edit-box textarea").await;
    a.type_into(".msg .edit-box textarea", "final plan: ship it\u{e007}").await;
    a.wait_args(
        "the edited text with (edited)",
        "(() => { const m = document.querySelector('.msg[data-id=\"' + arguments[0] + '\"]'); \
          return m && m.querySelector('.msg-body').textContent.includes('final plan: ship it') && !!m.querySelector('.edited'); })()",
        vec![json!(id)],
    )
    .await;
    b.wait_message("final plan: ship it").await;
    let m = bob_api.get_message(&chat.id, &id).await.must("get");
    assert_eq!(m.body, "final plan: ship it");
    assert!(m.edited_ms.is_some());

    // Reactions: Alice picks 🎉 from the picker; Bob sees it live and adds his own 👍.
    a.message_tool(&id, "react").await;
    a.click("#emoji-picker button[data-emoji=\"🎉\"]").await;
    let chip = ".msg[data-id=\"ID\"] .reaction[data-emoji=\"🎉\"]".replace("ID", &id);
    a.wait(
        "alice's 🎉 chip",
        &format!("(() => {{ const c = document.querySelector('{chip}'); return c && c.classList.contains('mine') && c.querySelector('.count').textContent === '1'; }})()"),
    )
    .await;
    b.wait(
        "the 🎉 chip for bob",
        &format!("(() => {{ const c = document.querySelector('{chip}'); return c && !c.classList.contains('mine'); }})()"),
    )
    .await;
    b.click(&chip).await; // Bob adds to the same reaction by clicking the chip.
    a.wait(
        "the 🎉 count to reach 2 for alice",
        &format!("(() => {{ const c = document.querySelector('{chip}'); return c && c.querySelector('.count').textContent === '2'; }})()"),
    )
    .await;
    let m = bob_api.get_message(&chat.id, &id).await.must("get");
    let v = serde_json::to_value(&m).unwrap_or_default();
    let _ = v;
    let raw = bob_api
        .raw(reqwest::Method::GET, &format!("/chats/{}/messages/{id}", chat.id), Body::None)
        .await;
    let j = raw.json().unwrap_or_default();
    assert_eq!(j["reactions"][0]["emoji"], json!("🎉"), "{j}");
    assert_eq!(j["reactions"][0]["count"], json!(2), "{j}");
    // Alice removes hers by clicking her chip.
    a.click(&chip).await;
    b.wait(
        "the 🎉 count back to 1 for bob",
        &format!("(() => {{ const c = document.querySelector('{chip}'); return c && c.classList.contains('mine') && c.querySelector('.count').textContent === '1'; }})()"),
    )
    .await;
    // Recent emoji: 🎉 is first in Alice's recent row.
    a.message_tool(&id, "react").await;
    a.wait(
        "🎉 first among recent emoji",
        "(() => { const r = document.querySelector('#emoji-recent button[data-emoji]'); return r && r.dataset.emoji === '🎉'; })()",
    )
    .await;
    a.screenshot("03-emoji-picker").await;
    a.type_into("#emoji-search", "\u{e00c}").await; // Escape closes the picker
    a.wait("the picker closed", "!document.getElementById('emoji-picker').open").await;

    // Reply in thread: Bob replies to Alice's message; the reply quotes it and opens the thread.
    b.message_tool(&id, "reply").await;
    b.wait("the reply bar", "!document.getElementById('reply-bar').hidden").await;
    b.send_message("agreed, I'll prepare the release notes").await;
    let rid = a.wait_message("prepare the release notes").await;
    let r = alice_api.get_message(&chat.id, &rid).await.must("reply");
    assert_eq!(r.reply_to.as_deref(), Some(id.as_str()), "reply_to is set");
    a.wait_args(
        "the reply's quote of the parent",
        "(() => { const q = document.querySelector('.msg[data-id=\"' + arguments[0] + '\"] .reply-quote'); \
          return q && q.textContent.includes('final plan'); })()",
        vec![json!(rid)],
    )
    .await;
    a.wait_args(
        "the parent's reply count",
        "(() => { const t = document.querySelector('.msg[data-id=\"' + arguments[0] + '\"] .thread-link'); \
          return t && t.textContent.includes('1 reply'); })()",
        vec![json!(id)],
    )
    .await;
    a.click(&format!(".msg[data-id=\"{id}\"] .thread-link")).await;
    a.wait(
        "the thread panel with parent and reply",
        "(() => { const p = document.getElementById('thread'); \
          return !p.hidden && p.textContent.includes('final plan') && p.textContent.includes('release notes'); })()",
    )
    .await;
    a.screenshot("08-thread").await;
    a.type_into("#thread-input", "thanks!\u{e007}").await;
    let tid = b.wait_message("thanks!").await;
    let t = bob_api.get_message(&chat.id, &tid).await.must("thread reply");
    assert_eq!(t.reply_to.as_deref(), Some(id.as_str()), "thread reply_to");
    a.click("#btn-thread-close").await;

    // Delete with confirmation: Cancel keeps it, Delete removes it for both.
    a.message_tool(&id, "delete").await;
    a.wait("the confirmation dialog", "document.getElementById('dlg-confirm').open").await;
    a.click("#confirm-cancel").await;
    a.wait("the dialog closed", "!document.getElementById('dlg-confirm').open").await;
    assert!(!bob_api.get_message(&chat.id, &id).await.must("get").deleted);
    a.message_tool(&id, "delete").await;
    a.click("#confirm-ok").await;
    for br in [&a, &b] {
        br.wait_args(
            "the message shown as deleted",
            "(() => { const m = document.querySelector('.msg[data-id=\"' + arguments[0] + '\"]'); \
              return m && m.classList.contains('deleted') && !m.textContent.includes('final plan: ship'); })()",
            vec![json!(id)],
        )
        .await;
    }
    assert!(bob_api.get_message(&chat.id, &id).await.must("get").deleted);

    a.assert_clean("edit/delete/reactions").await;
    b.assert_clean("edit/delete/reactions").await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_reconnects_after_node_restart_without_loss_or_duplicates() {
    let mut scene = Scene::new(&["alice", "bob"]).await;
    let chat = public_channel(&scene.clients[0], "general", &[&scene.clients[1]]).await;
    let a = scene.browser("alice").await;
    a.open_chat(&chat.id).await;
    scene.clients[1].send(&chat.id, "before the restart").await.must("send");
    a.wait_message("before the restart").await;

    scene.node.terminate().await;
    a.wait(
        "the reconnect banner",
        "!document.getElementById('conn-banner').hidden && document.body.dataset.conn !== 'live'",
    )
    .await;
    a.screenshot("04-reconnecting").await;
    // Written while the node is down: kept and sent once it is back.
    a.send_message("written while offline").await;
    a.wait("the queued bubble", "!!document.querySelector('#msg-list .msg.pending')").await;

    scene.node.start_again_same_port().await;
    let bob = &scene.clients[1];
    for t in ["after the restart 1", "after the restart 2"] {
        bob.send(&chat.id, t).await.must("send after restart");
    }
    a.wait_live().await;
    for t in [
        "before the restart",
        "after the restart 1",
        "after the restart 2",
        "written while offline",
    ] {
        a.wait_message(t).await;
    }
    a.wait(
        "the banner gone and nothing pending",
        "document.getElementById('conn-banner').hidden && !document.querySelector('#msg-list .msg.pending')",
    )
    .await;
    // A second restart while a message arrives between the two lives.
    scene.node.terminate().await;
    a.wait("offline again", "document.body.dataset.conn !== 'live'").await;
    scene.node.start_again_same_port().await;
    scene.clients[1].send(&chat.id, "after the second restart").await.must("send");
    a.wait_live().await;
    a.wait_message("after the second restart").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for t in [
        "before the restart",
        "after the restart 1",
        "after the restart 2",
        "written while offline",
        "after the second restart",
    ] {
        assert_eq!(a.count_messages(t).await, 1, "exactly one {t:?} on screen");
    }
    let all = scene.clients[0].all_messages(&chat.id).await.must("history");
    let offline: Vec<_> = all.iter().filter(|m| m.body == "written while offline").collect();
    assert_eq!(offline.len(), 1, "the offline message was stored exactly once");
    assert_eq!(all.len(), 5);
    a.assert_clean("reconnect").await;
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_quick_switcher_channel_browser_create_and_dm() {
    let scene = Scene::new(&["alice", "bob", "carol"]).await;
    let (alice_api, bob_api) = (&scene.clients[0], &scene.clients[1]);
    let eng = bob_api.create_channel("engineering", "public").await.must("channel");
    let a = scene.browser("alice").await;

    // Channel browser: join #engineering.
    a.click("#btn-browse").await;
    a.type_into("#browse-filter", "engin").await;
    a.click("#browse-list button.join").await;
    a.wait_args(
        "#engineering open after joining",
        "document.getElementById('chat').dataset.chatId === arguments[0]",
        vec![json!(eng.id)],
    )
    .await;
    assert!(alice_api.chat(&eng.id).await.must("chat").joined);

    // Create a channel with a topic.
    a.click("#btn-new-channel").await;
    a.type_into("#ch-name", "launch-plan").await;
    a.type_into("#ch-topic", "Everything about the launch").await;
    a.click("#form-channel button[type=submit]").await;
    a.wait(
        "the new channel open with its topic",
        "document.getElementById('chat-name').textContent.includes('launch-plan') && \
         document.getElementById('chat-topic').textContent.includes('Everything about the launch')",
    )
    .await;

    // Start a DM with Carol.
    a.click("#btn-new-dm").await;
    a.type_into("#dm-filter", "carol").await;
    a.click("#dm-list input[type=checkbox]").await;
    a.click("#dm-start").await;
    a.wait(
        "the DM with carol open",
        "document.getElementById('chat-name').textContent.includes('carol')",
    )
    .await;

    // Ctrl+K quick switcher back to #engineering, keyboard only.
    a.type_into("#input", "\u{e009}k\u{e000}").await;
    a.wait("the quick switcher", "document.getElementById('dlg-switch').open").await;
    a.type_into("#switch-input", "engi").await;
    a.wait(
        "engineering first in the switcher",
        "(() => { const i = document.querySelector('#switch-list .switch-item[aria-selected=\"true\"]'); return i && i.textContent.includes('engineering'); })()",
    )
    .await;
    a.screenshot("05-quick-switcher").await;
    a.type_into("#switch-input", "\u{e007}").await;
    a.wait_args(
        "#engineering open via the switcher",
        "document.getElementById('chat').dataset.chatId === arguments[0] && !document.getElementById('dlg-switch').open",
        vec![json!(eng.id)],
    )
    .await;

    // @mention completion in the composer: type "@car", Tab completes it.
    a.type_into("#input", "ping @car").await;
    a.wait(
        "the mention suggestions",
        "!document.getElementById('mention-pop').hidden && document.querySelector('#mention-pop .mention-opt.selected').textContent.includes('@carol')",
    )
    .await;
    a.type_into("#input", "\u{e004}").await; // Tab
    a.wait(
        "the completed mention",
        "document.getElementById('input').value === 'ping @carol ' && document.getElementById('mention-pop').hidden",
    )
    .await;
    a.clear("#input").await;

    // Profile and status.
    a.click("#btn-profile").await;
    a.clear("#pf-display").await;
    a.type_into("#pf-display", "Alice Chen").await;
    a.clear("#pf-status").await;
    a.type_into("#pf-status", "Heads down on the launch").await;
    a.click("#pf-dnd").await;
    a.click("#form-profile button[type=submit]").await;
    a.wait(
        "the new name in the sidebar",
        "document.getElementById('me-name').textContent === 'Alice Chen'",
    )
    .await;
    let me = alice_api.me().await.must("me");
    assert_eq!(me.display_name, "Alice Chen");
    assert_eq!(me.status_text, "Heads down on the launch");
    let raw =
        alice_api.raw(reqwest::Method::GET, "/me", Body::None).await.json().unwrap_or_default();
    assert_eq!(raw["dnd"], json!(true), "do-not-disturb turned on: {raw}");
    a.wait(
        "the DND state under the name",
        "document.getElementById('me-status').textContent.includes('Do not disturb')",
    )
    .await;

    // Accessibility basics: labelled landmarks and the log role.
    let v = a
        .eval(
            "({log: document.getElementById('messages').getAttribute('role'), \
               live: document.getElementById('messages').getAttribute('aria-live'), \
               unlabelled: Array.from(document.querySelectorAll('aside, section, nav, main, dialog')).filter(e => !e.hidden && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby')).map(e => e.id || e.className), \
               nameless: Array.from(document.querySelectorAll('#app button')).filter(b => b.offsetParent && !(b.textContent.trim() || b.getAttribute('aria-label') || b.title)).map(b => b.id || b.className)})",
        )
        .await;
    assert_eq!(v["log"], json!("log"), "{v}");
    assert_eq!(v["live"], json!("polite"), "{v}");
    assert_eq!(v["unlabelled"], json!([]), "every region is labelled: {v}");
    assert_eq!(v["nameless"], json!([]), "every visible button has a name: {v}");

    a.assert_clean("switcher").await;
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_opens_far_back_at_the_first_unread_and_catches_up_downwards() {
    let scene = Scene::new(&["alice", "bob"]).await;
    let (alice_api, bob_api) = (&scene.clients[0], &scene.clients[1]);
    let general = public_channel(alice_api, "general", &[bob_api]).await;
    let mut last = String::new();
    for i in 0..10 {
        last = bob_api.send(&general.id, &format!("already read {i}")).await.must("read msg").id;
    }
    alice_api.read(&general.id, &last).await.must("read");
    for i in 0..80 {
        bob_api.send(&general.id, &format!("unread number {i}")).await.must("unread msg");
    }
    let a = scene.browser("alice").await;
    a.wait_args(
        "80 unread on #general",
        "(() => { const c = document.querySelector('.chat-item[data-chat-id=\"' + arguments[0] + '\"] .badge.count'); return c && c.textContent === '80'; })()",
        vec![json!(general.id)],
    )
    .await;
    a.open_chat(&general.id).await;
    let v = a
        .wait(
            "the divider before the first unread, older than the newest page",
            "(() => { const d = document.querySelector('#msg-list .unread-divider'); if (!d) return null; \
              const n = d.nextElementSibling; return {next: n.querySelector('.msg-body').textContent, \
              newest: Array.from(document.querySelectorAll('#msg-list .msg-body')).some(b => b.textContent === 'unread number 79')}; })()",
        )
        .await;
    assert_eq!(v["next"], json!("unread number 0"), "{v}");
    assert_eq!(v["newest"], json!(false), "the window starts at the first unread: {v}");
    // Not marked read before the newest messages were seen.
    let e = alice_api.chat_entry(&general.id).await.must("entry");
    assert_eq!(e.map(|e| e.unread_count), Some(80), "nothing marked read yet");
    // Scrolling down loads the rest; then everything is read.
    a.wait(
        "the newest message after scrolling down",
        "(() => { const b = document.getElementById('messages'); b.scrollTop = b.scrollHeight; \
          return Array.from(document.querySelectorAll('#msg-list .msg-body')).some(x => x.textContent === 'unread number 79'); })()",
    )
    .await;
    let mut cleared = false;
    for _ in 0..50 {
        let e = alice_api.chat_entry(&general.id).await.must("entry");
        if e.is_some_and(|e| e.unread_count == 0) {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cleared, "read once the newest message was shown");
    let n = a
        .eval("new Set(Array.from(document.querySelectorAll('#msg-list .msg[data-id]')).map(m => m.dataset.id)).size === document.querySelectorAll('#msg-list .msg[data-id]').length")
        .await;
    assert_eq!(n, json!(true), "no duplicate message elements");
    a.assert_clean("far unread").await;
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_desktop_notifications_for_dms_and_mentions_only() {
    let scene = Scene::new(&["alice", "bob"]).await;
    let (alice_api, bob_api) = (&scene.clients[0], &scene.clients[1]);
    bob_api.patch_me(json!({"display_name": "Bob Martin"})).await.must("name");
    let general = public_channel(alice_api, "general", &[bob_api]).await;
    let random = public_channel(alice_api, "random", &[bob_api]).await;
    let (_, dm) = bob_api.dm(&["alice@local"]).await.must("dm");
    let a = scene.browser("alice").await;
    a.open_chat(&random.id).await;
    // Permission is asked only from a click on the button.
    let before = a.eval("Notification.permission").await;
    if before == json!("default") {
        a.click("#btn-notify").await;
        a.wait(
            "the permission answered and the button gone",
            "Notification.permission !== 'default' && document.getElementById('btn-notify').hidden",
        )
        .await;
    }
    // Record notifications with a stand-in that says permission was granted.
    a.js_args(
        "window.__notes = []; window.Notification = class { static get permission() { return 'granted'; } \
           constructor(title, o) { window.__notes.push({title, body: o.body}); } close() {} };",
        vec![],
    )
    .await;
    bob_api.send(&dm.id, "are you there?").await.must("dm");
    bob_api.send(&general.id, "plain channel chatter").await.must("chatter");
    bob_api.send(&general.id, "@alice please review").await.must("mention");
    bob_api.send(&random.id, "in the open chat").await.must("open chat");
    a.wait_message("in the open chat").await;
    a.wait("two notifications", "window.__notes.length >= 2").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let notes = a.eval("window.__notes").await;
    let focused = a.eval("document.hasFocus()").await == json!(true);
    let list = notes.as_array().cloned().unwrap_or_default();
    // The open chat notifies only when the window does not have the focus.
    let want = if focused { 2 } else { 3 };
    assert_eq!(
        list.len(),
        want,
        "a DM and a mention notify, channel chatter does not (focused: {focused}): {notes}"
    );
    assert!(
        !list.iter().any(|n| n["body"] == json!("plain channel chatter")),
        "chatter at the `mentions` level does not notify: {notes}"
    );
    assert_eq!(list[0]["title"], json!("Bob Martin"), "{notes}");
    assert_eq!(list[0]["body"], json!("are you there?"), "{notes}");
    assert_eq!(list[1]["title"], json!("Bob Martin in #general"), "{notes}");
    a.wait("the unread count in the tab title", "/^\\(\\d+\\) Confab$/.test(document.title)").await;
    a.assert_clean("notifications").await;
    a.close().await;
}
