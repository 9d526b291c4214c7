//! Accounts: registration, login, logout, rate limits, admin controls, profile, cookies.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_first_user_admin_duplicate_conflicts() {
    let node = TestNode::start().await;
    let a = Client::for_node(&node);
    let alice = a.register_named("alice", PASSWORD, "Alice").await.must("register alice");
    assert_eq!(alice.id, "alice@local");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.display_name, "Alice");
    assert!(alice.is_admin, "the first user must become admin: {alice:?}");
    assert!(!alice.disabled);
    assert!(alice.created_ms > 1_600_000_000_000, "created_ms is ms since epoch: {alice:?}");

    let b = Client::for_node(&node);
    let bob = b.register("bob", PASSWORD).await.must("register bob");
    assert_eq!(bob.id, "bob@local");
    assert!(!bob.is_admin, "only the first user is admin: {bob:?}");

    Client::for_node(&node).register("bob", "another password").await.err_is(
        409,
        "username_taken",
        "register a taken name",
    );

    // Registration logs in.
    assert_eq!(a.me().await.must("alice me").id, "alice@local");
    assert_eq!(b.me().await.must("bob me").id, "bob@local");

    let users = b.users().await.must("users");
    let mut ids: Vec<_> = users.iter().map(|u| u.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, vec!["alice@local", "bob@local"]);
    assert_eq!(b.user("alice@local").await.must("user alice").username, "alice");
    b.user("nobody@local").await.err_is(404, "not_found", "unknown user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_validates_username_and_password() {
    let node = TestNode::start().await;
    let c = Client::for_node(&node);
    let long = "a".repeat(33);
    for bad in ["", "Alice", "-bob", ".x", "has space", "ümlaut", long.as_str()] {
        c.register(bad, PASSWORD).await.err_is(
            400,
            "invalid_username",
            &format!("username {bad:?}"),
        );
    }
    c.register("short", "1234567").await.err_is(400, "invalid_password", "7-character password");
    let c2 = Client::for_node(&node);
    let ok32 = format!("a{}", "b".repeat(31));
    c2.register(&ok32, "12345678").await.must("32-char username, 8-char password");
    Client::for_node(&node)
        .register("x0.y_z-9", PASSWORD)
        .await
        .must("username with . _ - and digits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_logout_and_wrong_password() {
    let node = TestNode::start().await;
    let a = Client::for_node(&node);
    a.register("alice", PASSWORD).await.must("register");

    let c = Client::for_node(&node);
    c.me().await.err_is(401, "unauthenticated", "me without session");
    c.login("alice", "wrong password").await.err_is(401, "invalid_credentials", "wrong password");
    c.login("nobody", PASSWORD).await.err_is(401, "invalid_credentials", "unknown user");
    let u = c.login("alice", PASSWORD).await.must("login");
    assert_eq!(u.id, "alice@local");
    let cookie = c.session_cookie().expect("login must set confab_session");
    assert_eq!(c.me().await.must("me after login").id, "alice@local");

    assert_eq!(c.logout().await.must("logout"), 204, "logout answers 204");
    c.me().await.err_is(401, "unauthenticated", "me after logout");
    // The old cookie value is dead server-side, not only cleared in the jar.
    Client::with_session_cookie(&node.base_url(), &cookie).me().await.err_is(
        401,
        "unauthenticated",
        "replayed cookie after logout",
    );
    // Logging out one session leaves the other.
    assert_eq!(a.me().await.must("register session still alive").id, "alice@local");
    c.login("alice", PASSWORD).await.must("login again");
}

fn retry_after_secs(e: &ApiError) -> u64 {
    let Some(ra) = &e.retry_after else {
        panic!("429 must carry Retry-After: {e}");
    };
    match ra.trim().parse::<u64>() {
        Ok(s) if s > 0 => s,
        _ => panic!("Retry-After must be a positive number of seconds, got {ra:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rate_limited_per_account() {
    let node = TestNode::start().await;
    Client::for_node(&node).register("alice", PASSWORD).await.must("register alice");
    Client::for_node(&node).register("bob", PASSWORD).await.must("register bob");
    let c = Client::for_node(&node);
    for i in 1..=10 {
        c.login("alice", "wrong password").await.err_is(
            401,
            "invalid_credentials",
            &format!("failure {i} of 10"),
        );
    }
    let e =
        c.login("alice", "wrong password").await.err_is(429, "rate_limited", "11th failed login");
    retry_after_secs(&e);
    let e = c.login("alice", PASSWORD).await.err_is(
        429,
        "rate_limited",
        "right password while the account is limited",
    );
    retry_after_secs(&e);

    // An address that has not failed gets one try at the locked account: a wrong password is
    // refused and uses it up, so the right one is refused from there too ...
    let guesser =
        Client::for_node(&node).with_local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    guesser.login("alice", "wrong password").await.err_is(
        429,
        "rate_limited",
        "a wrong password at the locked account from a new address",
    );
    guesser.login("alice", PASSWORD).await.err_is(
        429,
        "rate_limited",
        "the right password from an address that failed at the locked account",
    );
    // ... while the owner, from an address that has not failed, gets in: a guesser elsewhere
    // cannot lock them out. Another account is not limited either.
    let other = Client::for_node(&node).with_local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    other.login("bob", PASSWORD).await.must("another account from another address");
    other.login("alice", PASSWORD).await.must("the owner from an address that has not failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rate_limited_per_address() {
    let node = TestNode::start().await;
    let names = ["u1", "u2", "u3", "u4"];
    for n in names {
        Client::for_node(&node).register(n, PASSWORD).await.must("register");
    }
    let c = Client::for_node(&node);
    // 10 failures spread over 4 accounts (at most 3 each): all 401.
    for i in 0..10 {
        let n = names[i % names.len()];
        c.login(n, "wrong password").await.err_is(
            401,
            "invalid_credentials",
            &format!("address failure {}", i + 1),
        );
    }
    // u4 has only 2 failures of its own; the address has 10.
    let e = c.login("u4", "wrong password").await.err_is(
        429,
        "rate_limited",
        "11th failure from one address",
    );
    retry_after_secs(&e);
    c.login("u4", PASSWORD).await.err_is(
        429,
        "rate_limited",
        "right password from the limited address",
    );
    let other = Client::for_node(&node).with_local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    other
        .login("u4", PASSWORD)
        .await
        .must("same account from another address (not account-limited)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_closes_registration() {
    let (node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    bob.admin_settings().await.err_is(403, "forbidden", "non-admin reads settings");
    bob.set_registration_open(false).await.err_is(403, "forbidden", "non-admin changes settings");
    assert!(alice.admin_settings().await.must("settings").registration_open);
    let s = alice.set_registration_open(false).await.must("close");
    assert!(!s.registration_open);
    assert!(!alice.admin_settings().await.must("settings").registration_open);
    Client::for_node(&node).register("carol", PASSWORD).await.err_is(
        403,
        "registration_closed",
        "register while closed",
    );
    // Existing users still log in.
    Client::for_node(&node).login("bob", PASSWORD).await.must("login while registration closed");
    alice.set_registration_open(true).await.must("reopen");
    Client::for_node(&node).register("carol", PASSWORD).await.must("register after reopening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_disables_and_enables_user() {
    let (node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    bob.disable_user("alice@local").await.err_is(403, "forbidden", "non-admin disables");
    let mut bob_ws = bob.ws_ok(None).await;
    let cookie = bob.session_cookie().expect("bob has a session cookie");

    let u = alice.disable_user("bob@local").await.must("disable bob");
    assert_eq!(u.id, "bob@local");
    assert!(u.disabled, "disable answers the disabled user: {u:?}");
    assert!(alice.user("bob@local").await.must("get bob").disabled);

    bob.me().await.err_is(401, "unauthenticated", "disabled user's session");
    Client::with_session_cookie(&node.base_url(), &cookie).me().await.err_is(
        401,
        "unauthenticated",
        "disabled user's cookie replayed",
    );
    assert!(
        bob_ws.wait_closed(Duration::from_secs(10)).await,
        "disabling a user must close their WebSockets"
    );
    Client::for_node(&node).login("bob", PASSWORD).await.err_is(
        403,
        "user_disabled",
        "disabled user logs in",
    );
    match bob.ws(None).await {
        Ok(_) => panic!("disabled user's WebSocket upgrade must be refused"),
        Err(e) => assert_eq!(e.status, Some(401), "disabled user's ws upgrade: {e}"),
    }

    let u = alice.enable_user("bob@local").await.must("enable bob");
    assert!(!u.disabled);
    let b2 = Client::for_node(&node);
    b2.login("bob", PASSWORD).await.must("login after enable");
    b2.me().await.must("me after enable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_edit() {
    let (_node, cl) = setup(&["alice", "bob"]).await;
    let (alice, bob) = (&cl[0], &cl[1]);
    let u = alice
        .patch_me(json!({"display_name": "Alice A.", "status_text": "at lunch",
                         "time_zone": "Europe/Berlin", "team": "core"}))
        .await
        .must("patch me");
    assert_eq!(
        (u.display_name.as_str(), u.status_text.as_str(), u.time_zone.as_str(), u.team.as_str()),
        ("Alice A.", "at lunch", "Europe/Berlin", "core")
    );
    let u = alice.patch_me(json!({"status_text": "back"})).await.must("partial patch");
    assert_eq!(u.status_text, "back");
    assert_eq!(u.display_name, "Alice A.", "a partial patch keeps other fields");
    assert_eq!(alice.me().await.must("me"), u);
    let seen = bob.user("alice@local").await.must("bob reads alice");
    assert_eq!(seen.display_name, "Alice A.");
    assert_eq!(seen.team, "core");
    let listed = bob.users().await.must("users");
    assert!(
        listed.iter().any(|x| x.id == "alice@local" && x.status_text == "back"),
        "users lists the edited profile: {listed:?}"
    );
}

fn cookie_attrs_ok(set_cookie: &[String], ctx: &str) -> String {
    let Some(c) = set_cookie.iter().find(|c| c.trim_start().starts_with("confab_session=")) else {
        panic!("{ctx}: no confab_session Set-Cookie among {set_cookie:?}");
    };
    let attrs: Vec<String> = c.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect();
    assert!(attrs.iter().any(|a| a == "httponly"), "{ctx}: cookie must be HttpOnly: {c}");
    assert!(
        attrs.iter().any(|a| a == "samesite=strict"),
        "{ctx}: cookie must be SameSite=Strict: {c}"
    );
    assert!(attrs.iter().any(|a| a == "path=/"), "{ctx}: cookie must have Path=/: {c}");
    assert!(
        !attrs.iter().any(|a| a == "secure"),
        "{ctx}: cookie over plain http on loopback must not be Secure (browsers would drop it): {c}"
    );
    c.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_attributes() {
    let node = TestNode::start().await;
    let c = Client::for_node(&node);
    let r = c
        .raw(
            Method::POST,
            "/auth/register",
            Body::Json(json!({"username": "alice", "password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 201, "register answers 201: {}", r.body);
    cookie_attrs_ok(&r.set_cookies(), "register");

    let r = c
        .raw(
            Method::POST,
            "/auth/login",
            Body::Json(json!({"username": "alice", "password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 200, "login answers 200: {}", r.body);
    cookie_attrs_ok(&r.set_cookies(), "login");

    let r = c.raw(Method::POST, "/auth/logout", Body::None).await;
    assert_eq!(r.status, 204, "logout answers 204: {}", r.body);
    let cleared = r.set_cookies().iter().any(|s| {
        let l = s.to_ascii_lowercase();
        l.starts_with("confab_session=")
            && (l.contains("max-age=0")
                || l.starts_with("confab_session=;")
                || l.contains("expires=thu, 01 jan 1970"))
    });
    assert!(
        cleared,
        "logout must clear the cookie (Max-Age=0 / empty / expired): {:?}",
        r.set_cookies()
    );
}
