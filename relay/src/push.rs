//! Web Push: RFC 8291 `aes128gcm` message encryption, RFC 8292 VAPID authorisation and RFC 8030
//! delivery, plus the address policy that keeps push endpoints off private networks.
//!
//! The relay pushes only a wake-up: `{"v":1,"pending":N}` (how many envelopes wait), never
//! envelope bytes, so the push service and anyone who reads the push learn nothing of content.
//! Subscriptions answering 404 or 410 are deleted. Wake-ups go through a bounded channel to a
//! worker with bounded concurrency; a full channel drops the wake-up (counted) and never the
//! envelope, which stays queued.

use crate::error::RelayError;
use crate::metrics::Metrics;
use crate::store::{PushSubscription, Store};
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::Aes128Gcm;
use confab_protocol::relay::{b64_decode, b64_encode, QueueId, Topic, Urgency};
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer;
use p256::elliptic_curve::sec1::ToSec1Point;
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Record size announced in the `aes128gcm` header (one record is always enough: pushes are
/// at most 4096 bytes, RFC 8291 §4).
pub const RECORD_SIZE: u32 = 4096;
/// Largest plaintext a single push may carry (4096 − 86 header − 16 tag − 1 delimiter).
pub const PUSH_PLAINTEXT_MAX: usize = 3993;
/// How long a VAPID token is valid (RFC 8292 §2: at most 24 hours).
pub const VAPID_LIFETIME_S: u64 = 12 * 3600;

/// Why a push could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("push subscription: {0}")]
    Subscription(&'static str),
    #[error("push endpoint: {0}")]
    Endpoint(String),
    #[error("push payload is {0} bytes; the limit is 3993")]
    TooLong(usize),
    #[error("encryption failed")]
    Crypto,
}

/// A subscription's decoded keys.
pub struct UaKeys {
    /// The user agent's P-256 public key, uncompressed (65 bytes).
    pub p256dh: [u8; 65],
    /// The authentication secret (16 bytes).
    pub auth: [u8; 16],
}

impl UaKeys {
    pub fn from_subscription(sub: &PushSubscription) -> Result<Self, PushError> {
        let p256dh = b64_decode(&sub.keys.p256dh)
            .and_then(|b| <[u8; 65]>::try_from(b.as_slice()).ok())
            .ok_or(PushError::Subscription("keys.p256dh must be 65 bytes of unpadded base64url"))?;
        p256::PublicKey::from_sec1_bytes(&p256dh)
            .map_err(|_| PushError::Subscription("keys.p256dh is not a point on P-256"))?;
        let auth = b64_decode(&sub.keys.auth)
            .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
            .ok_or(PushError::Subscription("keys.auth must be 16 bytes of unpadded base64url"))?;
        Ok(Self { p256dh, auth })
    }
}

fn hkdf_expand(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), PushError> {
    Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, out).map_err(|_| PushError::Crypto)
}

/// The content-encryption key and nonce both sides derive (RFC 8291 §3.4, RFC 8188 §2.2):
/// IKM = HKDF(auth secret, ECDH secret, "WebPush: info" ‖ 0 ‖ ua_public ‖ as_public, 32).
fn content_cipher(
    ua: &UaKeys,
    ecdh_secret: &[u8],
    as_public: &[u8],
    salt: &[u8],
) -> Result<(Aes128Gcm, [u8; 12]), PushError> {
    let mut key_info = Vec::with_capacity(14 + 65 + 65);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(&ua.p256dh);
    key_info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    hkdf_expand(&ua.auth, ecdh_secret, &key_info, &mut ikm)?;
    let mut cek = [0u8; 16];
    hkdf_expand(salt, &ikm, b"Content-Encoding: aes128gcm\0", &mut cek)?;
    let mut nonce = [0u8; 12];
    hkdf_expand(salt, &ikm, b"Content-Encoding: nonce\0", &mut nonce)?;
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| PushError::Crypto)?;
    Ok((cipher, nonce))
}

/// Encrypts `plaintext` for a subscription (RFC 8291 §3 and RFC 8188), as a single record with
/// no padding. `as_secret` is the application server's ephemeral P-256 secret and `salt` 16
/// random bytes, both fresh per message (handed in so the RFC's test vector can be checked).
pub fn encrypt(
    ua: &UaKeys,
    plaintext: &[u8],
    as_secret: &[u8; 32],
    salt: &[u8; 16],
) -> Result<Vec<u8>, PushError> {
    if plaintext.len() > PUSH_PLAINTEXT_MAX {
        return Err(PushError::TooLong(plaintext.len()));
    }
    let secret = p256::SecretKey::from_slice(as_secret).map_err(|_| PushError::Crypto)?;
    let as_public = secret.public_key().to_sec1_point(false);
    let as_public = as_public.as_bytes();
    let ua_public = p256::PublicKey::from_sec1_bytes(&ua.p256dh).map_err(|_| PushError::Crypto)?;
    let shared = p256::elliptic_curve::ecdh::diffie_hellman(
        secret.to_nonzero_scalar(),
        ua_public.as_affine(),
    );
    let (cipher, nonce) = content_cipher(ua, shared.raw_secret_bytes(), as_public, salt)?;
    let mut record = Vec::with_capacity(plaintext.len() + 1);
    record.extend_from_slice(plaintext);
    record.push(2); // last-record delimiter, no padding
    let ciphertext =
        cipher.encrypt((&nonce).into(), record.as_slice()).map_err(|_| PushError::Crypto)?;
    let mut body = Vec::with_capacity(16 + 4 + 1 + as_public.len() + ciphertext.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(as_public);
    body.extend_from_slice(&ciphertext);
    Ok(body)
}

/// Decrypts a single-record `aes128gcm` push body as the user agent does (RFC 8291 §3): the
/// receiver's side of [`encrypt`], for test push services and referees. `ua_secret` is the
/// subscription's P-256 secret key.
pub fn decrypt(ua: &UaKeys, ua_secret: &[u8; 32], body: &[u8]) -> Result<Vec<u8>, PushError> {
    const HEADER: usize = 16 + 4 + 1;
    if body.len() < HEADER + 65 + 16 || body[20] != 65 {
        return Err(PushError::Crypto);
    }
    let salt = &body[..16];
    let as_public = &body[HEADER..HEADER + 65];
    let ciphertext = &body[HEADER + 65..];
    let secret = p256::SecretKey::from_slice(ua_secret).map_err(|_| PushError::Crypto)?;
    let sender = p256::PublicKey::from_sec1_bytes(as_public).map_err(|_| PushError::Crypto)?;
    let shared =
        p256::elliptic_curve::ecdh::diffie_hellman(secret.to_nonzero_scalar(), sender.as_affine());
    let (cipher, nonce) = content_cipher(ua, shared.raw_secret_bytes(), as_public, salt)?;
    let mut record = cipher.decrypt((&nonce).into(), ciphertext).map_err(|_| PushError::Crypto)?;
    // Padding is zeros after the delimiter; the last record's delimiter is 2 (RFC 8188 §2).
    while record.last() == Some(&0) {
        record.pop();
    }
    if record.pop() != Some(2) {
        return Err(PushError::Crypto);
    }
    Ok(record)
}

/// The relay's VAPID key (RFC 8292).
pub struct Vapid {
    key: p256::ecdsa::SigningKey,
    public: Vec<u8>,
    subject: String,
}

impl Vapid {
    pub fn new(secret: &[u8; 32], subject: String) -> Result<Self, PushError> {
        let key = p256::ecdsa::SigningKey::from_slice(secret).map_err(|_| PushError::Crypto)?;
        let public = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        Ok(Self { key, public, subject })
    }

    /// The uncompressed public key, base64url: the browser's `applicationServerKey` and the
    /// `k` parameter of the `Authorization` header.
    pub fn public_key(&self) -> String {
        b64_encode(&self.public)
    }

    /// An ES256 JWT for the push service at `audience` (its origin: scheme, host, port).
    pub fn token(&self, audience: &str, now_s: u64) -> String {
        let header = b64_encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": audience,
            "exp": now_s + VAPID_LIFETIME_S,
            "sub": self.subject,
        });
        let claims = b64_encode(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{claims}");
        let signature: p256::ecdsa::Signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64_encode(&signature.to_bytes()))
    }

    /// The `Authorization` header value (RFC 8292 §3).
    pub fn authorization(&self, audience: &str, now_s: u64) -> String {
        format!("vapid t={},k={}", self.token(audience, now_s), self.public_key())
    }
}

/// Whether an address is one a relay must not push to by default: loopback, private,
/// link-local, CGNAT, unspecified, multicast, broadcast, documentation or unique-local.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// Push endpoint policy from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct EndpointPolicy {
    pub allow_private: bool,
    pub allow_http: bool,
    pub max_len: usize,
}

impl EndpointPolicy {
    /// Checks a subscription when it is registered: a parseable `https` URL (or `http` if
    /// allowed) of bounded length whose literal IP, if any, is public (or private is allowed),
    /// and well-formed keys. Host names are checked again on every delivery, after resolution.
    pub fn check(&self, sub: &PushSubscription) -> Result<url::Url, PushError> {
        if sub.endpoint.len() > self.max_len {
            return Err(PushError::Endpoint(format!(
                "endpoint is {} bytes; the limit is {}",
                sub.endpoint.len(),
                self.max_len
            )));
        }
        let url = url::Url::parse(&sub.endpoint)
            .map_err(|e| PushError::Endpoint(format!("not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => {
                return Err(PushError::Endpoint(format!(
                    "scheme {other} is not allowed (https only)"
                )))
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(PushError::Endpoint("credentials in the URL".into()));
        }
        match url.host() {
            None => return Err(PushError::Endpoint("no host".into())),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.');
                if !self.allow_private
                    && (name.eq_ignore_ascii_case("localhost")
                        || name.to_ascii_lowercase().ends_with(".localhost"))
                {
                    return Err(PushError::Endpoint(
                        "push endpoints on loopback addresses are refused".into(),
                    ));
                }
            }
        }
        UaKeys::from_subscription(sub)?;
        Ok(url)
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), PushError> {
        if !self.allow_private && is_private(ip) {
            return Err(PushError::Endpoint(format!(
                "push endpoints on private or loopback addresses are refused ({ip})"
            )));
        }
        Ok(())
    }
}

type Connector = hyper_rustls::HttpsConnector<
    hyper_util::client::legacy::connect::HttpConnector<PublicOnlyResolver>,
>;
type PushClient = hyper_util::client::legacy::Client<Connector, http_body_util::Full<bytes::Bytes>>;
type ResolveFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<std::vec::IntoIter<SocketAddr>, std::io::Error>>
            + Send,
    >,
>;

/// A resolver for the push client that refuses names resolving to private addresses (checked
/// at connection time, so a name cannot be re-pointed at a private address after registration).
#[derive(Clone, Copy)]
struct PublicOnlyResolver {
    allow_private: bool,
}

impl tower::Service<hyper_util::client::legacy::connect::dns::Name> for PublicOnlyResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = ResolveFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.take(16).collect();
            if !allow_private && addrs.iter().any(|a| is_private(a.ip())) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{host} resolves to a private address"),
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// One wake-up to deliver.
#[derive(Clone, Debug)]
pub struct PushJob {
    pub queue: QueueId,
    pub urgency: Urgency,
    pub ttl_s: u32,
    pub topic: Option<Topic>,
}

/// What a delivery attempt ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    Sent(u16),
    /// 404/410: the subscription is gone and was deleted.
    Gone(u16),
    Failed(String),
    /// The queue has no subscription (nothing to do).
    NoSubscription,
}

/// Delivers wake-ups.
pub struct Pusher {
    client: PushClient,
    timeout: Duration,
    vapid: Vapid,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    policy: EndpointPolicy,
}

impl Pusher {
    pub fn new(
        vapid: Vapid,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        policy: EndpointPolicy,
        timeout: Duration,
    ) -> Result<Self, RelayError> {
        // rustls with the ring provider and the webpki roots; plain http only if configured.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(
            PublicOnlyResolver { allow_private: policy.allow_private },
        );
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| RelayError::PushClient(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(4)
                .build(connector);
        Ok(Self { client, timeout, vapid, store, metrics, policy })
    }

    pub fn vapid(&self) -> &Vapid {
        &self.vapid
    }

    /// Sends one wake-up for `job.queue` now and handles the answer.
    pub async fn deliver(&self, job: &PushJob) -> PushOutcome {
        let record = match self.store.queue(&job.queue) {
            Ok(Some(record)) => record,
            Ok(None) => return PushOutcome::NoSubscription,
            Err(e) => return self.failed(format!("store: {e}")),
        };
        let Some(sub) = record.push else {
            return PushOutcome::NoSubscription;
        };
        let url = match self.policy.check(&sub) {
            Ok(url) => url,
            Err(e) => return self.failed(e.to_string()),
        };
        let ua = match UaKeys::from_subscription(&sub) {
            Ok(ua) => ua,
            Err(e) => return self.failed(e.to_string()),
        };
        let depth = self.store.depth(&job.queue).await;
        let payload = serde_json::json!({ "v": 1, "pending": depth }).to_string();
        let mut as_secret = [0u8; 32];
        let mut salt = [0u8; 16];
        let mut attempts = 0;
        let body = loop {
            attempts += 1;
            if getrandom::fill(&mut as_secret).is_err() || getrandom::fill(&mut salt).is_err() {
                return self.failed("no randomness".into());
            }
            match encrypt(&ua, payload.as_bytes(), &as_secret, &salt) {
                Ok(body) => break body,
                // A scalar out of range (probability ~2^-32): draw again, a few times at most.
                Err(PushError::Crypto) if attempts < 4 => continue,
                Err(e) => return self.failed(e.to_string()),
            }
        };
        let audience = url.origin().ascii_serialization();
        let now_s = now_ms() / 1000;
        let mut request = axum::http::Request::post(url.as_str())
            .header("TTL", job.ttl_s.to_string())
            .header("Urgency", job.urgency.header_value())
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("Authorization", self.vapid.authorization(&audience, now_s));
        if let Some(topic) = &job.topic {
            request = request.header("Topic", topic.as_str());
        }
        let request = match request.body(http_body_util::Full::new(bytes::Bytes::from(body))) {
            Ok(request) => request,
            Err(e) => return self.failed(format!("building the request: {e}")),
        };
        let sent = tokio::time::timeout(self.timeout, self.client.request(request)).await;
        let sent = match sent {
            Ok(result) => result.map_err(|e| format!("push delivery: {e}")),
            Err(_) => Err("push delivery timed out".to_owned()),
        };
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                match status {
                    200..=299 => {
                        Metrics::inc(&self.metrics.push_sent, 1);
                        tracing::debug!(queue = %job.queue, status, "push sent");
                        PushOutcome::Sent(status)
                    }
                    404 | 410 => {
                        Metrics::inc(&self.metrics.push_failed, 1);
                        match self.store.delete_push_if(&job.queue, &sub.endpoint).await {
                            Ok(true) => {
                                Metrics::inc(&self.metrics.push_subscriptions_deleted, 1);
                                if let Err(e) = self.store.flush().await {
                                    tracing::warn!(error = %e, "flush after deleting subscription");
                                }
                                tracing::info!(queue = %job.queue, status, "push subscription gone; deleted");
                            }
                            Ok(false) => {}
                            Err(e) => tracing::warn!(error = %e, "deleting push subscription"),
                        }
                        PushOutcome::Gone(status)
                    }
                    _ => self.failed(format!("push service answered {status}")),
                }
            }
            Err(e) => self.failed(e),
        }
    }

    fn failed(&self, why: String) -> PushOutcome {
        Metrics::inc(&self.metrics.push_failed, 1);
        tracing::warn!(reason = %why, "push failed");
        PushOutcome::Failed(why)
    }

    /// Runs until the channel closes, delivering with at most `concurrency` in flight.
    pub async fn run(
        self: Arc<Self>,
        mut jobs: tokio::sync::mpsc::Receiver<PushJob>,
        concurrency: usize,
    ) {
        let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        while let Some(job) = jobs.recv().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let pusher = self.clone();
            tokio::spawn(async move {
                pusher.deliver(&job).await;
                drop(permit);
            });
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PushKeys;

    fn b64(text: &str) -> Vec<u8> {
        b64_decode(text).expect("base64url")
    }

    /// RFC 8291 §5: the worked example, byte for byte.
    #[test]
    fn rfc8291_section5_test_vector() {
        let plaintext = b"When I grow up, I want to be a watermelon";
        let as_secret: [u8; 32] =
            b64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw").try_into().expect("32");
        let salt: [u8; 16] = b64("DGv6ra1nlYgDCS1FRnbzlw").try_into().expect("16");
        let sub = PushSubscription {
            endpoint: "https://push.example.net/push/JzLQ3raZJfFBR0aqvOMsLrt54w4rJUsV".into(),
            keys: PushKeys {
                p256dh: "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4".into(),
                auth: "BTBZMqHH6r4Tts7J_aSIgg".into(),
            },
        };
        let ua = UaKeys::from_subscription(&sub).expect("keys");
        let body = encrypt(&ua, plaintext, &as_secret, &salt).expect("encrypt");
        assert_eq!(
            b64_encode(&body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
        // The user agent's side: the RFC's receiver key opens it again.
        let ua_secret: [u8; 32] =
            b64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94").try_into().expect("32");
        assert_eq!(decrypt(&ua, &ua_secret, &body).expect("decrypt"), plaintext.to_vec());
        let mut tampered = body.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(decrypt(&ua, &ua_secret, &tampered), Err(PushError::Crypto));
    }

    #[test]
    fn private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
    }

    /// Names are checked again when a push is delivered, after resolution, so a name that
    /// passed registration cannot be pointed at a private address later.
    #[tokio::test]
    async fn delivery_resolver_refuses_private_addresses() {
        use std::str::FromStr;
        use tower::Service;
        let name =
            hyper_util::client::legacy::connect::dns::Name::from_str("localhost").expect("name");
        let mut strict = PublicOnlyResolver { allow_private: false };
        let error = strict.call(name.clone()).await.expect_err("refused");
        assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
        let mut lax = PublicOnlyResolver { allow_private: true };
        let addrs: Vec<_> = lax.call(name).await.expect("resolves").collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn vapid_audience_keeps_the_port() {
        let url = url::Url::parse("https://push.example:8443/p/1").expect("url");
        assert_eq!(url.origin().ascii_serialization(), "https://push.example:8443");
        let url = url::Url::parse("https://push.example:443/p/1").expect("url");
        assert_eq!(url.origin().ascii_serialization(), "https://push.example");
    }
}
