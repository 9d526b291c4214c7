//! Push in the browser: the profile dialog enrols this browser as a device (WebCrypto keys,
//! a relay queue, a capability for the node, a push subscription with the relay's VAPID key);
//! the relay pushes an encrypted wake-up to a local push service, and the service worker, woken
//! with it by DevTools' `ServiceWorker.deliverPushMessage`, fetches and opens the sealed
//! envelope and shows one notification for the message; the relay read none of it. Clicking the
//! notification opens its chat in the app, and a changed push subscription reaches the relay.
//! In Firefox, whose push service a pref points at the test push service, the subscription,
//! the decryption and the push event are all the browser's own.

use std::time::{Duration, Instant};

use confab_tests::push_service::TestPushService;
use confab_tests::relay::TestRelay;
use reqwest::Method;
use serde_json::{json, Value};

use super::*;

/// The notifications the page's service worker shows, as `title|body`.
const NOTIFICATIONS: &str = "navigator.serviceWorker.getRegistration()\
    .then(r => r ? r.getNotifications() : [])\
    .then(ns => ns.map(n => n.title + '|' + n.body))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_service_worker_shows_a_pushed_message_once() {
    let relay = TestRelay::start().await.expect("start a relay");
    let (node, clients) =
        alice_and_bob_pushing(&format!("default_relay_url = \"{}\"", relay.url())).await;
    let (alice, bob_api) = (&clients[0], &clients[1]);
    let base = node.base_url();
    let (_driver, bob) = chromium_signed_in_as_bob(&base).await;

    // Headless Chromium has no push service, so `PushManager.subscribe` never succeeds there.
    // The test stands in for it: the page's subscribe hands out a subscription at the test push
    // service (keeping the application server key it was asked with), and everything after it
    // is real: the relay's encrypted, VAPID-signed push goes to that service over HTTP, and the
    // service worker gets its decrypted payload as the browser's push service would hand it on.
    let push = TestPushService::start().await.expect("push service");
    stand_in_push_service(&bob, &push, "bob-browser").await;

    // Enrol from the profile dialog (a click, as browsers require).
    bob.click("#btn-profile").await;
    bob.click("#pf-push").await;
    let status = bob
        .wait(
            "the device to be set up",
            "(t => /push is on|registered as a device|could not/i.test(t) && t)(document.getElementById('pf-push-status').textContent)",
        )
        .await;
    assert_eq!(status, json!("Push is on for this browser."));
    let vapid = relay_vapid_key(&relay).await;
    assert_eq!(
        bob.eval("[window.__applicationServerKey, window.__userVisibleOnly]").await,
        json!([vapid["vapid_public_key"], true]),
        "subscribed with the relay's VAPID key"
    );
    let devices: Value = bob_api.call(Method::GET, "/devices", None).await.must("devices");
    let device = &devices["devices"][0];
    assert_eq!(device["relay"]["url"], relay.url(), "{devices} ({status})");
    bob.wait(
        "the service worker",
        "navigator.serviceWorker.getRegistration().then(r => !!(r && r.active))",
    )
    .await;
    bob.assert_clean("push enrolment").await;

    // Bob closes the app (the service worker stays); alice writes.
    close_app(&bob, &base, bob_api).await;
    let canary = format!("canary{:016x}", fastrand::u64(..));
    let text = format!("are you there? {canary}");
    let dm = send_pushed_dm(alice, &node, &text).await;

    // The relay's wake-up reached the push service: content-free, and it decrypts.
    let wake_up = push
        .wait_for("bob-browser", 1, Duration::from_secs(15))
        .await
        .expect("the relay pushed a wake-up")
        .remove(0);
    let payload = String::from_utf8(wake_up.plaintext.expect("decrypts")).expect("utf-8");
    assert_eq!(
        serde_json::from_str::<Value>(&payload).expect("json"),
        json!({"v": 1, "pending": 1})
    );
    assert!(!wake_up.body.windows(canary.len()).any(|w| w == canary.as_bytes()));
    assert_eq!(wake_up.audience.as_deref(), Some(push.origin()));
    // The push service hands it to the browser (DevTools stands in for that last hop).
    deliver_push(&bob, &base, &payload).await;
    let shown = bob
        .wait("the notification", &format!("{NOTIFICATIONS}.then(ns => ns.length ? ns : null)"))
        .await;
    assert_eq!(shown, json!([format!("alice@local|{text}")]));

    // A second wake-up finds nothing new: still one notification.
    deliver_push(&bob, &base, &payload).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bob.eval(NOTIFICATIONS).await, shown);

    // Back in the app, on another chat: clicking the notification opens the DM, where the
    // message is once. DevTools has no notification click, so the service worker is handed
    // the click event for the notification it shows.
    let other = public_channel(alice, "general", &[bob_api]).await;
    bob.goto(&format!("{base}/#{}", other.id)).await;
    bob.wait_live().await;
    bob.open_chat(&other.id).await;
    let clicked = bob
        .eval_in_service_worker(
            "self.registration.getNotifications().then(ns => {                if (ns.length !== 1) return 'notifications: ' + ns.length;                self.dispatchEvent(new NotificationEvent('notificationclick', { notification: ns[0] }));                return ns[0].data.chat_id; })",
        )
        .await
        .expect("click in the service worker");
    assert_eq!(clicked, json!(dm.id.as_str()));
    bob.wait_args(
        "the clicked notification's chat to open",
        "document.getElementById('chat').dataset.chatId === arguments[0] && \
         document.getElementById('chat').dataset.loaded === '1'",
        vec![json!(dm.id.as_str())],
    )
    .await;
    bob.wait_message(&text).await;
    assert_eq!(bob.count_messages(&text).await, 1);
    assert_eq!(bob.eval(NOTIFICATIONS).await, json!([]), "the click closed it");
    bob.assert_clean("after the push").await;

    // The push service changes the subscription: the service worker subscribes again (the
    // same stand-in for the missing push service, now in the worker) and hands the relay the
    // new one, where the next wake-up goes.
    let renewed = bob
        .eval_in_service_worker(&format!(
            "(() => {{ const sub = {subscription};
                PushManager.prototype.subscribe = async () => ({{ endpoint: sub.endpoint, toJSON: () => sub }});
                const event = typeof PushSubscriptionChangeEvent === 'function'
                  ? new PushSubscriptionChangeEvent('pushsubscriptionchange', {{}})
                  : new ExtendableEvent('pushsubscriptionchange');
                self.dispatchEvent(event);
                return true; }})()",
            subscription = push.subscription("bob-browser-2"),
        ))
        .await
        .expect("subscription change in the service worker");
    assert_eq!(renewed, json!(true));
    close_app(&bob, &base, bob_api).await;
    let later = format!("after the subscription changed {canary}");
    alice.send(&dm.id, &later).await.must("send");
    push.wait_for("bob-browser-2", 1, Duration::from_secs(15))
        .await
        .expect("the relay pushed to the new subscription");
    assert_eq!(push.pushes_to("bob-browser").len(), 1, "nothing more to the old subscription");
    bob.goto(&format!("{base}/#{}", dm.id)).await;
    bob.wait_live().await;

    // Removing this browser from the profile dialog forgets it on the node and at the relay.
    bob.click("#btn-profile").await;
    bob.wait(
        "this browser in the device list",
        "[...document.querySelectorAll('#pf-devices li')].some(li => li.textContent.includes('(this browser)'))",
    )
    .await;
    bob.screenshot("12-push-devices").await;
    bob.click("#pf-devices li button").await;
    bob.wait(
        "the device list to empty",
        "document.querySelectorAll('#pf-devices li').length === 0 && /not set up/i.test(document.getElementById('pf-push-status').textContent)",
    )
    .await;
    let devices: Value = bob_api.call(Method::GET, "/devices", None).await.must("devices");
    assert_eq!(devices["devices"], json!([]));
    bob.assert_clean("device removed").await;

    // The relay held ciphertext only.
    assert!(!relay.output().contains(&canary), "the canary is in the relay's logs");
    bob.close().await;
}

/// The page's `PushManager.subscribe` hands out a subscription at `push` named `name`, keeping
/// the application server key and `userVisibleOnly` it was asked with in `window`.
async fn stand_in_push_service(browser: &Browser, push: &TestPushService, name: &str) {
    browser
        .eval(&format!(
            r"(() => {{ const sub = {subscription};
            PushManager.prototype.subscribe = async function (options) {{
              const key = new Uint8Array(options.applicationServerKey);
              window.__applicationServerKey = btoa(String.fromCharCode(...key)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
              window.__userVisibleOnly = options.userVisibleOnly;
              return {{ endpoint: sub.endpoint, toJSON: () => sub, unsubscribe: async () => true }};
            }};
            return true; }})()",
            subscription = push.subscription(name),
        ))
        .await;
}

/// The profile dialog offers the node's relays, the default first; the user picks another
/// offered relay, and messages for the closed app wait there. A relay the node does not offer
/// is refused before anything is made, and one that cannot be reached leaves no device behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_enrols_with_the_relay_its_user_chooses() {
    let default_relay = TestRelay::start().await.expect("start the default relay");
    let chosen_relay = TestRelay::start().await.expect("start the other relay");
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://127.0.0.1:{}", listener.local_addr().expect("addr").port())
    };
    let (node, clients) = alice_and_bob_pushing(&format!(
        "default_relay_url = \"{}\"\nrelay_urls = [\"{down}\", \"{}/\"]",
        default_relay.url(),
        chosen_relay.url()
    ))
    .await;
    let (alice, bob_api) = (&clients[0], &clients[1]);
    let base = node.base_url();
    let (_driver, bob) = chromium_signed_in_as_bob(&base).await;
    let push = TestPushService::start().await.expect("push service");
    stand_in_push_service(&bob, &push, "bob-chosen").await;

    bob.click("#btn-profile").await;
    let offered = bob
        .wait(
            "the relay choice",
            "!document.getElementById('pf-relay-row').hidden && \
             [document.getElementById('pf-relay').value, \
              [...document.querySelectorAll('#pf-relay-options option')].map(o => o.value)]",
        )
        .await;
    assert_eq!(
        offered,
        json!([default_relay.url(), [default_relay.url(), down, chosen_relay.url()]])
    );
    let enable_with = |relay: String| {
        let bob = &bob;
        async move {
            bob.eval(&format!(
                "(document.getElementById('pf-relay').value = {}, true)",
                json!(relay)
            ))
            .await;
            bob.click("#pf-push").await;
            bob.wait(
                "push set up or refused",
                "(t => /push is on|registered as a device|could not/i.test(t) && t)(document.getElementById('pf-push-status').textContent)",
            )
            .await
        }
    };
    let no_devices = || async {
        let devices: Value = bob_api.call(Method::GET, "/devices", None).await.must("devices");
        assert_eq!(devices["devices"], json!([]), "no device left behind");
    };

    let status = enable_with("https://relay.elsewhere.example".into()).await;
    assert!(
        status
            .as_str()
            .is_some_and(|t| t.starts_with("Could not set up push: this node pushes only through")),
        "{status}"
    );
    no_devices().await;
    let status = enable_with(down.clone()).await;
    assert!(
        status.as_str().is_some_and(|t| t
            .starts_with(&format!("Could not set up push: the relay {down} cannot be reached"))),
        "{status}"
    );
    no_devices().await;
    let status = enable_with(format!("{}/", chosen_relay.url())).await;
    assert_eq!(status, json!("Push is on for this browser."));
    let devices: Value = bob_api.call(Method::GET, "/devices", None).await.must("devices");
    assert_eq!(devices["devices"][0]["relay"]["url"], chosen_relay.url());
    assert_eq!(
        bob.eval("document.getElementById('pf-relay-row').hidden").await,
        json!(true),
        "no relay choice once enrolled"
    );
    bob.assert_clean("enrolled with the chosen relay").await;

    // Messages for the closed app wait at the chosen relay, which wakes the browser.
    bob.wait(
        "the service worker",
        "navigator.serviceWorker.getRegistration().then(r => !!(r && r.active))",
    )
    .await;
    close_app(&bob, &base, bob_api).await;
    send_pushed_dm(alice, &node, "through the relay bob chose").await;
    push.wait_for("bob-chosen", 1, Duration::from_secs(15))
        .await
        .expect("the chosen relay pushed a wake-up");
    assert_eq!(chosen_relay.metric("confab_relay_queue_depth").await, Some(1));
    assert_eq!(default_relay.metric("confab_relay_queue_depth").await, Some(0));
    bob.close().await;
}

/// Leaves the app for another page of the node; the service worker stays. The app closes its
/// socket when the page is hidden (even into the back/forward cache), so the device is offline.
async fn close_app(browser: &Browser, base: &str, api: &Client) {
    browser.goto(&format!("{base}/style.css")).await;
    wait_until_offline(api).await;
}

/// Waits until the user's (first) device has no live session.
async fn wait_until_offline(api: &Client) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let devices: Value = api.call(Method::GET, "/devices", None).await.must("devices");
        if devices["devices"][0]["live"] == false {
            return;
        }
        assert!(Instant::now() < deadline, "the device stayed live: {devices}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node whose `[push]` section is `push_settings`, with alice and bob.
async fn alice_and_bob_pushing(push_settings: &str) -> (TestNode, Vec<Client>) {
    let opts = NodeOptions {
        config: Some(format!("[push]\n{push_settings}\n")),
        ..NodeOptions::default()
    };
    confab_tests::node_with_users_opts(&["alice", "bob"], opts).await
}

/// A chromedriver and a Chromium signed in as bob, allowed to show notifications.
async fn chromium_signed_in_as_bob(base: &str) -> (Driver, Browser) {
    let driver = Driver::start().await;
    let bob = Browser::open(&driver, "bob", BrowserOpts::default()).await;
    bob.cdp("Browser.grantPermissions", json!({"origin": base, "permissions": ["notifications"]}))
        .await
        .expect("grant notifications");
    bob.sign_in(base, "bob", PASSWORD).await;
    (driver, bob)
}

/// Alice writes `text` to bob in their DM (answered); the node pushes it to bob's (offline)
/// device.
async fn send_pushed_dm(alice: &Client, node: &TestNode, text: &str) -> Chat {
    let (_, dm) = alice.dm(&["bob@local"]).await.must("dm");
    let message = alice.send(&dm.id, text).await.must("send");
    assert!(
        reaches_state(alice, &dm.id, &message.id, "notification_sent", Duration::from_secs(15))
            .await,
        "the node never pushed the message:\n{}",
        node.log_tail(30)
    );
    dm
}

/// The relay's `GET /v1/vapid` answer (`vapid_public_key`: what a subscription must name).
async fn relay_vapid_key(relay: &TestRelay) -> Value {
    reqwest::get(format!("{}/v1/vapid", relay.url()))
        .await
        .expect("relay vapid")
        .json()
        .await
        .expect("vapid json")
}

/// `ServiceWorker.deliverPushMessage` needs the registration id, which DevTools reports only
/// as events chromedriver does not relay; a fresh profile's first registration has a small id.
async fn deliver_push(browser: &Browser, origin: &str, data: &str) {
    browser.cdp("ServiceWorker.enable", json!({})).await.expect("ServiceWorker.enable");
    let mut errors = Vec::new();
    for id in 0..8 {
        match browser
            .cdp(
                "ServiceWorker.deliverPushMessage",
                json!({"origin": origin, "registrationId": id.to_string(), "data": data}),
            )
            .await
        {
            Ok(_) => return,
            Err(e) => errors.push(e),
        }
    }
    panic!("no service worker registration took the push: {errors:?}");
}

/// A real push subscription, end to end, in a real Firefox: the profile dialog's click makes
/// Firefox's own `PushManager.subscribe` register with the test push service (Mozilla's push
/// protocol) under the relay's VAPID key; the relay's encrypted push for a message reaches
/// Firefox through that service still encrypted, Firefox decrypts it with its own keys and
/// acknowledges it as delivered to the service worker, which opens the sealed envelope and
/// shows the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_subscribes_for_real_and_shows_the_pushed_message() {
    let relay = TestRelay::start().await.expect("start a relay");
    let (node, clients) =
        alice_and_bob_pushing(&format!("default_relay_url = \"{}\"", relay.url())).await;
    let (alice, bob_api) = (&clients[0], &clients[1]);
    let base = node.base_url();
    let push = TestPushService::start().await.expect("push service");
    let mut bob = super::firefox::Firefox::launch(&push.autopush_url()).await;

    bob.goto(&format!("{base}/")).await;
    bob.wait("the sign-in form", "!document.getElementById('auth').hidden").await;
    bob.eval(&format!(
        "(() => {{ document.getElementById('auth-username').value = 'bob';
                  document.getElementById('auth-password').value = {password};
                  document.getElementById('auth-submit').click(); return true; }})()",
        password = json!(PASSWORD)
    ))
    .await;
    bob.wait(
        "the app with a live connection",
        "!document.getElementById('app').hidden && document.body.dataset.conn === 'live'",
    )
    .await;
    bob.eval("(document.getElementById('btn-profile').click(), true)").await;
    bob.eval("(document.getElementById('pf-push').click(), true)").await;
    let status = bob
        .wait(
            "the device to be set up",
            "(t => /push is on|registered as a device|could not/i.test(t) && t)(document.getElementById('pf-push-status').textContent)",
        )
        .await;
    assert_eq!(status, json!("Push is on for this browser."));
    let channels = push.channels();
    assert_eq!(channels.len(), 1, "Firefox registered one channel");
    let (channel, key) = channels[0].clone();
    let vapid = relay_vapid_key(&relay).await;
    assert_eq!(json!(key), vapid["vapid_public_key"], "subscribed with the relay's VAPID key");
    bob.wait(
        "the service worker",
        "navigator.serviceWorker.getRegistration().then(r => !!(r && r.active))",
    )
    .await;

    // Bob leaves the app (the service worker stays); alice writes.
    bob.goto(&format!("{base}/style.css")).await;
    wait_until_offline(bob_api).await;
    let canary = format!("canary{:016x}", fastrand::u64(..));
    let text = format!("lunch at one? {canary}");
    send_pushed_dm(alice, &node, &text).await;

    // Firefox decrypted the relay's push and handed it to the service worker (ack code 100;
    // 101 would mean it did not decrypt).
    let acks =
        push.wait_for_acks(1, Duration::from_secs(20)).await.expect("Firefox answered the push");
    assert_eq!((acks[0].channel.as_str(), acks[0].code), (channel.as_str(), 100), "{acks:?}");
    let pushes = push.pushes_to(&channel);
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].audience.as_deref(), Some(push.origin()));
    assert!(!pushes[0].body.windows(canary.len()).any(|w| w == canary.as_bytes()));
    // The service worker fetched the sealed envelope from the relay, acknowledged it there,
    // opened it and showed the message, all while the app was closed.
    let shown = bob
        .wait(
            "the notification",
            "navigator.serviceWorker.getRegistration()
               .then(r => r ? r.getNotifications() : [])
               .then(ns => ns.length ? ns.map(n => n.title + '|' + n.body) : null)",
        )
        .await;
    assert_eq!(shown, json!([format!("alice@local|{text}")]));
    assert_eq!(relay.metric("confab_relay_queue_depth").await, Some(0));
    assert!(!relay.output().contains(&canary), "the canary is in the relay's logs");
}
