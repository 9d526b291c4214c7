//! Media tests on real files in temporary directories.

use super::http::{parse_range, RangeRequest};
use super::*;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use image::{ImageBuffer, ImageFormat, Rgb, Rgba};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A temp directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).unwrap();
        let path = std::env::temp_dir()
            .join(format!("confab-media-test-{}", data_encoding::HEXLOWER.encode(&random)));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn store() -> (TempDir, BlobStore) {
    let dir = TempDir::new();
    let blobs = BlobStore::new(&dir.0).unwrap();
    (dir, blobs)
}

fn sha256_hex(data: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(Sha256::digest(data).as_slice())
}

fn chunks(
    data: &[u8],
    size: usize,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let parts: Vec<Result<Bytes, std::io::Error>> =
        data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures_util::stream::iter(parts)
}

/// Deterministic pseudo-random bytes (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image =
        ImageBuffer::from_fn(width, height, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
    bytes
}

fn transparent_png(width: u32, height: u32) -> Vec<u8> {
    let image = ImageBuffer::from_fn(width, height, |x, _| Rgba([200, 10, 10, (x % 256) as u8]));
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
    bytes
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let image =
        ImageBuffer::from_fn(width, height, |x, y| Rgb([(x % 256) as u8, 40, (y % 256) as u8]));
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Jpeg).unwrap();
    bytes
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A PNG whose header declares `width`×`height` but whose pixel data is a few bytes of junk:
/// decoding it in full would need width×height×3 bytes.
fn bomb_png(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00]);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn set_age(blobs: &BlobStore, hash: &str, age: Duration) {
    let file =
        std::fs::OpenOptions::new().write(true).open(blobs.blob_path(hash).unwrap()).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

async fn body_bytes(response: Response) -> Vec<u8> {
    response.into_body().collect().await.unwrap().to_bytes().to_vec()
}

fn header_str(response: &Response, name: header::HeaderName) -> &str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn range(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
    headers
}

#[tokio::test]
async fn streams_a_multi_mib_upload_and_hashes_it() {
    let (_dir, blobs) = store();
    let data = noise(5 * 1024 * 1024 + 123, 7);
    let meta = blobs.put_stream(chunks(&data, 64 * 1024), UPLOAD_BYTES_MAX_DEFAULT).await.unwrap();
    assert_eq!(meta.hash, sha256_hex(&data));
    assert_eq!(meta.size_bytes, data.len() as u64);
    assert_eq!(meta.mime, "application/octet-stream");
    let path = blobs.blob_path(&meta.hash).unwrap();
    assert_eq!(path, blobs.root().join(&meta.hash[..2]).join(&meta.hash[2..]));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(blobs.exists(&meta.hash));
    // Nothing left in tmp/.
    assert!(files_under(&blobs.root().join("tmp")).is_empty());
    // open() gives the same bytes and meta.
    let (mut file, opened) = blobs.open(&meta.hash).await.unwrap();
    assert_eq!(opened, meta);
    let mut read = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut file, &mut read).await.unwrap();
    assert_eq!(read, data);
}

#[tokio::test]
async fn same_content_is_stored_once() {
    let (_dir, blobs) = store();
    let data = noise(300_000, 3);
    let first = blobs.put_stream(chunks(&data, 1000), 1 << 20).await.unwrap();
    let second = blobs.put_stream(chunks(&data, 77_777), 1 << 20).await.unwrap();
    assert_eq!(first, second);
    let blob_files: Vec<_> = files_under(blobs.root())
        .into_iter()
        .filter(|p| p.extension().is_none() && !p.starts_with(blobs.root().join("tmp")))
        .collect();
    assert_eq!(blob_files.len(), 1, "{blob_files:?}");
    let other = blobs.put_stream(chunks(b"other", 2), 1 << 20).await.unwrap();
    assert_ne!(other.hash, first.hash);
    assert_eq!(other.hash, sha256_hex(b"other"));
}

#[tokio::test]
async fn too_large_uploads_fail_and_leave_nothing() {
    let (_dir, blobs) = store();
    let data = noise(2 * 1024 * 1024, 5);
    let error = blobs.put_stream(chunks(&data, 64 * 1024), 1024 * 1024).await.unwrap_err();
    assert!(matches!(error, MediaError::TooLarge { limit } if limit == 1024 * 1024));
    assert!(files_under(blobs.root()).is_empty(), "{:?}", files_under(blobs.root()));
    let api: crate::error::ApiError = error.into();
    assert_eq!(api.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(api.code, "payload_too_large");
    assert!(api.message.contains("1 MiB"), "{}", api.message);

    // Exactly at the limit is fine.
    let exact = noise(1000, 9);
    assert!(blobs.put_stream(chunks(&exact, 100), 1000).await.is_ok());
    assert!(blobs.put_stream(chunks(&exact, 100), 999).await.is_err());

    // Through the HTTP helper: 413.
    let body = Body::from_stream(chunks(&data, 64 * 1024));
    let error = upload(&blobs, body, Some("big.bin".into()), 1024 * 1024).await.unwrap_err();
    assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(files_under(&blobs.root().join("tmp")).is_empty());
}

#[tokio::test]
async fn a_broken_stream_fails_and_leaves_nothing() {
    let (_dir, blobs) = store();
    let parts: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(Bytes::from_static(b"hello")), Err(std::io::Error::other("connection reset"))];
    let error = blobs.put_stream(futures_util::stream::iter(parts), 1000).await.unwrap_err();
    assert!(matches!(error, MediaError::Body(_)));
    assert!(files_under(blobs.root()).is_empty());
}

#[tokio::test]
async fn stale_temp_files_are_removed_on_open() {
    let dir = TempDir::new();
    let tmp = dir.0.join("blobs").join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("half-written"), b"partial").unwrap();
    let blobs = BlobStore::new(&dir.0).unwrap();
    assert!(files_under(&blobs.root().join("tmp")).is_empty());
}

#[tokio::test]
async fn types_are_sniffed_from_the_bytes() {
    let (_dir, blobs) = store();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (png(10, 10), "image/png"),
        (jpeg(10, 10), "image/jpeg"),
        (b"GIF89a\x01\x00\x01\x00".to_vec(), "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ".to_vec(), "image/webp"),
        (b"%PDF-1.7\n...".to_vec(), "application/pdf"),
        (b"PK\x03\x04rest".to_vec(), "application/zip"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00".to_vec(), "video/mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm".to_vec(), "video/webm"),
        ("hello, wörld\n\ttabs and ✓ emoji 🎉\r\n".as_bytes().to_vec(), "text/plain"),
        (b"<script>alert(1)</script>".to_vec(), "text/plain"),
        (noise(10_000, 11), "application/octet-stream"),
        (b"text then a NUL\x00".to_vec(), "application/octet-stream"),
        (b"\xff\xfe not utf-8".to_vec(), "application/octet-stream"),
        (Vec::new(), "application/octet-stream"),
    ];
    for (data, expected) in cases {
        let meta = blobs.put_stream(chunks(&data, 3), 1 << 20).await.unwrap();
        assert_eq!(meta.mime, expected, "{:?}", &data[..data.len().min(16)]);
    }
    // A multi-byte character split across chunks is still text.
    let text = "ééééé€€€€🎉🎉🎉".repeat(100);
    for size in 1..8 {
        let meta = blobs.put_stream(chunks(text.as_bytes(), size), 1 << 20).await.unwrap();
        assert_eq!(meta.mime, "text/plain", "chunk size {size}");
    }
    // A truncated character at the end is not.
    let mut cut = text.as_bytes().to_vec();
    cut.pop();
    let meta = blobs.put_stream(chunks(&cut, 5), 1 << 20).await.unwrap();
    assert_eq!(meta.mime, "application/octet-stream");
}

#[tokio::test]
async fn a_png_named_txt_is_still_a_png() {
    let (_dir, blobs) = store();
    let data = png(40, 30);
    let attachment =
        upload(&blobs, Body::from(data.clone()), Some("x.txt".into()), UPLOAD_BYTES_MAX_DEFAULT)
            .await
            .unwrap();
    assert_eq!(attachment.mime, "image/png");
    assert_eq!(attachment.name, "x.txt");
    assert_eq!(attachment.id, sha256_hex(&data));
    assert_eq!(attachment.size_bytes, data.len() as u64);
    assert_eq!((attachment.width, attachment.height), (Some(40), Some(30)));
}

#[tokio::test]
async fn images_get_two_thumbnails_with_their_aspect() {
    let (_dir, blobs) = store();
    let data = jpeg(2000, 1000);
    let attachment =
        upload(&blobs, Body::from(data), Some("photo.jpg".into()), 1 << 24).await.unwrap();
    assert_eq!((attachment.width, attachment.height), (Some(2000), Some(1000)));
    let sizes: Vec<(u32, u32)> =
        attachment.thumbnails.iter().map(|t| (t.width, t.height)).collect();
    assert_eq!(sizes, vec![(800, 400), (160, 80)]);
    for thumbnail in &attachment.thumbnails {
        let meta = blobs.meta(&thumbnail.id).unwrap();
        assert_eq!(meta.mime, "image/jpeg");
        assert_eq!((meta.width, meta.height), (Some(thumbnail.width), Some(thumbnail.height)));
        let decoded = image::load_from_memory(
            &std::fs::read(blobs.blob_path(&thumbnail.id).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!((decoded.width(), decoded.height()), (thumbnail.width, thumbnail.height));
    }
    // Recorded beside the blob, and the same on a second call.
    assert_eq!(blobs.thumbnails_of(&attachment.id).unwrap(), Some(attachment.thumbnails.clone()));
    assert_eq!(blobs.make_thumbnails(&attachment.id).unwrap(), attachment.thumbnails);
    assert_eq!(blobs.attachment(&attachment.id, Some("photo.jpg")).unwrap(), attachment);

    // Portrait.
    let tall = blobs.put_bytes(&png(300, 1200)).unwrap();
    let thumbnails = blobs.make_thumbnails(&tall.hash).unwrap();
    let sizes: Vec<(u32, u32)> = thumbnails.iter().map(|t| (t.width, t.height)).collect();
    assert_eq!(sizes, vec![(200, 800), (40, 160)]);
}

#[tokio::test]
async fn small_images_are_not_upscaled() {
    let (_dir, blobs) = store();
    let small = blobs.put_bytes(&png(100, 50)).unwrap();
    let thumbnails = blobs.make_thumbnails(&small.hash).unwrap();
    assert_eq!(thumbnails.len(), 1);
    assert_eq!((thumbnails[0].width, thumbnails[0].height), (100, 50));

    let medium = blobs.put_bytes(&png(500, 400)).unwrap();
    let thumbnails = blobs.make_thumbnails(&medium.hash).unwrap();
    let sizes: Vec<(u32, u32)> = thumbnails.iter().map(|t| (t.width, t.height)).collect();
    assert_eq!(sizes, vec![(500, 400), (160, 128)]);
}

#[tokio::test]
async fn transparent_images_get_png_thumbnails() {
    let (_dir, blobs) = store();
    let meta = blobs.put_bytes(&transparent_png(1000, 500)).unwrap();
    let thumbnails = blobs.make_thumbnails(&meta.hash).unwrap();
    assert_eq!(thumbnails.len(), 2);
    for thumbnail in thumbnails {
        assert_eq!(blobs.meta(&thumbnail.id).unwrap().mime, "image/png");
    }
}

#[tokio::test]
async fn non_images_and_broken_images_get_no_thumbnails() {
    let (_dir, blobs) = store();
    let text = blobs.put_bytes(b"just text").unwrap();
    assert!(blobs.make_thumbnails(&text.hash).unwrap().is_empty());
    assert_eq!(blobs.thumbnails_of(&text.hash).unwrap(), Some(vec![]));

    let mut broken = b"\x89PNG\r\n\x1a\n".to_vec();
    broken.extend(noise(5000, 13));
    let attachment =
        upload(&blobs, Body::from(broken), Some("broken.png".into()), 1 << 20).await.unwrap();
    assert_eq!(attachment.mime, "image/png");
    assert!(attachment.thumbnails.is_empty());
    assert_eq!((attachment.width, attachment.height), (None, None));
    assert!(blobs.exists(&attachment.id));

    let mut truncated = jpeg(400, 300);
    truncated.truncate(truncated.len() / 3);
    let meta = blobs.put_bytes(&truncated).unwrap();
    // Either a partial image or none, but never a panic or an error.
    assert!(blobs.make_thumbnails(&meta.hash).is_ok());
}

#[tokio::test]
async fn decompression_bombs_are_refused() {
    let (_dir, blobs) = store();
    for (width, height) in
        [(100_000, 100_000), (12_001, 10), (10_000, 10_000), (u32::MAX, u32::MAX)]
    {
        let attachment =
            upload(&blobs, Body::from(bomb_png(width, height)), Some("bomb.png".into()), 1 << 20)
                .await
                .unwrap();
        assert_eq!(attachment.mime, "image/png");
        assert!(attachment.thumbnails.is_empty(), "{width}×{height}");
    }
    // A GIF declaring a 65535×65535 screen.
    let mut gif = b"GIF89a\xff\xff\xff\xff\x00\x00\x00".to_vec();
    gif.extend(noise(100, 17));
    let meta = blobs.put_bytes(&gif).unwrap();
    assert!(blobs.make_thumbnails(&meta.hash).unwrap().is_empty());
}

#[test]
fn file_names_are_sanitised() {
    assert_eq!(sanitize_file_name("photo.jpg"), "photo.jpg");
    assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
    assert_eq!(sanitize_file_name("C:\\Users\\me\\report.pdf"), "report.pdf");
    assert_eq!(sanitize_file_name("a\u{0}b\nc\u{7f}.txt"), "abc.txt");
    assert_eq!(sanitize_file_name("evil\u{202e}gpj.exe"), "evilgpj.exe");
    assert_eq!(sanitize_file_name(".."), "file");
    assert_eq!(sanitize_file_name("dir/"), "file");
    assert_eq!(sanitize_file_name("   "), "file");
    assert_eq!(sanitize_file_name("name. . "), "name");
    assert_eq!(sanitize_file_name("résumé 📄.pdf"), "résumé 📄.pdf");
    let long = format!("{}.jpeg", "é".repeat(300));
    let cut = sanitize_file_name(&long);
    assert!(cut.len() <= FILE_NAME_BYTES_MAX);
    assert!(cut.ends_with(".jpeg"));
    assert!(cut.starts_with("éé"));
    let no_extension = "x".repeat(1000);
    assert_eq!(sanitize_file_name(&no_extension).len(), FILE_NAME_BYTES_MAX);
}

#[test]
fn attachments_have_the_wire_shape() {
    let attachment = Attachment {
        id: "a".repeat(64),
        name: "cat.png".into(),
        mime: "image/png".into(),
        size_bytes: 1234,
        width: Some(10),
        height: Some(20),
        thumbnails: vec![ThumbnailMeta { id: "b".repeat(64), width: 5, height: 10 }],
    };
    let json = serde_json::to_value(&attachment).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "id": "a".repeat(64), "name": "cat.png", "mime": "image/png", "size_bytes": 1234,
            "width": 10, "height": 20,
            "thumbnails": [{"id": "b".repeat(64), "width": 5, "height": 10}],
        })
    );
    let back: Attachment = serde_json::from_value(json).unwrap();
    assert_eq!(back, attachment);
    let file: Attachment = serde_json::from_value(serde_json::json!({
        "id": "c".repeat(64), "name": "a.zip", "mime": "application/zip", "size_bytes": 1,
    }))
    .unwrap();
    assert_eq!((file.width, file.thumbnails.len()), (None, 0));
    assert!(!serde_json::to_string(&file).unwrap().contains("width"));
}

#[test]
fn ranges_are_parsed() {
    use RangeRequest::*;
    assert_eq!(parse_range("bytes=0-9", 100), Part { first: 0, last: 9 });
    assert_eq!(parse_range("bytes=90-200", 100), Part { first: 90, last: 99 });
    assert_eq!(parse_range("bytes=10-", 100), Part { first: 10, last: 99 });
    assert_eq!(parse_range("bytes=-10", 100), Part { first: 90, last: 99 });
    assert_eq!(parse_range("bytes=-1000", 100), Part { first: 0, last: 99 });
    assert_eq!(parse_range("BYTES = 1-1", 100), Part { first: 1, last: 1 });
    assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
    assert_eq!(parse_range("bytes=100-200", 100), Unsatisfiable);
    assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
    assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
    assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
    assert_eq!(parse_range("bytes=99999999999999999999999-", 100), Unsatisfiable);
    for ignored in
        ["bytes=5-1", "bytes=a-b", "bytes=-", "items=0-1", "bytes=0-1,5-6", "0-1", "bytes=+1-2"]
    {
        assert_eq!(parse_range(ignored, 100), Whole, "{ignored}");
    }
}

#[tokio::test]
async fn downloads_whole_files_with_safe_headers() {
    let (_dir, blobs) = store();
    let data = png(64, 64);
    let meta = blobs.put_bytes(&data).unwrap();
    let response =
        download(&blobs, &meta.hash, &HeaderMap::new(), Some("cat photo.png"), &meta.mime)
            .await
            .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_str(&response, header::CONTENT_TYPE), "image/png");
    assert_eq!(
        header_str(&response, header::CONTENT_DISPOSITION),
        "inline; filename=\"cat photo.png\"; filename*=UTF-8''cat%20photo.png"
    );
    assert_eq!(header_str(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(header_str(&response, header::ACCEPT_RANGES), "bytes");
    assert_eq!(
        header_str(&response, header::CACHE_CONTROL),
        "private, max-age=31536000, immutable"
    );
    assert_eq!(header_str(&response, header::ETAG), format!("\"{}\"", meta.hash));
    assert_eq!(header_str(&response, header::CONTENT_LENGTH), data.len().to_string());
    assert!(header_str(&response, header::CONTENT_SECURITY_POLICY).contains("sandbox"));
    assert_eq!(body_bytes(response).await, data);

    // Text, HTML-looking text and anything unknown: an octet-stream attachment.
    let html = blobs.put_bytes(b"<html><script>alert(1)</script></html>").unwrap();
    assert_eq!(html.mime, "text/plain");
    let response =
        download(&blobs, &html.hash, &HeaderMap::new(), Some("naïve \"x\".html"), &html.mime)
            .await
            .unwrap();
    assert_eq!(header_str(&response, header::CONTENT_TYPE), "application/octet-stream");
    assert_eq!(
        header_str(&response, header::CONTENT_DISPOSITION),
        "attachment; filename=\"na_ve _x_.html\"; filename*=UTF-8''na%C3%AFve%20%22x%22.html"
    );
    let response =
        download(&blobs, &html.hash, &HeaderMap::new(), None, "image/svg+xml").await.unwrap();
    assert_eq!(header_str(&response, header::CONTENT_TYPE), "application/octet-stream");
    assert_eq!(header_str(&response, header::CONTENT_DISPOSITION), "attachment");

    // Unknown and malformed ids.
    let missing =
        download(&blobs, &"0".repeat(64), &HeaderMap::new(), None, "image/png").await.unwrap_err();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let traversal = download(&blobs, "../../etc/passwd", &HeaderMap::new(), None, "image/png")
        .await
        .unwrap_err();
    assert_eq!(traversal.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn downloads_byte_ranges() {
    let (_dir, blobs) = store();
    let data = noise(100_000, 21);
    let meta = blobs.put_bytes(&data).unwrap();
    let get = |value: &'static str| {
        let blobs = blobs.clone();
        let hash = meta.hash.clone();
        async move {
            download(&blobs, &hash, &range(value), Some("data.bin"), "application/octet-stream")
                .await
                .unwrap()
        }
    };

    let first = get("bytes=0-99").await;
    assert_eq!(first.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header_str(&first, header::CONTENT_RANGE), "bytes 0-99/100000");
    assert_eq!(header_str(&first, header::CONTENT_LENGTH), "100");
    assert_eq!(body_bytes(first).await, &data[..100]);

    let suffix = get("bytes=-500").await;
    assert_eq!(suffix.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header_str(&suffix, header::CONTENT_RANGE), "bytes 99500-99999/100000");
    assert_eq!(body_bytes(suffix).await, &data[99_500..]);

    let open = get("bytes=65000-").await;
    assert_eq!(open.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header_str(&open, header::CONTENT_RANGE), "bytes 65000-99999/100000");
    assert_eq!(body_bytes(open).await, &data[65_000..]);

    let middle = get("bytes=70000-70000").await;
    assert_eq!(body_bytes(middle).await, &data[70_000..=70_000]);

    let unsatisfiable = get("bytes=100000-").await;
    assert_eq!(unsatisfiable.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header_str(&unsatisfiable, header::CONTENT_RANGE), "bytes */100000");

    let several = get("bytes=0-1,5-6").await;
    assert_eq!(several.status(), StatusCode::OK);
    assert_eq!(body_bytes(several).await, data);

    // If-Range with another validator: the whole file.
    let mut headers = range("bytes=0-9");
    headers.insert(header::IF_RANGE, HeaderValue::from_static("\"something-else\""));
    let response =
        download(&blobs, &meta.hash, &headers, None, "application/octet-stream").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut headers = range("bytes=0-9");
    headers.insert(header::IF_RANGE, HeaderValue::from_str(&format!("\"{}\"", meta.hash)).unwrap());
    let response =
        download(&blobs, &meta.hash, &headers, None, "application/octet-stream").await.unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
}

#[tokio::test]
async fn if_none_match_answers_304() {
    let (_dir, blobs) = store();
    let meta = blobs.put_bytes(&png(8, 8)).unwrap();
    for value in [
        format!("\"{}\"", meta.hash),
        format!("W/\"{}\"", meta.hash),
        format!("\"other\", \"{}\"", meta.hash),
        "*".to_string(),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&value).unwrap());
        let response = download(&blobs, &meta.hash, &headers, None, &meta.mime).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{value}");
        assert_eq!(header_str(&response, header::ETAG), format!("\"{}\"", meta.hash));
        assert!(body_bytes(response).await.is_empty());
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
    let response = download(&blobs, &meta.hash, &headers, None, &meta.mime).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_collector_keeps_referenced_and_young_blobs() {
    let (_dir, blobs) = store();
    let hour = Duration::from_secs(3600);
    let referenced_image =
        upload(&blobs, Body::from(jpeg(1200, 900)), None, 1 << 24).await.unwrap();
    let unreferenced_image =
        upload(&blobs, Body::from(png(900, 900)), None, 1 << 24).await.unwrap();
    assert_eq!(referenced_image.thumbnails.len(), 2);
    assert_eq!(unreferenced_image.thumbnails.len(), 2);
    let old_file = blobs.put_bytes(b"old and forgotten").unwrap();
    let young_file = blobs.put_bytes(b"just uploaded").unwrap();

    let all_old: Vec<String> = [&referenced_image, &unreferenced_image]
        .iter()
        .flat_map(|a| {
            std::iter::once(a.id.clone()).chain(a.thumbnails.iter().map(|t| t.id.clone()))
        })
        .chain([old_file.hash.clone()])
        .collect();
    for hash in &all_old {
        set_age(&blobs, hash, 2 * hour);
    }

    let referenced: HashSet<String> = [referenced_image.id.clone()].into_iter().collect();
    let expected_freed: u64 = [unreferenced_image.size_bytes, old_file.size_bytes]
        .into_iter()
        .chain(unreferenced_image.thumbnails.iter().map(|t| blobs.meta(&t.id).unwrap().size_bytes))
        .sum();
    let report = blobs.collect(&referenced, hour).unwrap();

    assert_eq!(report.deleted, 4);
    assert_eq!(report.bytes_freed, expected_freed);

    assert!(blobs.exists(&referenced_image.id));
    for thumbnail in &referenced_image.thumbnails {
        assert!(blobs.exists(&thumbnail.id));
    }
    assert!(blobs.exists(&young_file.hash));
    assert!(!blobs.exists(&unreferenced_image.id));
    for thumbnail in &unreferenced_image.thumbnails {
        assert!(!blobs.exists(&thumbnail.id));
    }
    assert!(!blobs.exists(&old_file.hash));
    // Their sidecars went with them.
    let leftovers: Vec<_> = files_under(blobs.root())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&unreferenced_image.id[2..]))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(matches!(blobs.meta(&old_file.hash), Err(MediaError::NotFound)));

    // Nothing more to collect; a re-upload of old content makes it young again.
    assert_eq!(blobs.collect(&referenced, hour).unwrap(), CollectReport::default());
    let again = blobs.put_bytes(b"just uploaded").unwrap();
    set_age(&blobs, &again.hash, 2 * hour);
    let again = blobs.put_stream(chunks(b"just uploaded", 4), 100).await.unwrap();
    assert_eq!(blobs.collect(&HashSet::new(), hour).unwrap().deleted, 3);
    assert!(blobs.exists(&again.hash));
}

#[tokio::test]
async fn delete_removes_a_blob() {
    let (_dir, blobs) = store();
    let meta = blobs.put_bytes(b"bye").unwrap();
    assert!(blobs.delete(&meta.hash).unwrap());
    assert!(!blobs.exists(&meta.hash));
    assert!(!blobs.delete(&meta.hash).unwrap());
    assert!(matches!(blobs.delete("nope"), Err(MediaError::InvalidId)));
    assert!(!blobs.exists("../x"));
}

#[tokio::test]
async fn metadata_is_rebuilt_when_its_sidecar_is_lost() {
    let (_dir, blobs) = store();
    let meta = blobs.put_bytes(&png(30, 20)).unwrap();
    let sidecar = blobs.blob_path(&meta.hash).unwrap().with_extension("json");
    assert!(sidecar.is_file());
    std::fs::write(&sidecar, b"{not json").unwrap();
    assert_eq!(blobs.meta(&meta.hash).unwrap(), meta);
    std::fs::remove_file(&sidecar).unwrap();
    assert_eq!(blobs.meta(&meta.hash).unwrap(), meta);
}
