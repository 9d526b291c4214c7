//! The HTTP API through `oneshot`: error shapes, limits, cookies, permissions.

use super::harness::TestNode;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use confab_node::config::Limits;
use serde_json::json;

#[tokio::test]
async fn register_sets_a_strict_cookie_and_the_first_user_is_admin() {
    let node = TestNode::start(Limits::default()).await;
    let (status, headers, body) = node
        .request(
            "POST",
            "/api/v1/auth/register",
            None,
            Some(json!({"username": "alice", "password": "password123"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["is_admin"], true);
    let cookie = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let bob = node.register("bob").await;
    let (_, _, me) = node.request("GET", "/api/v1/me", Some(&bob), None).await;
    assert_eq!(me["is_admin"], false);
    assert_eq!(me["id"], "bob@local");
}

#[tokio::test]
async fn readyz_says_not_ready_once_shutdown_starts() {
    let node = TestNode::start(Limits::default()).await;
    let (status, _, body) = node.request("GET", "/readyz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")), "{body}");
    node.signal_shutdown();
    let (status, _, body) = node.request("GET", "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "not_ready", "{body}");
    assert_eq!(body["message"], "the node is shutting down", "{body}");
    // Liveness is not readiness: the process still serves.
    let (status, _, body) = node.request("GET", "/healthz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")), "{body}");
}

#[tokio::test]
async fn errors_have_one_json_shape() {
    let node = TestNode::start(Limits::default()).await;
    let request = Request::post("/api/v1/auth/register")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (status, _, body) = node.raw(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "bad_request");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    let (status, _, body) = node.request("GET", "/api/v1/chats", None, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );

    let (status, _, body) = node.request("GET", "/api/v1/nope", None, None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

    let (status, _, body) = node
        .request(
            "POST",
            "/api/v1/auth/register",
            None,
            Some(json!({"username": "Bad Name", "password": "password123"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_username"))
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_in_the_json_shape() {
    let limits = Limits { request_body_bytes_max: 1024, ..Limits::default() };
    let node = TestNode::start(limits).await;
    let big = "x".repeat(4096);
    let (status, _, body) = node
        .request(
            "POST",
            "/api/v1/auth/register",
            None,
            Some(json!({"username": "alice", "password": big})),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["code"], "payload_too_large");
}

#[tokio::test]
async fn foreign_origin_is_refused_on_state_changes() {
    let node = TestNode::start(Limits::default()).await;
    let request = Request::post("/api/v1/auth/register")
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"username": "alice", "password": "password123"}).to_string()))
        .unwrap();
    let (status, _, body) = node.raw(request).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden_origin")));
    let request = Request::post("/api/v1/auth/register")
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "http://127.0.0.1:8080")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"username": "alice", "password": "password123"}).to_string()))
        .unwrap();
    assert_eq!(node.raw(request).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn message_length_limit_is_413_with_a_clear_message() {
    let node = TestNode::start(Limits::default()).await;
    let alice = node.register("alice").await;
    let (_, _, chat) = node
        .request(
            "POST",
            "/api/v1/channels",
            Some(&alice),
            Some(json!({"name": "general", "visibility": "public"})),
        )
        .await;
    let path = format!("/api/v1/chats/{}/messages", chat["id"].as_str().unwrap());
    let (status, _, body) =
        node.request("POST", &path, Some(&alice), Some(json!({"body": "é".repeat(100_001)}))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["code"], "message_too_long");
    assert!(body["message"].as_str().unwrap().contains("100001"));
    let (status, _, _) =
        node.request("POST", &path, Some(&alice), Some(json!({"body": "é".repeat(100_000)}))).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn private_channels_are_invisible_to_non_members() {
    let node = TestNode::start(Limits::default()).await;
    let alice = node.register("alice").await;
    let eve = node.register("eve").await;
    let (_, _, chat) = node
        .request(
            "POST",
            "/api/v1/channels",
            Some(&alice),
            Some(json!({"name": "secret", "visibility": "private"})),
        )
        .await;
    let id = chat["id"].as_str().unwrap();
    node.request(
        "POST",
        &format!("/api/v1/chats/{id}/messages"),
        Some(&alice),
        Some(json!({"body": "psst"})),
    )
    .await;
    for path in [
        format!("/api/v1/chats/{id}/messages"),
        format!("/api/v1/chats/{id}"),
        format!("/api/v1/chats/{id}/members"),
    ] {
        let (status, _, body) = node.request("GET", &path, Some(&eve), None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("not_a_member")),
            "{path}"
        );
    }
    let (status, _, _) =
        node.request("POST", &format!("/api/v1/chats/{id}/join"), Some(&eve), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, channels) = node.request("GET", "/api/v1/channels", Some(&eve), None).await;
    assert_eq!(channels.as_array().unwrap().len(), 0);
    let (status, _, _) = node
        .request(
            "POST",
            &format!("/api/v1/chats/{id}/messages"),
            Some(&eve),
            Some(json!({"body": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn dms_are_one_per_set_of_people() {
    let node = TestNode::start(Limits::default()).await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let (status, _, first) = node
        .request("POST", "/api/v1/dms", Some(&alice), Some(json!({"user_ids": ["bob@local"]})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, again) = node
        .request("POST", "/api/v1/dms", Some(&bob), Some(json!({"user_ids": ["alice@local"]})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["id"], again["id"]);
    let (status, _, _) = node
        .request("POST", "/api/v1/dms", Some(&alice), Some(json!({"user_ids": ["nobody@local"]})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn edit_and_delete_rights() {
    let node = TestNode::start(Limits::default()).await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let (_, _, chat) = node
        .request(
            "POST",
            "/api/v1/channels",
            Some(&alice),
            Some(json!({"name": "general", "visibility": "public"})),
        )
        .await;
    let id = chat["id"].as_str().unwrap();
    node.request("POST", &format!("/api/v1/chats/{id}/join"), Some(&bob), None).await;
    let (_, _, message) = node
        .request(
            "POST",
            &format!("/api/v1/chats/{id}/messages"),
            Some(&bob),
            Some(json!({"body": "from bob"})),
        )
        .await;
    let path = format!("/api/v1/chats/{id}/messages/{}", message["id"].as_str().unwrap());
    let (status, _, _) =
        node.request("PATCH", &path, Some(&alice), Some(json!({"body": "not yours"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, edited) =
        node.request("PATCH", &path, Some(&bob), Some(json!({"body": "edited"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(edited["body"], "edited");
    assert!(edited["edited_ms"].is_u64());
    // The channel owner moderates.
    let (status, _, deleted) = node.request("DELETE", &path, Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (deleted["deleted"].as_bool(), deleted["body"].as_str(), deleted["state"].as_str()),
        (Some(true), Some(""), Some("deleted"))
    );
}

#[tokio::test]
async fn concurrent_reactions_from_many_users_converge() {
    let node = std::sync::Arc::new(TestNode::start(Limits::default()).await);
    let owner = node.register("owner").await;
    let (_, _, chat) = node
        .request(
            "POST",
            "/api/v1/channels",
            Some(&owner),
            Some(json!({"name": "general", "visibility": "public"})),
        )
        .await;
    let id = chat["id"].as_str().unwrap().to_string();
    let (_, _, message) = node
        .request(
            "POST",
            &format!("/api/v1/chats/{id}/messages"),
            Some(&owner),
            Some(json!({"body": "react!"})),
        )
        .await;
    let path = format!("/api/v1/chats/{id}/messages/{}/reactions", message["id"].as_str().unwrap());
    let mut cookies = Vec::new();
    for n in 0..20 {
        let cookie = node.register(&format!("user{n}")).await;
        node.request("POST", &format!("/api/v1/chats/{id}/join"), Some(&cookie), None).await;
        cookies.push(cookie);
    }
    let mut tasks = Vec::new();
    for (n, cookie) in cookies.into_iter().enumerate() {
        let (node, path) = (node.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            for emoji in ["👍", if n % 2 == 0 { "🎉" } else { "❤️" }] {
                let (status, _, body) =
                    node.request("POST", &path, Some(&cookie), Some(json!({"emoji": emoji}))).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
            // Reacting twice is idempotent.
            node.request("POST", &path, Some(&cookie), Some(json!({"emoji": "👍"}))).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (_, _, message) =
        node.request("GET", &path.replace("/reactions", ""), Some(&owner), None).await;
    let counts: Vec<(String, u64)> = message["reactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["emoji"].as_str().unwrap().to_string(), r["count"].as_u64().unwrap()))
        .collect();
    let mut expected = vec![("👍".to_string(), 20), ("🎉".to_string(), 10), ("❤️".to_string(), 10)];
    expected.sort();
    assert_eq!(counts, expected);
    let (status, _, body) =
        node.request("POST", &path, Some(&owner), Some(json!({"emoji": "a b"}))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_body")));
}

/// Intents committed in one group read each other's writes (they are staged, not yet in sled),
/// and a failing intent in the group writes nothing and harms no other.
#[tokio::test]
async fn intents_of_one_group_see_each_others_writes() {
    // A long pacing window makes the engine gather the concurrent requests into one group.
    let limits = Limits { group_commit_interval_min_us: 300_000, ..Limits::default() };
    let node = TestNode::start(limits).await;
    let alice = node.register("alice").await;
    let chat = node.create_channel(&alice, "general", "public").await;
    let path = format!("/api/v1/chats/{chat}/messages");
    let send = |body: serde_json::Value| node.request("POST", &path, Some(&alice), Some(body));
    let (first, again, too_long, other) = tokio::join!(
        send(json!({"body": "once", "client_id": "same"})),
        send(json!({"body": "once", "client_id": "same"})),
        send(json!({"body": "x".repeat(100_001)})),
        send(json!({"body": "another"})),
    );
    assert_eq!(first.0, StatusCode::CREATED, "{:?}", first.2);
    assert_eq!(
        first.2["id"], again.2["id"],
        "the retry in the same group finds the first send's client id"
    );
    assert_eq!(too_long.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(other.0, StatusCode::CREATED);
    let (_, _, history) = node.request("GET", &path, Some(&alice), None).await;
    let bodies: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    let mut sorted = bodies.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["another", "once"], "{history}");
}

/// A node offering relays `a` (default) and `b`, and others when `other_relays_allowed`.
async fn node_offering_relays(other_relays_allowed: bool) -> TestNode {
    let push = confab_node::config::PushConfig {
        default_relay_url: Some("https://relay-a.example:8790/".into()),
        relay_urls: vec!["http://127.0.0.1:9/queues".into(), "https://relay-a.example:8790".into()],
        other_relays_allowed,
        ..Default::default()
    };
    TestNode::start_with_config(confab_node::config::Config { push, ..Default::default() }).await
}

#[tokio::test]
async fn the_page_may_reach_the_offered_relays_only() {
    let csp = |headers: &axum::http::HeaderMap| {
        headers[header::CONTENT_SECURITY_POLICY].to_str().expect("ascii").to_string()
    };
    let node = node_offering_relays(false).await;
    let (_, headers, _) = node.request("GET", "/", None, None).await;
    assert!(
        csp(&headers).contains(
            "connect-src 'self' https://relay-a.example:8790 http://127.0.0.1:9; frame-ancestors"
        ),
        "{}",
        csp(&headers)
    );
    let alice = node.register("alice").await;
    let (status, _, push) = node.request("GET", "/api/v1/push", Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK, "{push}");
    assert_eq!(push["default_relay_url"], "https://relay-a.example:8790");
    assert_eq!(
        push["relay_urls"],
        json!(["https://relay-a.example:8790", "http://127.0.0.1:9/queues"])
    );
    assert_eq!(push["other_relays_allowed"], false);

    let open = node_offering_relays(true).await;
    let (_, headers, _) = open.request("GET", "/sw.js", None, None).await;
    assert!(
        csp(&headers).contains("http://127.0.0.1:9 https:; frame-ancestors"),
        "{}",
        csp(&headers)
    );
    let plain = TestNode::start(Limits::default()).await;
    let (_, headers, _) = plain.request("GET", "/", None, None).await;
    assert!(csp(&headers).contains("connect-src 'self'; frame-ancestors"), "{}", csp(&headers));
}

/// Registers a device for the user behind `cookie` and answers the body of a
/// `PUT /devices/{id}/relay` for `url` with a valid capability, and the device's path.
async fn device_and_relay_body(
    node: &TestNode,
    cookie: &str,
    url: &str,
) -> (String, serde_json::Value) {
    use confab_protocol::relay::{
        x25519_public, CapabilityId, CapabilityToken, DeviceKey, QueueId,
    };
    let signing = DeviceKey::from_seed([7; 32]);
    let (status, _, device) = node
        .request(
            "POST",
            "/api/v1/devices",
            Some(cookie),
            Some(json!({
                "name": "laptop",
                "signing_key": signing.public().to_string(),
                "sealing_key": confab_protocol::devices::SealingKey::from_bytes(x25519_public([8; 32])).to_string(),
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{device}");
    let (_, _, push) = node.request("GET", "/api/v1/push", Some(cookie), None).await;
    let org = push["org"].as_str().expect("org").parse().expect("org id");
    // Each call another queue and capability.
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let queue = QueueId::from_bytes([n; 16]);
    let not_after_ms = 4_000_000_000_000;
    let capability = CapabilityToken::issue(
        &signing,
        queue,
        CapabilityId::from_bytes([n; 16]),
        org,
        not_after_ms,
    );
    let path = format!("/api/v1/devices/{}/relay", device["id"].as_str().expect("id"));
    let body = json!({"relay": {"url": url, "queue": queue.to_string(), "capability": capability.to_text()}});
    (path, body)
}

/// Removes the device whose `PUT .../relay` path is `relay_path`.
async fn remove_device(node: &TestNode, cookie: &str, relay_path: &str) {
    let path = relay_path.trim_end_matches("/relay");
    let (status, _, answer) = node.request("DELETE", path, Some(cookie), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
}

#[tokio::test]
async fn a_device_chooses_among_the_offered_relays() {
    let node = node_offering_relays(false).await;
    let alice = node.register("alice").await;
    for (url, code) in [
        ("https://elsewhere.example", "relay_not_offered"),
        ("http://127.0.0.1:9", "relay_not_offered"),
        ("ftp://relay-a.example:8790", "invalid_relay_url"),
        ("https://relay a.example", "invalid_relay_url"),
    ] {
        let (path, body) = device_and_relay_body(&node, &alice, url).await;
        let (status, _, error) = node.request("PUT", &path, Some(&alice), Some(body)).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{url}: {error}"
        );
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
        let (_, _, devices) = node.request("GET", "/api/v1/devices", Some(&alice), None).await;
        assert_eq!(
            devices["devices"][0]["relay"],
            serde_json::Value::Null,
            "nothing stored for {url}"
        );
        remove_device(&node, &alice, &path).await;
    }
    // An offered relay, written with or without its trailing slash.
    for url in ["http://127.0.0.1:9/queues/", "https://relay-a.example:8790"] {
        let (path, body) = device_and_relay_body(&node, &alice, url).await;
        let (status, _, device) = node.request("PUT", &path, Some(&alice), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{url}: {device}");
        assert_eq!(device["relay"]["url"], url.trim_end_matches('/'));
        remove_device(&node, &alice, &path).await;
    }

    // When the operator allows other relays: any https relay, still no plain http one.
    let open = node_offering_relays(true).await;
    let bob = open.register("bob").await;
    let (path, body) = device_and_relay_body(&open, &bob, "https://elsewhere.example/r").await;
    let (status, _, device) = open.request("PUT", &path, Some(&bob), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{device}");
    assert_eq!(device["relay"]["url"], "https://elsewhere.example/r");
    remove_device(&open, &bob, &path).await;
    let (path, body) = device_and_relay_body(&open, &bob, "http://10.0.0.1:8790").await;
    let (status, _, error) = open.request("PUT", &path, Some(&bob), Some(body)).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_relay_url")),
        "{error}"
    );
}

#[test]
fn offered_relays_must_be_http_urls() {
    let config = |url: &str| confab_node::config::PushConfig {
        relay_urls: vec![url.into()],
        ..Default::default()
    };
    for bad in ["relay.example", "ftp://relay.example", "https://re lay.example", "https://"] {
        let error = config(bad).validate().expect_err(bad);
        assert!(error.contains("is not an http(s) URL"), "{error}");
    }
    config("https://relay.example:8790/base/").validate().expect("a good URL");
}

/// Removing a device, or moving it to another queue, records its old capability for the push
/// sender to renounce, in the same transaction; at most `renunciations_per_user_max` per user.
#[tokio::test]
async fn a_removed_or_moved_device_leaves_a_renunciation() {
    let push = confab_node::config::PushConfig {
        default_relay_url: Some("http://127.0.0.1:9".into()),
        renunciations_per_user_max: 2,
        ..Default::default()
    };
    let node =
        TestNode::start_with_config(confab_node::config::Config { push, ..Default::default() })
            .await;
    let alice = node.register("alice").await;
    let alice_id: confab_protocol::UserId = "alice@local".parse().expect("user id");
    let pending = |node: &TestNode| {
        confab_node::views::renunciations(node.store.as_ref(), Some(&alice_id), usize::MAX)
            .expect("read")
            .into_iter()
            .map(|(_, renunciation)| renunciation.relay.queue.to_string())
            .collect::<Vec<_>>()
    };
    let mut queues = Vec::new();
    for _ in 0..3 {
        let (path, body) = device_and_relay_body(&node, &alice, "http://127.0.0.1:9").await;
        queues.push(body["relay"]["queue"].as_str().expect("queue").to_string());
        let (status, _, answer) =
            node.request("PUT", &path, Some(&alice), Some(body.clone())).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        // The same queue again renounces nothing.
        let (status, _, _) = node.request("PUT", &path, Some(&alice), Some(body)).await;
        assert_eq!(status, StatusCode::OK);
        remove_device(&node, &alice, &path).await;
    }
    assert_eq!(pending(&node), queues[1..], "the oldest was given up past the limit");

    // Moving a device off its queue (to no relay) leaves one too.
    let (path, body) = device_and_relay_body(&node, &alice, "http://127.0.0.1:9").await;
    let queue = body["relay"]["queue"].as_str().expect("queue").to_string();
    let (status, _, _) = node.request("PUT", &path, Some(&alice), Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) =
        node.request("PUT", &path, Some(&alice), Some(json!({"relay": null}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pending(&node), [queues[2].clone(), queue]);
}
