//! The browser client, embedded in the binary and served at `/` with a strict
//! Content-Security-Policy (no inline scripts, no `unsafe-eval`).

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
    for origin in push.offered_relays().iter().filter_map(|url| origin_of(url)) {
        if !sources.contains(&origin) {
            sources.push(origin);
        }
    }
    if push.other_relays_allowed {
        sources.push("https:".to_string());
    }
    CONTENT_SECURITY_POLICY
        .replace("connect-src 'self'", &format!("connect-src {}", sources.join(" ")))
}

const FILES: [(&str, &str, &str); 37] = [
    ("/index.html", "text/html; charset=utf-8", include_str!("../../web/index.html")),
    ("/app.js", "text/javascript; charset=utf-8", include_str!("../../web/app.js")),
    ("/state.js", "text/javascript; charset=utf-8", include_str!("../../web/state.js")),
    ("/dom.js", "text/javascript; charset=utf-8", include_str!("../../web/dom.js")),
    ("/errors.js", "text/javascript; charset=utf-8", include_str!("../../web/errors.js")),
    ("/people.js", "text/javascript; charset=utf-8", include_str!("../../web/people.js")),
    ("/auth.js", "text/javascript; charset=utf-8", include_str!("../../web/auth.js")),
    ("/chatlist.js", "text/javascript; charset=utf-8", include_str!("../../web/chatlist.js")),
    ("/views.js", "text/javascript; charset=utf-8", include_str!("../../web/views.js")),
    ("/messages.js", "text/javascript; charset=utf-8", include_str!("../../web/messages.js")),
    ("/files.js", "text/javascript; charset=utf-8", include_str!("../../web/files.js")),
    ("/reactions.js", "text/javascript; charset=utf-8", include_str!("../../web/reactions.js")),
    ("/history.js", "text/javascript; charset=utf-8", include_str!("../../web/history.js")),
    ("/sending.js", "text/javascript; charset=utf-8", include_str!("../../web/sending.js")),
    ("/composer.js", "text/javascript; charset=utf-8", include_str!("../../web/composer.js")),
    ("/thread.js", "text/javascript; charset=utf-8", include_str!("../../web/thread.js")),
    ("/events.js", "text/javascript; charset=utf-8", include_str!("../../web/events.js")),
    ("/connection.js", "text/javascript; charset=utf-8", include_str!("../../web/connection.js")),
    ("/notify.js", "text/javascript; charset=utf-8", include_str!("../../web/notify.js")),
    ("/profile.js", "text/javascript; charset=utf-8", include_str!("../../web/profile.js")),
    ("/dialogs.js", "text/javascript; charset=utf-8", include_str!("../../web/dialogs.js")),
    ("/switcher.js", "text/javascript; charset=utf-8", include_str!("../../web/switcher.js")),
    ("/search.js", "text/javascript; charset=utf-8", include_str!("../../web/search.js")),
    ("/api.js", "text/javascript; charset=utf-8", include_str!("../../web/api.js")),
    ("/format.js", "text/javascript; charset=utf-8", include_str!("../../web/format.js")),
    ("/logic.js", "text/javascript; charset=utf-8", include_str!("../../web/logic.js")),
    ("/emoji.js", "text/javascript; charset=utf-8", include_str!("../../web/emoji.js")),
    ("/watch.js", "text/javascript; charset=utf-8", include_str!("../../web/watch.js")),
    ("/device.js", "text/javascript; charset=utf-8", include_str!("../../web/device.js")),
    ("/sw.js", "text/javascript; charset=utf-8", include_str!("../../web/sw.js")),
    ("/style.css", "text/css; charset=utf-8", include_str!("../../web/style.css")),
    ("/sidebar.css", "text/css; charset=utf-8", include_str!("../../web/sidebar.css")),
    ("/chat.css", "text/css; charset=utf-8", include_str!("../../web/chat.css")),
    ("/composer.css", "text/css; charset=utf-8", include_str!("../../web/composer.css")),
    ("/search.css", "text/css; charset=utf-8", include_str!("../../web/search.css")),
    ("/dialogs.css", "text/css; charset=utf-8", include_str!("../../web/dialogs.css")),
    ("/narrow.css", "text/css; charset=utf-8", include_str!("../../web/narrow.css")),
];

fn serve(content_type: &'static str, body: &'static str, policy: HeaderValue) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The client's static files, for any router state (the API merges them into its own).
pub fn routes<S: Clone + Send + Sync + 'static>(push: &PushConfig) -> Router<S> {
    let policy = HeaderValue::from_str(&content_security_policy(push))
        .unwrap_or_else(|_| HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    let mut router = Router::new();
    for (path, content_type, body) in FILES {
        let policy = policy.clone();
        router = router.route(path, get(move || async move { serve(content_type, body, policy) }));
    }
    let (_, content_type, body) = FILES[0];
    router.route("/", get(move || async move { serve(content_type, body, policy) }))
}

#[cfg(test)]
mod tests {
    use super::FILES;

    fn served(path: &str) -> bool {
        FILES.iter().any(|(p, _, _)| *p == path)
    }

    /// The names that follow each `prefix` in `body`, up to the next `"`.
    fn names_after<'a>(body: &'a str, prefix: &str) -> Vec<&'a str> {
        body.split(prefix).skip(1).filter_map(|rest| rest.split('"').next()).collect()
    }

    /// Every module a script imports (`from "./x.js"`) and every script and stylesheet the page
    /// links is embedded: the browser never asks for a web file the node does not serve.
    #[test]
    fn every_linked_web_file_is_embedded() {
        let mut checked = 0;
        for (path, _, body) in FILES {
            for name in names_after(body, "from \"./") {
                assert!(served(&format!("/{name}")), "{path} imports ./{name}, not in FILES");
                checked += 1;
            }
        }
        let (_, _, index) = FILES[0];
        for prefix in ["href=\"/", "src=\"/"] {
            for name in names_after(index, prefix) {
                assert!(served(&format!("/{name}")), "index.html links /{name}, not in FILES");
                checked += 1;
            }
        }
        assert!(checked > FILES.len(), "found only {checked} links");
    }
}
