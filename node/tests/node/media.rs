//! Media through the API: upload with sniffing and thumbnails, attachments on messages,
//! downloads with the right headers and ranges, who may fetch (403 otherwise), the size limit,
//! and collection of blobs no message carries any more.

use super::harness::TestNode;
use axum::http::StatusCode;
use confab_node::config::Limits;
use confab_node::engine::rebuild;
use serde_json::{json, Value};
use std::time::Duration;

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).expect("encode png");
    bytes.into_inner()
}

async fn add_member(node: &TestNode, cookie: &str, chat: &str, user: &str) {
    let (status, _, body) = node
        .request(
            "POST",
            &format!("/api/v1/chats/{chat}/members"),
            Some(cookie),
            Some(json!({"user_id": user})),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
}

async fn post(node: &TestNode, cookie: &str, chat: &str, body: Value) -> (StatusCode, Value) {
    let (status, _, answer) = node
        .request("POST", &format!("/api/v1/chats/{chat}/messages"), Some(cookie), Some(body))
        .await;
    (status, answer)
}

fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn upload_sniffs_makes_thumbnails_and_only_readers_may_fetch() {
    let node = TestNode::start(Limits::default()).await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let carol = node.register("carol").await;
    let chat = node.create_channel(&alice, "photos", "private").await;
    add_member(&node, &alice, &chat, "bob@local").await;

    // The client claims text; the bytes are a PNG.
    let bytes = png(1200, 900);
    let (status, answer) = node.upload(&alice, "notes.txt", "text/plain", bytes.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let attachment = &answer["attachment"];
    assert_eq!(attachment["mime"], "image/png");
    assert_eq!(attachment["size_bytes"], bytes.len() as u64);
    assert_eq!(
        (attachment["width"].as_u64(), attachment["height"].as_u64()),
        (Some(1200), Some(900))
    );
    let thumbnails = attachment["thumbnails"].as_array().unwrap();
    assert_eq!(thumbnails.len(), 2, "{attachment}");
    assert_eq!(
        (thumbnails[0]["width"].as_u64(), thumbnails[0]["height"].as_u64()),
        (Some(800), Some(600))
    );
    assert_eq!(
        (thumbnails[1]["width"].as_u64(), thumbnails[1]["height"].as_u64()),
        (Some(160), Some(120))
    );
    let id = attachment["id"].as_str().unwrap().to_string();
    let thumbnail = thumbnails[1]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/media/{id}");
    let thumbnail_path = format!("/api/v1/media/{thumbnail}");

    // Before it is posted: the uploader may fetch it, nobody else.
    assert_eq!(node.get_bytes(&path, &alice, &[]).await.0, StatusCode::OK);
    assert_eq!(node.get_bytes(&path, &bob, &[]).await.0, StatusCode::FORBIDDEN);
    // Nor may anyone else attach it.
    let (status, answer) = post(
        &node,
        &bob,
        &chat,
        json!({"body": "", "attachments": [{"id": id, "name": "stolen.png"}]}),
    )
    .await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));

    // Posted with an empty body: the message carries the store's own description.
    let (status, message) = post(
        &node,
        &alice,
        &chat,
        json!({"body": "", "attachments": [{"id": id, "name": "holiday.png"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    let carried = &message["attachments"][0];
    assert_eq!(carried["id"], id.as_str());
    assert_eq!(carried["name"], "holiday.png");
    assert_eq!(carried["mime"], "image/png");
    assert_eq!(carried["thumbnails"].as_array().unwrap().len(), 2);
    let (_, _, history) =
        node.request("GET", &format!("/api/v1/chats/{chat}/messages"), Some(&bob), None).await;
    assert_eq!(history["messages"][0]["attachments"][0]["id"], id.as_str(), "{history}");

    // A member fetches it with the right headers.
    let (status, headers, body) = node.get_bytes(&path, &bob, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, bytes);
    assert_eq!(header(&headers, "content-type"), "image/png");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(header(&headers, "accept-ranges"), "bytes");
    assert_eq!(header(&headers, "etag"), format!("\"{id}\""));
    assert!(header(&headers, "cache-control").contains("private"), "{headers:?}");
    let disposition = header(&headers, "content-disposition");
    assert!(
        disposition.starts_with("inline") && disposition.contains("holiday.png"),
        "{disposition}"
    );
    let (status, headers, body) = node.get_bytes(&thumbnail_path, &bob, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(header(&headers, "content-type").starts_with("image/"));
    let decoded = image::load_from_memory(&body).expect("thumbnail decodes");
    assert_eq!((decoded.width(), decoded.height()), (160, 120));

    // Ranges and conditional requests.
    let (status, headers, body) = node.get_bytes(&path, &bob, &[("range", "bytes=10-19")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, bytes[10..20]);
    assert_eq!(header(&headers, "content-range"), format!("bytes 10-19/{}", bytes.len()));
    let (status, _, _) =
        node.get_bytes(&path, &bob, &[("range", &format!("bytes={}-", bytes.len() + 5))]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    let etag = format!("\"{id}\"");
    let (status, _, body) = node.get_bytes(&path, &bob, &[("if-none-match", &etag)]).await;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));

    // A non-member: 403 for the file and its thumbnails; unknown ids are 404.
    for forbidden in [&path, &thumbnail_path] {
        let (status, _, _) = node.get_bytes(forbidden, &carol, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{forbidden}");
    }
    let unknown = format!("/api/v1/media/{}", "0".repeat(64));
    assert_eq!(node.get_bytes(&unknown, &alice, &[]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        node.get_bytes("/api/v1/media/..%2F..%2Fdb", &alice, &[]).await.0,
        StatusCode::NOT_FOUND
    );

    // Bob may forward what he can see; it is then readable where he posted it.
    let other = node.create_channel(&bob, "elsewhere", "private").await;
    add_member(&node, &bob, &other, "carol@local").await;
    let (status, answer) = post(
        &node,
        &bob,
        &other,
        json!({"body": "look", "attachments": [{"id": id, "name": "fwd.png"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(node.get_bytes(&path, &carol, &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn active_content_is_never_served_as_itself() {
    let node = TestNode::start(Limits::default()).await;
    let alice = node.register("alice").await;
    let html = b"<!DOCTYPE html><html><script>alert(1)</script></html>".to_vec();
    let (status, answer) = node.upload(&alice, "page.html", "text/html", html).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_ne!(answer["attachment"]["mime"], "text/html");
    assert!(answer["attachment"]["thumbnails"].as_array().unwrap().is_empty());
    let path = format!("/api/v1/media/{}", answer["attachment"]["id"].as_str().unwrap());
    let (status, headers, _) = node.get_bytes(&path, &alice, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "application/octet-stream");
    assert!(header(&headers, "content-disposition").starts_with("attachment"));
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
}

#[tokio::test]
async fn uploads_past_the_limit_are_413_and_leave_nothing() {
    let limits = Limits { upload_bytes_max: 64 * 1024, ..Limits::default() };
    let node = TestNode::start(limits).await;
    let alice = node.register("alice").await;
    let (status, answer) =
        node.upload(&alice, "big.bin", "application/octet-stream", vec![7u8; 200 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["code"], "payload_too_large");
    assert!(answer["message"].as_str().unwrap().contains("64 KiB"), "{answer}");
    // Nothing half-written: no blob, no temporary file.
    let blobs = &node.dir.join("blobs");
    let files: Vec<_> = walk(blobs);
    assert!(files.is_empty(), "{files:?}");
    // Just under the limit works.
    let (status, _) =
        node.upload(&alice, "ok.bin", "application/octet-stream", vec![7u8; 64 * 1024]).await;
    assert_eq!(status, StatusCode::CREATED);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn too_many_or_unknown_attachments_are_refused() {
    let node = TestNode::start(Limits::default()).await;
    let alice = node.register("alice").await;
    let chat = node.create_channel(&alice, "files", "public").await;
    let eleven: Vec<Value> = (0..11).map(|n| json!({"id": format!("{n:064x}")})).collect();
    let (status, answer) =
        post(&node, &alice, &chat, json!({"body": "x", "attachments": eleven})).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("too_many_attachments"))
    );
    let (status, answer) =
        post(&node, &alice, &chat, json!({"body": "x", "attachments": [{"id": "../etc"}]})).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_attachment"))
    );
    let (status, _) = post(&node, &alice, &chat, json!({"body": ""})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn deleting_the_last_message_that_carries_a_blob_lets_the_collector_reclaim_it() {
    let node = TestNode::start(Limits::default()).await;
    let alice = node.register("alice").await;
    let chat = node.create_channel(&alice, "files", "public").await;
    let (_, kept) = node.upload(&alice, "kept.png", "image/png", png(300, 200)).await;
    let (_, shared) = node.upload(&alice, "shared.png", "image/png", png(400, 300)).await;
    let kept_id = kept["attachment"]["id"].as_str().unwrap().to_string();
    let shared_id = shared["attachment"]["id"].as_str().unwrap().to_string();
    let shared_thumbnails: Vec<String> = shared["attachment"]["thumbnails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let mut message_ids = Vec::new();
    for (id, body) in [(&kept_id, "keep"), (&shared_id, "one"), (&shared_id, "two")] {
        let (status, message) =
            post(&node, &alice, &chat, json!({"body": body, "attachments": [{"id": id}]})).await;
        assert_eq!(status, StatusCode::CREATED);
        message_ids.push(message["id"].as_str().unwrap().to_string());
    }
    let blobs = confab_node::media::BlobStore::new(&node.dir).unwrap();
    let collect =
        || confab_node::server::collect_media(node.store.clone(), blobs.clone(), Duration::ZERO);

    // Still carried by "two": nothing of it goes.
    let (status, _, _) = node
        .request(
            "DELETE",
            &format!("/api/v1/chats/{chat}/messages/{}", message_ids[1]),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    collect().await.unwrap();
    assert!(blobs.exists(&shared_id));

    // The views rebuilt from the documents know the same references.
    let key = confab_node::org_key::load_or_create_org_key(node.store.as_ref()).await.unwrap();
    rebuild::rebuild_views(node.store.as_ref(), &key.id(), "local").await.unwrap();
    collect().await.unwrap();
    assert!(blobs.exists(&shared_id) && blobs.exists(&kept_id));

    // The last carrier deleted: the file and its thumbnails are reclaimed, the other stays.
    let (status, _, deleted) = node
        .request(
            "DELETE",
            &format!("/api/v1/chats/{chat}/messages/{}", message_ids[2]),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(deleted["attachments"].as_array().is_none_or(|a| a.is_empty()), "{deleted}");
    let report = collect().await.unwrap();
    assert_eq!(report.deleted, 1 + shared_thumbnails.len() as u64, "{report:?}");
    assert!(!blobs.exists(&shared_id));
    for thumbnail in &shared_thumbnails {
        assert!(!blobs.exists(thumbnail));
    }
    assert!(blobs.exists(&kept_id));
    let (status, _, _) = node.get_bytes(&format!("/api/v1/media/{shared_id}"), &alice, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = node.get_bytes(&format!("/api/v1/media/{kept_id}"), &alice, &[]).await;
    assert_eq!(status, StatusCode::OK);
}
