//! An HTTP client for one user session against `/api/v1`.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::node::TestNode;
use crate::types::{Chat, ChatListEntry, HistoryQuery, Member, Message, Page, Settings, User};
use crate::ws::{WsClient, WsConnectError};

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "confab_session";

/// A non-2xx answer (or a transport/decoding failure, with status 0 / the real status and
/// code `"<transport>"` / `"<decode>"`).
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub retry_after: Option<String>,
    /// The raw body, for diagnostics.
    pub body: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} code={:?} message={:?} body={}",
            self.status,
            self.code,
            self.message,
            truncate(&self.body, 400)
        )
    }
}

impl std::error::Error for ApiError {}

/// Result of the typed helpers.
pub type ApiResult<T> = Result<T, ApiError>;

/// Shortens a string for messages.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head}…({} chars)", s.chars().count())
    }
}

/// A request body for [`Client::raw`].
#[derive(Clone, Debug)]
pub enum Body {
    None,
    Json(Value),
    /// Raw bytes sent as `application/json` (for malformed or oversized bodies).
    RawJson(Vec<u8>),
}

/// A full HTTP answer, for tests of headers and error shapes.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl RawResponse {
    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// All `Set-Cookie` headers.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    /// The error code of a `{code, message}` body.
    pub fn code(&self) -> Option<String> {
        self.json().and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_string))
    }

    fn into_error(self) -> ApiError {
        let v = self.json();
        let field = |k: &str| {
            v.as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        ApiError {
            status: self.status,
            code: field("code"),
            message: field("message"),
            retry_after: self.header("retry-after"),
            body: self.body,
        }
    }
}

/// Which `Origin` header a client sends on state-changing requests.
#[derive(Clone, Debug, PartialEq)]
pub enum OriginMode {
    /// The node's own origin, `http://127.0.0.1:PORT` (what a browser sends).
    Own,
    /// No `Origin` header (a non-browser client).
    Omit,
    /// This exact value.
    Custom(String),
}

/// One user session: a cookie jar and a base URL.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    jar: Arc<Jar>,
    base: String,
    origin: OriginMode,
}

fn build_http(jar: Arc<Jar>, local: Option<IpAddr>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .cookie_provider(jar)
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60));
    if let Some(ip) = local {
        b = b.local_address(ip);
    }
    match b.build() {
        Ok(c) => c,
        Err(e) => panic!("cannot build the HTTP client: {e}"),
    }
}

impl Client {
    /// A client without a session for `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Client {
        let jar = Arc::new(Jar::default());
        Client {
            http: build_http(jar.clone(), None),
            jar,
            base: base.trim_end_matches('/').to_string(),
            origin: OriginMode::Own,
        }
    }

    /// A client without a session for this node.
    pub fn for_node(node: &TestNode) -> Client {
        Client::new(&node.base_url())
    }

    /// A client for `base` whose jar holds `confab_session=VALUE` (e.g. a copied session).
    pub fn with_session_cookie(base: &str, value: &str) -> Client {
        let c = Client::new(base);
        if let Ok(url) = c.base.parse::<Url>() {
            c.jar.add_cookie_str(&format!("{SESSION_COOKIE}={value}; Path=/"), &url);
        }
        c
    }

    /// The same session (cookie jar), connecting from another local address (e.g. 127.0.0.2).
    pub fn with_local_address(&self, ip: IpAddr) -> Client {
        Client {
            http: build_http(self.jar.clone(), Some(ip)),
            jar: self.jar.clone(),
            base: self.base.clone(),
            origin: self.origin.clone(),
        }
    }

    /// The same session with another `Origin` behaviour.
    pub fn with_origin(&self, origin: OriginMode) -> Client {
        Client { origin, ..self.clone() }
    }

    /// Points the client at another base URL (e.g. a restarted node's new port), keeping its
    /// cookies (cookies are not port-scoped).
    pub fn rebase(&mut self, base: &str) {
        self.base = base.trim_end_matches('/').to_string();
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The node's own origin.
    pub fn own_origin(&self) -> String {
        self.base.clone()
    }

    fn origin_value(&self) -> Option<String> {
        match &self.origin {
            OriginMode::Own => Some(self.own_origin()),
            OriginMode::Omit => None,
            OriginMode::Custom(s) => Some(s.clone()),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.base, path)
    }

    /// The `Cookie` header this session would send to the node.
    pub fn cookie_header(&self) -> Option<HeaderValue> {
        let url: Url = self.base.parse().ok()?;
        self.jar.cookies(&url)
    }

    /// The value of the session cookie, if any.
    pub fn session_cookie(&self) -> Option<String> {
        let h = self.cookie_header()?;
        let s = h.to_str().ok()?;
        s.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == SESSION_COOKIE).then(|| v.to_string())
        })
    }

    /// Sends a request to `/api/v1{path}`; state-changing methods carry the `Origin` header of
    /// [`OriginMode`]. Panics only on transport failure.
    pub async fn raw(&self, method: Method, path: &str, body: Body) -> RawResponse {
        match self.try_raw(method.clone(), path, body).await {
            Ok(r) => r,
            Err(e) => panic!("{method} {path}: transport error: {e}"),
        }
    }

    /// Like [`Client::raw`] but returns transport errors.
    pub async fn try_raw(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<RawResponse, reqwest::Error> {
        let state_changing = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        let mut req = self.http.request(method, self.url(path));
        if state_changing {
            if let Some(o) = self.origin_value() {
                req = req.header("origin", o);
            }
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::RawJson(b) => req.header("content-type", "application/json").body(b),
        };
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await?;
        Ok(RawResponse { status, headers, body })
    }

    /// A request whose 2xx answer decodes as `T`; returns the status too.
    pub async fn call_status<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> ApiResult<(u16, T)> {
        let body = body.map_or(Body::None, Body::Json);
        let r = match self.try_raw(method, path, body).await {
            Ok(r) => r,
            Err(e) => {
                return Err(ApiError {
                    status: 0,
                    code: "<transport>".into(),
                    message: e.to_string(),
                    retry_after: None,
                    body: String::new(),
                })
            }
        };
        if !(200..300).contains(&r.status) {
            return Err(r.into_error());
        }
        match serde_json::from_str::<T>(&r.body) {
            Ok(v) => Ok((r.status, v)),
            Err(e) => Err(ApiError {
                status: r.status,
                code: "<decode>".into(),
                message: format!(
                    "the 2xx body does not match the spec's {} shape: {e}",
                    std::any::type_name::<T>()
                ),
                retry_after: None,
                body: r.body,
            }),
        }
    }

    /// A request whose 2xx answer decodes as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> ApiResult<T> {
        self.call_status(method, path, body).await.map(|(_, v)| v)
    }

    /// A request with an expected empty 2xx answer; returns the status.
    pub async fn call_empty(&self, method: Method, path: &str) -> ApiResult<u16> {
        let r = match self.try_raw(method, path, Body::None).await {
            Ok(r) => r,
            Err(e) => {
                return Err(ApiError {
                    status: 0,
                    code: "<transport>".into(),
                    message: e.to_string(),
                    retry_after: None,
                    body: String::new(),
                })
            }
        };
        if (200..300).contains(&r.status) {
            Ok(r.status)
        } else {
            Err(r.into_error())
        }
    }

    // ---- accounts ----

    /// `POST /auth/register`.
    pub async fn register(&self, username: &str, password: &str) -> ApiResult<User> {
        self.call(
            Method::POST,
            "/auth/register",
            Some(json!({"username": username, "password": password})),
        )
        .await
    }

    /// `POST /auth/register` with a display name.
    pub async fn register_named(
        &self,
        username: &str,
        password: &str,
        display_name: &str,
    ) -> ApiResult<User> {
        self.call(
            Method::POST,
            "/auth/register",
            Some(json!({"username": username, "password": password, "display_name": display_name})),
        )
        .await
    }

    /// `POST /auth/login`.
    pub async fn login(&self, username: &str, password: &str) -> ApiResult<User> {
        self.call(
            Method::POST,
            "/auth/login",
            Some(json!({"username": username, "password": password})),
        )
        .await
    }

    /// `POST /auth/logout`.
    pub async fn logout(&self) -> ApiResult<u16> {
        self.call_empty(Method::POST, "/auth/logout").await
    }

    /// `GET /me`.
    pub async fn me(&self) -> ApiResult<User> {
        self.call(Method::GET, "/me", None).await
    }

    /// `PATCH /me`.
    pub async fn patch_me(&self, patch: Value) -> ApiResult<User> {
        self.call(Method::PATCH, "/me", Some(patch)).await
    }

    /// `GET /users`.
    pub async fn users(&self) -> ApiResult<Vec<User>> {
        self.call(Method::GET, "/users", None).await
    }

    /// `GET /users/{id}`.
    pub async fn user(&self, user_id: &str) -> ApiResult<User> {
        self.call(Method::GET, &format!("/users/{user_id}"), None).await
    }

    /// `GET /admin/settings`.
    pub async fn admin_settings(&self) -> ApiResult<Settings> {
        self.call(Method::GET, "/admin/settings", None).await
    }

    /// `PATCH /admin/settings`.
    pub async fn set_registration_open(&self, open: bool) -> ApiResult<Settings> {
        self.call(Method::PATCH, "/admin/settings", Some(json!({"registration_open": open}))).await
    }

    /// `POST /admin/users/{id}/disable`.
    pub async fn disable_user(&self, user_id: &str) -> ApiResult<User> {
        self.call(Method::POST, &format!("/admin/users/{user_id}/disable"), None).await
    }

    /// `POST /admin/users/{id}/enable`.
    pub async fn enable_user(&self, user_id: &str) -> ApiResult<User> {
        self.call(Method::POST, &format!("/admin/users/{user_id}/enable"), None).await
    }

    // ---- chats ----

    /// `POST /channels` with `visibility` `"public"` or `"private"`.
    pub async fn create_channel(&self, name: &str, visibility: &str) -> ApiResult<Chat> {
        self.call(Method::POST, "/channels", Some(json!({"name": name, "visibility": visibility})))
            .await
    }

    /// `POST /channels` with a full body; returns the status too.
    pub async fn create_channel_with(&self, body: Value) -> ApiResult<(u16, Chat)> {
        self.call_status(Method::POST, "/channels", Some(body)).await
    }

    /// `GET /channels`.
    pub async fn channels(&self) -> ApiResult<Vec<Chat>> {
        self.call(Method::GET, "/channels", None).await
    }

    /// `POST /dms`; returns `(status, chat)` (201 new, 200 existing).
    pub async fn dm(&self, user_ids: &[&str]) -> ApiResult<(u16, Chat)> {
        self.call_status(Method::POST, "/dms", Some(json!({"user_ids": user_ids}))).await
    }

    /// `GET /chats`.
    pub async fn chats(&self) -> ApiResult<Vec<ChatListEntry>> {
        self.call(Method::GET, "/chats", None).await
    }

    /// The chat list entry of one chat, if listed.
    pub async fn chat_entry(&self, chat_id: &str) -> ApiResult<Option<ChatListEntry>> {
        Ok(self.chats().await?.into_iter().find(|e| e.chat.id == chat_id))
    }

    /// `GET /chats/{id}`.
    pub async fn chat(&self, chat_id: &str) -> ApiResult<Chat> {
        self.call(Method::GET, &format!("/chats/{chat_id}"), None).await
    }

    /// `PATCH /chats/{id}`.
    pub async fn patch_chat(&self, chat_id: &str, patch: Value) -> ApiResult<Chat> {
        self.call(Method::PATCH, &format!("/chats/{chat_id}"), Some(patch)).await
    }

    /// `POST /chats/{id}/join`.
    pub async fn join(&self, chat_id: &str) -> ApiResult<Chat> {
        self.call(Method::POST, &format!("/chats/{chat_id}/join"), None).await
    }

    /// `POST /chats/{id}/leave`.
    pub async fn leave(&self, chat_id: &str) -> ApiResult<u16> {
        self.call_empty(Method::POST, &format!("/chats/{chat_id}/leave")).await
    }

    /// `GET /chats/{id}/members`.
    pub async fn members(&self, chat_id: &str) -> ApiResult<Vec<Member>> {
        self.call(Method::GET, &format!("/chats/{chat_id}/members"), None).await
    }

    /// `POST /chats/{id}/members` (invite).
    pub async fn invite(
        &self,
        chat_id: &str,
        user_id: &str,
        role: Option<&str>,
    ) -> ApiResult<Member> {
        let mut body = json!({"user_id": user_id});
        if let Some(r) = role {
            body["role"] = json!(r);
        }
        self.call(Method::POST, &format!("/chats/{chat_id}/members"), Some(body)).await
    }

    /// `PATCH /chats/{id}/members/{user}`.
    pub async fn set_role(&self, chat_id: &str, user_id: &str, role: &str) -> ApiResult<Member> {
        self.call(
            Method::PATCH,
            &format!("/chats/{chat_id}/members/{user_id}"),
            Some(json!({"role": role})),
        )
        .await
    }

    /// `DELETE /chats/{id}/members/{user}`.
    pub async fn remove_member(&self, chat_id: &str, user_id: &str) -> ApiResult<u16> {
        self.call_empty(Method::DELETE, &format!("/chats/{chat_id}/members/{user_id}")).await
    }

    // ---- messages ----

    /// `POST /chats/{id}/messages` with a plain body.
    pub async fn send(&self, chat_id: &str, body: &str) -> ApiResult<Message> {
        self.call(Method::POST, &format!("/chats/{chat_id}/messages"), Some(json!({"body": body})))
            .await
    }

    /// `POST /chats/{id}/messages` with `reply_to` and/or `client_id`; returns the status too.
    pub async fn send_full(
        &self,
        chat_id: &str,
        body: &str,
        reply_to: Option<&str>,
        client_id: Option<&str>,
    ) -> ApiResult<(u16, Message)> {
        let mut b = json!({"body": body});
        if let Some(r) = reply_to {
            b["reply_to"] = json!(r);
        }
        if let Some(c) = client_id {
            b["client_id"] = json!(c);
        }
        self.call_status(Method::POST, &format!("/chats/{chat_id}/messages"), Some(b)).await
    }

    /// `GET /chats/{id}/messages?...`.
    pub async fn history(&self, chat_id: &str, q: &HistoryQuery) -> ApiResult<Page> {
        self.call(Method::GET, &format!("/chats/{chat_id}/messages{}", q.to_query()), None).await
    }

    /// Every message of a chat, oldest first, paging with `after` (limit 200 per page).
    pub async fn all_messages(&self, chat_id: &str) -> ApiResult<Vec<Message>> {
        let mut out: Vec<Message> = Vec::new();
        // First page: the oldest ones are reached by paging backwards from the newest.
        let mut page = self.history(chat_id, &HistoryQuery::latest(200)).await?;
        let mut pages = vec![page.messages.clone()];
        while page.has_more {
            let Some(first) = page.messages.first() else {
                break;
            };
            page = self.history(chat_id, &HistoryQuery::before(&first.id, 200)).await?;
            pages.push(page.messages.clone());
        }
        for p in pages.into_iter().rev() {
            out.extend(p);
        }
        Ok(out)
    }

    /// `GET /chats/{id}/messages/{mid}`.
    pub async fn get_message(&self, chat_id: &str, message_id: &str) -> ApiResult<Message> {
        self.call(Method::GET, &format!("/chats/{chat_id}/messages/{message_id}"), None).await
    }

    /// `PATCH /chats/{id}/messages/{mid}`.
    pub async fn edit(&self, chat_id: &str, message_id: &str, body: &str) -> ApiResult<Message> {
        self.call(
            Method::PATCH,
            &format!("/chats/{chat_id}/messages/{message_id}"),
            Some(json!({"body": body})),
        )
        .await
    }

    /// `DELETE /chats/{id}/messages/{mid}`.
    pub async fn delete(&self, chat_id: &str, message_id: &str) -> ApiResult<Message> {
        self.call(Method::DELETE, &format!("/chats/{chat_id}/messages/{message_id}"), None).await
    }

    /// `POST /chats/{id}/read`.
    pub async fn read(&self, chat_id: &str, message_id: &str) -> ApiResult<ChatListEntry> {
        self.call(
            Method::POST,
            &format!("/chats/{chat_id}/read"),
            Some(json!({"message_id": message_id})),
        )
        .await
    }

    /// `GET /sync?after=&limit=`.
    pub async fn sync(&self, after: Option<&str>, limit: Option<u32>) -> ApiResult<Page> {
        let mut q = Vec::new();
        if let Some(a) = after {
            q.push(format!("after={a}"));
        }
        if let Some(l) = limit {
            q.push(format!("limit={l}"));
        }
        let qs = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
        self.call(Method::GET, &format!("/sync{qs}"), None).await
    }

    // ---- WebSocket ----

    /// Opens `/api/v1/ws[?cursor=N]` with this session's cookie and the node's own `Origin`,
    /// and waits for the `hello` frame.
    pub async fn ws(&self, cursor: Option<u64>) -> Result<WsClient, WsConnectError> {
        let origin = self.own_origin();
        WsClient::connect(&self.base, self.cookie_header(), Some(origin.as_str()), cursor).await
    }

    /// The WebSocket of a registered device (`?device=`): the node does not push to it while
    /// it is connected.
    pub async fn ws_as_device(&self, device_id: &str) -> WsClient {
        let origin = self.own_origin();
        WsClient::connect_query(
            &self.base,
            self.cookie_header(),
            Some(origin.as_str()),
            &format!("device={device_id}"),
        )
        .await
        .unwrap_or_else(|e| panic!("WebSocket connect failed: {e}"))
    }

    /// This session's WebSocket without the checking reader: see [`crate::ws::connect_raw`].
    pub async fn ws_raw(
        &self,
    ) -> Result<
        (crate::ws::WsSender, futures_util::stream::SplitStream<crate::ws::WsStream>),
        WsConnectError,
    > {
        let origin = self.own_origin();
        crate::ws::connect_raw(&self.base, self.cookie_header(), Some(origin.as_str())).await
    }

    /// Like [`Client::ws`] but panics with the reason on failure.
    pub async fn ws_ok(&self, cursor: Option<u64>) -> WsClient {
        match self.ws(cursor).await {
            Ok(w) => w,
            Err(e) => panic!("WebSocket connect failed: {e}"),
        }
    }
}
