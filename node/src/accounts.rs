//! Passwords (Argon2id), session tokens and login rate limits.
//!
//! Session tokens are 32 random bytes sent as the `confab_session` cookie; the store keeps only
//! their SHA-256, so a copy of the data directory does not hand out live sessions.

use crate::model::{now_ms, SessionRecord, UserRecord};
use crate::store::{KvRead, KvStore, StoreError, Tree, WriteBatch};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const COOKIE: &str = "confab_session";
pub const PASSWORD_CHARS_MIN: usize = 8;
pub const PASSWORD_CHARS_MAX: usize = 1024;

pub fn check_password_rules(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if !(PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&chars) {
        return Err(format!(
            "a password is {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters"
        ));
    }
    Ok(())
}

/// Hashes a password with Argon2id (default parameters). CPU-heavy: call off the async threads.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt_bytes: [u8; 16] = crate::random::random_bytes();
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt_bytes)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against its stored hash. CPU-heavy: call off the async threads.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordVerifier::<str>::verify_password(&Argon2::default(), password.as_bytes(), hash).is_ok()
}

fn token_key(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates a session for `user` and returns its token. Flushed before returning.
pub async fn create_session(
    store: &dyn KvStore,
    user: &UserRecord,
    lifetime_s: u64,
) -> Result<String, StoreError> {
    let token = data_encoding::BASE64URL_NOPAD.encode(&crate::random::random_bytes::<32>());
    let now = now_ms();
    let record = SessionRecord {
        user: user.id.clone(),
        created_ms: now,
        expires_ms: now + lifetime_s * 1000,
        generation: user.session_generation,
    };
    let mut batch = WriteBatch::default();
    batch.put(Tree::Sessions, token_key(&token), serde_json::to_vec(&record).unwrap_or_default());
    store.apply(batch)?;
    store.flush().await?;
    Ok(token)
}

/// The live user behind a session token, if the session is valid and the user is enabled.
pub fn session_user(store: &dyn KvRead, token: &str) -> Result<Option<UserRecord>, StoreError> {
    if token.len() > 128 {
        return Ok(None);
    }
    let Some(bytes) = store.get(Tree::Sessions, &token_key(token))? else {
        return Ok(None);
    };
    let Ok(session) = serde_json::from_slice::<SessionRecord>(&bytes) else {
        return Ok(None);
    };
    if session.expires_ms < now_ms() {
        return Ok(None);
    }
    let Some(user) = crate::views::user(store, session.user.localpart())? else {
        return Ok(None);
    };
    if user.disabled || user.session_generation != session.generation {
        return Ok(None);
    }
    Ok(Some(user))
}

pub async fn end_session(store: &dyn KvStore, token: &str) -> Result<(), StoreError> {
    let mut batch = WriteBatch::default();
    batch.delete(Tree::Sessions, token_key(token));
    store.apply(batch)?;
    store.flush().await
}

/// Counts failures per key (account or address) in a fixed window.
pub struct FailureLimiter {
    failures_max: u32,
    window: Duration,
    entries: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Entries kept at most, so a flood of distinct keys cannot grow memory without bound.
const LIMITER_ENTRIES_MAX: usize = 100_000;

impl FailureLimiter {
    pub fn new(failures_max: u32, window_s: u64) -> Self {
        Self {
            failures_max,
            window: Duration::from_secs(window_s),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` if the key is locked out.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((start, count))
                if *count >= self.failures_max && start.elapsed() < self.window =>
            {
                Err((self.window - start.elapsed()).as_secs() + 1)
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= LIMITER_ENTRIES_MAX {
            let window = self.window;
            entries.retain(|_, (start, _)| start.elapsed() < window);
        }
        let entry = entries.entry(key.to_string()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    /// Whether the key has a failure within the current window.
    pub fn has_failed(&self, key: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).is_some_and(|(start, count)| *count > 0 && start.elapsed() < self.window)
    }

    pub fn clear(&self, key: &str) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// A token bucket: `rate` per second, up to `burst`.
pub struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_s: u32, burst: u32) -> Self {
        Self {
            rate_per_s: rate_per_s as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: Instant::now(),
        }
    }

    /// Takes one token; `Err(seconds to wait)` if none is left.
    pub fn take(&mut self) -> Result<(), u64> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate_per_s)
            .min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / self.rate_per_s).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn limiter_locks_out_after_the_failures() {
        let limiter = FailureLimiter::new(2, 60);
        assert!(limiter.check("a").is_ok());
        limiter.record_failure("a");
        limiter.record_failure("a");
        assert!(limiter.check("a").is_err());
        assert!(limiter.check("b").is_ok());
        limiter.clear("a");
        assert!(limiter.check("a").is_ok());
    }

    #[test]
    fn token_bucket_refuses_past_the_burst() {
        let mut bucket = TokenBucket::new(1, 2);
        assert!(bucket.take().is_ok());
        assert!(bucket.take().is_ok());
        assert!(bucket.take().is_err());
    }
}
