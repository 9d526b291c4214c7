//! Search through the API: hits and misses, every filter, snippets, paging, live updates on
//! edit and delete, no hits from chats the user is not a member of (also after leaving), and
//! an index rebuilt after it was lost.

use super::harness::{temp_dir, TestNode};
use axum::http::StatusCode;
use confab_node::config::Limits;
use serde_json::{json, Value};

async fn say(node: &TestNode, cookie: &str, chat: &str, body: &str) -> Value {
    let (status, _, message) = node
        .request(
            "POST",
            &format!("/api/v1/chats/{chat}/messages"),
            Some(cookie),
            Some(json!({ "body": body })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    message
}

async fn search(node: &TestNode, cookie: &str, query: &str) -> Value {
    let (status, _, answer) =
        node.request("GET", &format!("/api/v1/search?{query}"), Some(cookie), None).await;
    assert_eq!(status, StatusCode::OK, "{query}: {answer}");
    answer
}

fn bodies(answer: &Value) -> Vec<String> {
    answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["message"]["body"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn hits_misses_filters_snippets_and_paging() {
    let node = TestNode::start(Limits::default()).await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let general = node.create_channel(&alice, "general", "public").await;
    node.request("POST", &format!("/api/v1/chats/{general}/join"), Some(&bob), None).await;
    let lunch = say(&node, &alice, &general, "Lunch at noon? The pizza place on Main").await;
    say(&node, &bob, &general, "Pizza sounds great, see you at noon").await;
    say(&node, &alice, &general, "The quarterly report draft is ready").await;
    let secret = node.create_channel(&alice, "secret", "private").await;
    say(&node, &alice, &secret, "Secret pizza plans for the offsite").await;

    // Bob sees the two pizza messages of #general, newest first, never #secret's.
    let answer = search(&node, &bob, "q=pizza").await;
    assert_eq!(answer["total"], 2);
    assert_eq!(
        bodies(&answer),
        vec!["Pizza sounds great, see you at noon", "Lunch at noon? The pizza place on Main"]
    );
    // Alice sees all three.
    assert_eq!(search(&node, &alice, "q=pizza").await["total"], 3);
    // Misses: a word nobody wrote; words that must all occur.
    assert_eq!(search(&node, &alice, "q=sushi").await["total"], 0);
    assert_eq!(search(&node, &alice, "q=pizza%20quarterly").await["total"], 0);
    assert_eq!(search(&node, &alice, "q=PIZZA%20noon").await["total"], 2);

    // Snippets mark the words found, as data (never markup).
    let hit = &search(&node, &bob, "q=place").await["hits"][0];
    let parts = hit["snippet"].as_array().unwrap();
    assert!(parts.iter().any(|p| p["highlighted"] == true && p["text"] == "place"), "{hit}");
    assert_eq!(hit["chat_id"], general.as_str());

    // Filters: chat, author, date range, has-attachment, relevance order, paging.
    let in_secret = search(&node, &alice, &format!("q=pizza&chat_id={secret}")).await;
    assert_eq!(bodies(&in_secret), vec!["Secret pizza plans for the offsite"]);
    let by_bob = search(&node, &alice, "q=pizza&author=bob@local").await;
    assert_eq!(bodies(&by_bob), vec!["Pizza sounds great, see you at noon"]);
    let created = lunch["created_ms"].as_u64().unwrap();
    let before = search(&node, &alice, &format!("q=pizza&to_ms={}", created + 1)).await;
    assert_eq!(before["total"], 1);
    let after = search(&node, &alice, &format!("q=pizza&from_ms={}", created + 1)).await;
    assert_eq!(after["total"], 2);
    assert_eq!(search(&node, &alice, "q=pizza&has_attachment=true").await["total"], 0);
    assert_eq!(search(&node, &alice, "q=pizza&has_attachment=false").await["total"], 3);
    let relevance = search(&node, &alice, "q=pizza&order=relevance").await;
    assert_eq!(relevance["total"], 3);
    assert!(relevance["hits"][0]["score"].as_f64().unwrap() > 0.0);
    let first = search(&node, &alice, "q=pizza&limit=2").await;
    let second = search(&node, &alice, "q=pizza&limit=2&offset=2").await;
    assert_eq!(
        (first["hits"].as_array().unwrap().len(), second["hits"].as_array().unwrap().len()),
        (2, 1)
    );
    assert_eq!(first["total"], 3);

    // Bad queries are 400 with a reason; query syntax is just text.
    let (status, _, answer) =
        node.request("GET", "/api/v1/search?q=x&limit=1000", Some(&alice), None).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")));
    let long = "a".repeat(600);
    let (status, _, _) =
        node.request("GET", &format!("/api/v1/search?q={long}"), Some(&alice), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(search(&node, &alice, "q=%22(((%20AND%20OR%20%3A%3A%3A").await["total"], 0);
    let (status, _, _) = node.request("GET", "/api/v1/search?q=pizza", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn edits_and_deletes_update_the_index_at_once() {
    let node = TestNode::start(Limits::default()).await;
    let alice = node.register("alice").await;
    let chat = node.create_channel(&alice, "food", "public").await;
    let message = say(&node, &alice, &chat, "tonight we eat pizza").await;
    let id = message["id"].as_str().unwrap();
    assert_eq!(search(&node, &alice, "q=pizza").await["total"], 1);
    let (status, _, _) = node
        .request(
            "PATCH",
            &format!("/api/v1/chats/{chat}/messages/{id}"),
            Some(&alice),
            Some(json!({"body": "tonight we eat pasta"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(search(&node, &alice, "q=pizza").await["total"], 0);
    assert_eq!(bodies(&search(&node, &alice, "q=pasta").await), vec!["tonight we eat pasta"]);
    node.request("DELETE", &format!("/api/v1/chats/{chat}/messages/{id}"), Some(&alice), None)
        .await;
    assert_eq!(search(&node, &alice, "q=pasta").await["total"], 0);
}

#[tokio::test]
async fn no_hits_from_chats_the_user_is_not_in_also_after_leaving() {
    let node = TestNode::start(Limits::default()).await;
    let alice = node.register("alice").await;
    let mallory = node.register("mallory").await;
    let public = node.create_channel(&alice, "town-square", "public").await;
    let private = node.create_channel(&alice, "board", "private").await;
    node.register("bob").await;
    let (status, _, dm) = node
        .request("POST", "/api/v1/dms", Some(&alice), Some(json!({"user_ids": ["bob@local"]})))
        .await;
    assert!(status.is_success(), "{dm}");
    say(&node, &alice, &public, "canary-word in public").await;
    say(&node, &alice, &private, "canary-word in private").await;
    say(&node, &alice, dm["id"].as_str().unwrap(), "canary-word in a DM").await;
    assert_eq!(search(&node, &alice, "q=canary").await["total"], 3);
    // Not a member of anything: nothing, even naming the chats.
    assert_eq!(search(&node, &mallory, "q=canary").await["total"], 0);
    assert_eq!(search(&node, &mallory, "").await["total"], 0);
    for chat in [&public, &private] {
        assert_eq!(search(&node, &mallory, &format!("q=canary&chat_id={chat}")).await["total"], 0);
    }
    // Joined the public channel: its hit only.
    node.request("POST", &format!("/api/v1/chats/{public}/join"), Some(&mallory), None).await;
    assert_eq!(bodies(&search(&node, &mallory, "q=canary").await), vec!["canary-word in public"]);
    // Left it: nothing again.
    let (status, _, _) =
        node.request("POST", &format!("/api/v1/chats/{public}/leave"), Some(&mallory), None).await;
    assert!(status.is_success());
    assert_eq!(search(&node, &mallory, "q=canary").await["total"], 0);
    // Removed from a private channel: the same.
    node.request(
        "POST",
        &format!("/api/v1/chats/{private}/members"),
        Some(&alice),
        Some(json!({"user_id": "mallory@local"})),
    )
    .await;
    assert_eq!(search(&node, &mallory, "q=canary").await["total"], 1);
    node.request(
        "DELETE",
        &format!("/api/v1/chats/{private}/members/mallory@local"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(search(&node, &mallory, "q=canary").await["total"], 0);
}

#[tokio::test]
async fn a_lost_index_is_rebuilt_from_the_stored_messages_on_start() {
    let dir = temp_dir();
    let node = TestNode::start_in(dir.clone(), Limits::default()).await;
    let alice = node.register("alice").await;
    let chat = node.create_channel(&alice, "archive", "public").await;
    for n in 0..30 {
        say(&node, &alice, &chat, &format!("entry {n} of the durable archive")).await;
    }
    let dir = node.stop().await;
    std::fs::remove_dir_all(dir.join("search")).unwrap();
    let node = TestNode::start_in(dir, Limits::default()).await;
    let (status, headers, _) = node
        .request(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "alice", "password": "password123"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let alice = headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert_eq!(search(&node, &alice, "q=durable").await["total"], 30);
    assert_eq!(search(&node, &alice, "q=entry%2017").await["total"], 1);
}
