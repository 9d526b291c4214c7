//! A node's parts on a fresh sled store in a temporary directory, removed on drop.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use confab_node::api::{app, AppState};
use confab_node::config::{Config, Limits};
use confab_node::engine;
use confab_node::store::{KvStore, SledStore, StoreError};
use http_body_util::BodyExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;
use tower::ServiceExt;

pub struct TestNode {
    pub dir: PathBuf,
    pub store: Arc<dyn KvStore>,
    pub router: Router,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn temp_dir() -> PathBuf {
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("confab-node-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Opens the sled store, retrying while the directory is still locked: after a stop, sled's
/// IO threads let go of the file a moment after the last handle is dropped.
async fn open_store(path: &std::path::Path) -> SledStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledStore::open(path) {
            Ok(store) => return store,
            Err(StoreError::Locked) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(error) => panic!("open sled: {error}"),
        }
    }
}

impl TestNode {
    pub async fn start(limits: Limits) -> Self {
        Self::start_in(temp_dir(), limits).await
    }

    pub async fn start_in(dir: PathBuf, limits: Limits) -> Self {
        Self::start_config(Config { data_dir: dir, limits, ..Config::default() }).await
    }

    /// Starts with `config` in a fresh temporary directory (its `data_dir` is replaced).
    pub async fn start_with_config(config: Config) -> Self {
        Self::start_config(Config { data_dir: temp_dir(), ..config }).await
    }

    async fn start_config(config: Config) -> Self {
        let dir = config.data_dir.clone();
        let store: Arc<dyn KvStore> = Arc::new(open_store(&dir.join("db")).await);
        let blobs = confab_node::media::BlobStore::new(&dir).expect("open blob store");
        let search = confab_node::server::open_search(&config).expect("open search index");
        let (engine, hub, task) = engine::start(
            store.clone(),
            config.org_name.clone(),
            config.limits.clone(),
            Some(search.clone()),
            None,
        )
        .await
        .expect("start engine");
        let (stop, stopped) = watch::channel(false);
        let state = AppState::new(store.clone(), engine, hub, config, stopped, blobs, Some(search));
        Self { dir, store, router: app(state), stop, task: Some(task) }
    }

    /// Sends a request; returns status, headers and the JSON body (`Null` if empty).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let mut request =
            Request::builder().method(method).uri(path).header(header::HOST, "127.0.0.1:8080");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.raw(request.body(body).expect("request")).await
    }

    /// Sends a request; returns status, headers and the body's bytes.
    pub async fn raw_bytes(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let response = self.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        (status, headers, bytes.to_vec())
    }

    /// Uploads `bytes` as a file named `name`; returns status and JSON answer.
    pub async fn upload(
        &self,
        cookie: &str,
        name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, serde_json::Value) {
        let request = Request::post(format!("/api/v1/media?name={name}"))
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(bytes))
            .expect("request");
        let (status, _, json) = self.raw(request).await;
        (status, json)
    }

    /// `GET` with extra headers; returns status, headers and bytes.
    pub async fn get_bytes(
        &self,
        path: &str,
        cookie: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut request = Request::get(path)
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::COOKIE, cookie);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.raw_bytes(request.body(Body::empty()).expect("request")).await
    }

    pub async fn raw(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = self.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
        };
        (status, headers, json)
    }

    /// Registers a user and returns their session cookie (`name=value`).
    pub async fn register(&self, username: &str) -> String {
        let (status, headers, body) = self
            .request(
                "POST",
                "/api/v1/auth/register",
                None,
                Some(serde_json::json!({"username": username, "password": "password123"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "register {username}: {body}");
        let cookie = headers.get(header::SET_COOKIE).expect("cookie").to_str().expect("ascii");
        cookie.split(';').next().expect("pair").to_string()
    }
}

impl TestNode {
    /// Creates a channel as the user behind `cookie`; returns its id.
    pub async fn create_channel(&self, cookie: &str, name: &str, visibility: &str) -> String {
        let (status, _, chat) = self
            .request(
                "POST",
                "/api/v1/channels",
                Some(cookie),
                Some(serde_json::json!({"name": name, "visibility": visibility})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{chat}");
        chat["id"].as_str().unwrap().to_string()
    }

    /// Raises the shutdown signal that the server raises on SIGTERM (the engine keeps running).
    pub fn signal_shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops the engine (after its last flush) and closes the store, keeping the directory.
    pub async fn stop(mut self) -> PathBuf {
        let task = self.task.take();
        let dir = std::mem::take(&mut self.dir);
        let store = Arc::downgrade(&self.store);
        drop(self);
        if let Some(task) = task {
            task.await.expect("engine task");
        }
        // Background tasks (presence, media collection) see the stop signal on their own time;
        // the directory stays locked until the last of them has let go of the store.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.upgrade().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the store is still held 10 s after stop"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        dir
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
