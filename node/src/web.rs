//! The browser client, embedded in the binary and served at `/` with a strict
//! Content-Security-Policy (no inline scripts, no `unsafe-eval`).

use crate::api::AppState;
use crate::config::{origin_of, PushConfig};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// [`CONTENT_SECURITY_POLICY`] that also lets the page and its service worker reach the relays
/// the node offers (`[push] default_relay_url` and `relay_urls`), and any `https` origin when
/// devices may choose other relays (`[push] other_relays_allowed`).
pub fn content_security_policy(push: &PushConfig) -> String {
    let mut sources = vec!["'self'".to_string()];
    for origin in push
        .offered_relays()
        .iter()
        .filter_map(|url| origin_of(url))
    {
        if !sources.contains(&origin) {
            sources.push(origin);
        }
    }
    if push.other_relays_allowed {
        sources.push("https:".to_string());
    }
    CONTENT_SECURITY_POLICY.replace(
        "connect-src 'self'",
        &format!("connect-src {}", sources.join(" ")),
    )
}

const FILES: [(&str, &str, &str); 10] = [
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "/api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/api.js"),
    ),
    (
        "/format.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/format.js"),
    ),
    (
        "/logic.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/logic.js"),
    ),
    (
        "/emoji.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/emoji.js"),
    ),
    (
        "/watch.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/watch.js"),
    ),
    (
        "/device.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/device.js"),
    ),
    (
        "/sw.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/sw.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
];

fn serve(content_type: &'static str, body: &'static str, policy: HeaderValue) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

pub fn routes(push: &PushConfig) -> Router<AppState> {
    let policy = HeaderValue::from_str(&content_security_policy(push))
        .unwrap_or_else(|_| HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    let mut router = Router::new();
    for (path, content_type, body) in FILES {
        let policy = policy.clone();
        router = router.route(
            path,
            get(move || async move { serve(content_type, body, policy) }),
        );
    }
    let (_, content_type, body) = FILES[0];
    router.route(
        "/",
        get(move || async move { serve(content_type, body, policy) }),
    )
}
