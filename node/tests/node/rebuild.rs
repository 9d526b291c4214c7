//! Views rebuilt from the channel documents equal the views the engine maintained; history
//! survives bucket roll-over and restarts.

use super::harness::{temp_dir, TestNode};
use confab_node::config::Limits;
use confab_node::engine::rebuild;
use confab_node::store::{prefix_range, KvStore, Tree};
use serde_json::json;

/// Every entry of the derived trees, values parsed so the comparison reads well on failure.
type Snapshot = Vec<(Tree, Vec<(Vec<u8>, serde_json::Value)>)>;

fn snapshot(store: &dyn KvStore) -> Snapshot {
    [Tree::Chats, Tree::Members, Tree::UserChats, Tree::Messages, Tree::MediaRefs]
        .into_iter()
        .map(|tree| {
            let entries = store
                .range(tree, prefix_range(b""), false, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k, serde_json::from_slice(&v).unwrap_or(serde_json::Value::Null)))
                .collect();
            (tree, entries)
        })
        .collect()
}

#[tokio::test]
async fn rebuilt_views_equal_the_live_views_across_bucket_roll_over() {
    let limits = Limits { bucket_messages_max: 4, ..Limits::default() };
    let node = TestNode::start_in(temp_dir(), limits.clone()).await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let (_, _, chat) = node
        .request(
            "POST",
            "/api/v1/channels",
            Some(&alice),
            Some(json!({"name": "general", "visibility": "public", "topic": "t"})),
        )
        .await;
    let id = chat["id"].as_str().unwrap().to_string();
    node.request("POST", &format!("/api/v1/chats/{id}/join"), Some(&bob), None).await;
    let (_, _, dm) = node
        .request("POST", "/api/v1/dms", Some(&alice), Some(json!({"user_ids": ["bob@local"]})))
        .await;
    let dm = dm["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for i in 0..11 {
        let who = if i % 2 == 0 { &alice } else { &bob };
        let (status, _, message) = node
            .request(
                "POST",
                &format!("/api/v1/chats/{id}/messages"),
                Some(who),
                Some(json!({"body": format!("message {i} @bob")})),
            )
            .await;
        assert!(status.is_success(), "{message}");
        ids.push(message["id"].as_str().unwrap().to_string());
    }
    node.request(
        "POST",
        &format!("/api/v1/chats/{dm}/messages"),
        Some(&bob),
        Some(json!({"body": "dm"})),
    )
    .await;
    // Edit and delete messages of the sealed first bucket, from the current one.
    node.request(
        "PATCH",
        &format!("/api/v1/chats/{id}/messages/{}", ids[0]),
        Some(&alice),
        Some(json!({"body": "edited @channel"})),
    )
    .await;
    node.request("DELETE", &format!("/api/v1/chats/{id}/messages/{}", ids[1]), Some(&alice), None)
        .await;
    node.request(
        "POST",
        &format!("/api/v1/chats/{id}/read"),
        Some(&bob),
        Some(json!({"message_id": ids[4]})),
    )
    .await;
    // Reactions, including on a message of the sealed first bucket, and a removal.
    for (who, emoji) in [(&alice, "👍"), (&bob, "👍"), (&bob, "🎉"), (&alice, "party_parrot")]
    {
        let (status, _, body) = node
            .request(
                "POST",
                &format!("/api/v1/chats/{id}/messages/{}/reactions", ids[2]),
                Some(who),
                Some(json!({"emoji": emoji})),
            )
            .await;
        assert!(status.is_success(), "{body}");
    }
    let (_, _, after_removal) = node
        .request(
            "DELETE",
            &format!("/api/v1/chats/{id}/messages/{}/reactions/%F0%9F%8E%89", ids[2]),
            Some(&bob),
            None,
        )
        .await;
    let reactions = &after_removal["reactions"];
    assert_eq!(reactions.as_array().unwrap().len(), 2, "{after_removal}");
    assert_eq!(reactions[0]["emoji"], "party_parrot");
    assert_eq!(reactions[1]["count"], 2);
    node.request(
        "PATCH",
        &format!("/api/v1/chats/{id}"),
        Some(&alice),
        Some(json!({"topic": "new topic"})),
    )
    .await;

    let live = snapshot(node.store.as_ref());
    let key = confab_node::org_key::load_or_create_org_key(node.store.as_ref()).await.unwrap();
    let report = rebuild::rebuild_views(node.store.as_ref(), &key.id(), "local").await.unwrap();
    assert_eq!(report, rebuild::RebuildReport { chats: 2, messages: 12 });
    assert_eq!(snapshot(node.store.as_ref()), live, "rebuilt views differ from the live ones");

    // Restart on the same data: the engine reloads the newest bucket and keeps writing.
    let dir = node.stop().await;
    let node = TestNode::start_in(dir, limits).await;
    let alice = node
        .request(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "alice", "password": "password123"})),
        )
        .await
        .1
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    for i in 0..5 {
        let (status, _, body) = node
            .request(
                "POST",
                &format!("/api/v1/chats/{id}/messages"),
                Some(&alice),
                Some(json!({"body": format!("after restart {i}")})),
            )
            .await;
        assert!(status.is_success(), "{body}");
    }
    let (_, _, page) = node
        .request("GET", &format!("/api/v1/chats/{id}/messages?limit=200"), Some(&alice), None)
        .await;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 16);
    assert_eq!(messages[0]["body"], "edited @channel");
    assert_eq!(messages[1]["deleted"], true);
    let live = snapshot(node.store.as_ref());
    rebuild::rebuild_views(node.store.as_ref(), &key.id(), "local").await.unwrap();
    assert_eq!(snapshot(node.store.as_ref()), live);
}
