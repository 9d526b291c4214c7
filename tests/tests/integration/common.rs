//! Helpers shared by the integration tests.

use std::time::Duration;

pub use confab_tests::*;

/// Quiet period after which a WebSocket is considered to have delivered everything.
pub const QUIET: Duration = Duration::from_millis(700);

/// Assertions on [`ApiResult`].
pub trait ApiExt<T> {
    /// The value, or a panic naming `ctx` and the API error.
    fn must(self, ctx: &str) -> T;
    /// The error, which must have `status` and `code` (an empty `code` skips the code check).
    fn err_is(self, status: u16, code: &str, ctx: &str) -> ApiError;
}

impl<T: std::fmt::Debug> ApiExt<T> for ApiResult<T> {
    #[track_caller]
    fn must(self, ctx: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("{ctx}: expected success, got {e}"),
        }
    }

    #[track_caller]
    fn err_is(self, status: u16, code: &str, ctx: &str) -> ApiError {
        match self {
            Ok(v) => panic!("{ctx}: expected HTTP {status} {code}, got success: {v:?}"),
            Err(e) => {
                assert_eq!(e.status, status, "{ctx}: expected HTTP {status} {code}, got {e}");
                if !code.is_empty() {
                    assert_eq!(e.code, code, "{ctx}: expected code {code}, got {e}");
                }
                assert!(
                    !e.message.is_empty(),
                    "{ctx}: error body must be {{code, message}} with a message, got {e}"
                );
                e
            }
        }
    }
}

/// Starts a node with users `names` (first is admin).
pub async fn setup(names: &[&str]) -> (TestNode, Vec<Client>) {
    node_with_users(names).await
}

/// [`setup`] for a node whose configuration file is `config` (TOML).
pub async fn setup_with_config(names: &[&str], config: &str) -> (TestNode, Vec<Client>) {
    let opts = NodeOptions { config: Some(config.to_string()), ..NodeOptions::default() };
    node_with_users_opts(names, opts).await
}

/// Creates a public channel owned by `owner` and joins every other client to it.
pub async fn public_channel(owner: &Client, name: &str, others: &[&Client]) -> Chat {
    let chat = owner.create_channel(name, "public").await.must("create public channel");
    for c in others {
        c.join(&chat.id).await.must("join public channel");
    }
    chat
}

/// Events about `chat_id` in `events`.
pub fn about_chat<'a>(
    events: &'a [serde_json::Value],
    chat_id: &str,
) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|e| ev_chat_id(e) == Some(chat_id) || e.to_string().contains(chat_id))
        .collect()
}

/// Polls `message` in `chat` until its delivery state is `state`; false if `within` passed.
pub async fn reaches_state(
    client: &Client,
    chat: &str,
    message: &str,
    state: &str,
    within: Duration,
) -> bool {
    let deadline = std::time::Instant::now() + within;
    while client.get_message(chat, message).await.must("get").state != state {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}
