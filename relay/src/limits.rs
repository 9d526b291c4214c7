//! In-memory, bounded bookkeeping for authentication and rate limits: single-use device
//! challenges and token buckets (per recipient queue and relay-wide).

use confab_protocol::relay::{QueueId, CHALLENGE_LEN};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(burst: f64, now: Instant) -> Self {
        Self { tokens: burst, last: now }
    }

    /// Takes one token, or says how long until one is available.
    pub fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if rate <= 0.0 {
            Err(Duration::from_secs(3600))
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// Seconds to put in `Retry-After` for a wait (rounded up, at least 1).
pub fn retry_after_s(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// Per-queue buckets. Bounded: when `max_entries` is reached, full (idle) buckets are forgotten,
/// which is harmless because a new bucket starts full.
pub struct QueueLimiter {
    rate: f64,
    burst: f64,
    max_entries: usize,
    buckets: Mutex<HashMap<QueueId, Bucket>>,
}

impl QueueLimiter {
    pub fn new(rate: f64, burst: f64, max_entries: usize) -> Self {
        Self { rate, burst, max_entries: max_entries.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    pub fn check(&self, queue: &QueueId) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= self.max_entries && !buckets.contains_key(queue) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                let mut probe = *b;
                probe.tokens = (probe.tokens
                    + now.saturating_duration_since(probe.last).as_secs_f64() * rate)
                    .min(burst);
                probe.tokens < burst
            });
            if buckets.len() >= self.max_entries {
                return Err(Duration::from_secs(1));
            }
        }
        buckets
            .entry(*queue)
            .or_insert_with(|| Bucket::new(self.burst, now))
            .take(self.rate, self.burst, now)
    }
}

/// One relay-wide bucket.
pub struct GlobalLimiter {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

impl GlobalLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self { rate, burst, bucket: Mutex::new(Bucket::new(burst, Instant::now())) }
    }

    pub fn check(&self) -> Result<(), Duration> {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        bucket.take(self.rate, self.burst, Instant::now())
    }
}

/// Why a challenge could not be issued or used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeError {
    /// Too many outstanding challenges.
    Busy,
    /// No randomness available.
    NoRandomness,
}

/// Outstanding single-use challenges, each valid for `ttl`.
pub struct Challenges {
    ttl: Duration,
    max: usize,
    issued: Mutex<HashMap<[u8; CHALLENGE_LEN], Instant>>,
}

impl Challenges {
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self { ttl, max: max.max(1), issued: Mutex::new(HashMap::new()) }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a fresh random challenge.
    pub fn issue(&self) -> Result<[u8; CHALLENGE_LEN], ChallengeError> {
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if issued.len() >= self.max {
            issued.retain(|_, expires| *expires > now);
            if issued.len() >= self.max {
                return Err(ChallengeError::Busy);
            }
        }
        let mut challenge = [0u8; CHALLENGE_LEN];
        getrandom::fill(&mut challenge).map_err(|_| ChallengeError::NoRandomness)?;
        issued.insert(challenge, now + self.ttl);
        Ok(challenge)
    }

    /// Consumes a challenge: true if it was issued, unused and unexpired. A challenge can be
    /// taken once, whatever the signature that comes with it.
    pub fn take(&self, challenge: &[u8]) -> bool {
        let Ok(key) = <[u8; CHALLENGE_LEN]>::try_from(challenge) else {
            return false;
        };
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        matches!(issued.remove(&key), Some(expires) if expires > Instant::now())
    }
}
