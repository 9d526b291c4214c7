//! The HTTP side, as functions the API mounts: [`upload`] streams a request body into the
//! store; [`download`] serves a blob with safe headers, conditional requests and single byte
//! ranges, streaming the file. Neither checks who asks: the caller does.

use super::{sanitize_file_name, Attachment, BlobStore};
use crate::error::ApiError;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::io::SeekFrom;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// Types served as themselves and `inline`; everything else is served as
/// `application/octet-stream` and `attachment`, so the browser never renders it in our origin.
pub const INLINE_MIME_TYPES: [&str; 11] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "video/mp4",
    "video/webm",
    "audio/mpeg",
    "audio/ogg",
    "audio/wav",
    "audio/mp4",
    "application/pdf",
];

/// Bytes read from disk per chunk of a download.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Streams an upload's body into the store (never the whole body in memory; past
/// `size_bytes_max` bytes it answers 413 `payload_too_large`), then makes the thumbnails on the
/// blocking pool and answers with the complete attachment. A thumbnail failure only leaves the
/// list empty. The body must not be limited by a smaller `DefaultBodyLimit` layer (a raw
/// [`Body`] is not: only the buffering extractors are).
pub async fn upload(
    blobs: &BlobStore,
    body: Body,
    file_name: Option<String>,
    size_bytes_max: u64,
) -> Result<Attachment, ApiError> {
    let meta = blobs.put_stream(body.into_data_stream(), size_bytes_max).await?;
    let thumbnails = match blobs.thumbnails(&meta.hash).await {
        Ok(thumbnails) => thumbnails,
        Err(error) => {
            tracing::warn!(hash = %meta.hash, %error, "thumbnails failed");
            Vec::new()
        }
    };
    Ok(Attachment::new(&meta, file_name.as_deref(), thumbnails))
}

/// Serves a blob: `200` (whole) or `206` (one `bytes=` range, with `Content-Range`), `416` for
/// an unsatisfiable range, `304` when `If-None-Match` names it; `Accept-Ranges`, an
/// `ETag` of the hash, `Cache-Control: private, max-age=31536000, immutable` (content never
/// changes under a hash), `X-Content-Type-Options: nosniff`, a sandboxing
/// `Content-Security-Policy`, and `Content-Type`/`Content-Disposition` from `mime` and
/// `file_name`: [`INLINE_MIME_TYPES`] inline as themselves, anything else as an
/// `application/octet-stream` attachment. Multiple ranges are answered with the whole file;
/// `If-Range` not matching the ETag does the same. The file is streamed, never loaded whole.
pub async fn download(
    blobs: &BlobStore,
    hash: &str,
    headers: &HeaderMap,
    file_name: Option<&str>,
    mime: &str,
) -> Result<Response, ApiError> {
    let path = blobs.blob_path(hash)?;
    let etag = format!("\"{hash}\"");
    let mut common = HeaderMap::new();
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    common.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    common.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    common.insert(header::ETAG, header_value(&etag)?);

    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found("media"))
        }
        Err(error) => return Err(ApiError::internal(error)),
    };

    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        if etag_matches(value, hash) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            response.headers_mut().extend(common);
            return Ok(response);
        }
    }

    let length = file.metadata().await.map_err(ApiError::internal)?.len();
    let range_allowed = match headers.get(header::IF_RANGE) {
        Some(value) => value.to_str().is_ok_and(|value| value.trim() == etag),
        None => true,
    };
    let range = match headers.get(header::RANGE) {
        Some(value) if range_allowed => match value.to_str() {
            Ok(value) => parse_range(value, length),
            Err(_) => RangeRequest::Whole,
        },
        _ => RangeRequest::Whole,
    };

    let (status, start, count) = match range {
        RangeRequest::Whole => (StatusCode::OK, 0, length),
        RangeRequest::Part { first, last } => {
            common.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {first}-{last}/{length}"))?,
            );
            (StatusCode::PARTIAL_CONTENT, first, last - first + 1)
        }
        RangeRequest::Unsatisfiable => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the range is outside the file's {length} bytes"),
            )
            .into_response();
            common.insert(header::CONTENT_RANGE, header_value(&format!("bytes */{length}"))?);
            response.headers_mut().extend(common);
            return Ok(response);
        }
    };

    let inline = INLINE_MIME_TYPES.contains(&mime);
    let content_type = if inline { mime } else { "application/octet-stream" };
    common.insert(header::CONTENT_TYPE, header_value(content_type)?);
    common.insert(header::CONTENT_DISPOSITION, content_disposition(inline, file_name));
    if mime != "application/pdf" {
        // Nothing served here may run script in our origin (a PDF viewer refuses a sandbox).
        common.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; sandbox"),
        );
    }
    common.insert(header::CONTENT_LENGTH, HeaderValue::from(count));

    if start > 0 {
        file.seek(SeekFrom::Start(start)).await.map_err(ApiError::internal)?;
    }
    let body = Body::from_stream(ReaderStream::with_capacity(file.take(count), READ_CHUNK_BYTES));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().extend(common);
    Ok(response)
}

fn header_value(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value).map_err(ApiError::internal)
}

/// True if an `If-None-Match` value lists the blob's ETag (weakly compared) or is `*`.
fn etag_matches(value: &HeaderValue, hash: &str) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    value.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')) == Some(hash)
    })
}

/// What a `Range` header asks of a file of a given length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RangeRequest {
    /// No usable range (absent, malformed, several ranges, another unit): the whole file.
    Whole,
    /// Bytes `first..=last`.
    Part { first: u64, last: u64 },
    /// A well-formed range that selects nothing: 416.
    Unsatisfiable,
}

/// Parses a single `bytes=first-last`, `bytes=first-` or `bytes=-suffix` range (RFC 9110 §14).
pub(super) fn parse_range(value: &str, length: u64) -> RangeRequest {
    let value = value.trim();
    let Some((unit, spec)) = value.split_once('=') else {
        return RangeRequest::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let number = |text: &str| -> Option<u64> {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Longer than u64: clamp, it is past any file anyway.
        Some(text.parse().unwrap_or(u64::MAX))
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => RangeRequest::Whole,
        (true, false) => match number(last) {
            None => RangeRequest::Whole,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if length == 0 => RangeRequest::Unsatisfiable,
            Some(suffix) => {
                RangeRequest::Part { first: length.saturating_sub(suffix), last: length - 1 }
            }
        },
        (false, true) => match number(first) {
            None => RangeRequest::Whole,
            Some(first) if first >= length => RangeRequest::Unsatisfiable,
            Some(first) => RangeRequest::Part { first, last: length - 1 },
        },
        (false, false) => match (number(first), number(last)) {
            (Some(first), Some(last)) if last >= first => {
                if first >= length {
                    RangeRequest::Unsatisfiable
                } else {
                    RangeRequest::Part { first, last: last.min(length - 1) }
                }
            }
            _ => RangeRequest::Whole,
        },
    }
}

/// `inline` or `attachment`, with the sanitised name as an ASCII `filename` fallback and an
/// RFC 6266/8187 `filename*=UTF-8''…`.
pub fn content_disposition(inline: bool, file_name: Option<&str>) -> HeaderValue {
    let kind = if inline { "inline" } else { "attachment" };
    let Some(name) = file_name else {
        return HeaderValue::from_static(if inline { "inline" } else { "attachment" });
    };
    let name = sanitize_file_name(name);
    let fallback: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\' | '%' | ';') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    let value = format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}");
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static(if inline { "inline" } else { "attachment" }))
}
