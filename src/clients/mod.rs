//! Registered clients and their authentication: argon2id hashes checked once per process and
//! presented secret, remembered under a keyed digest, bounded in concurrency, with a lockout
//! after repeated failures (RFC 6749 §2.3.1 asks for brute-force protection); or a signed JWT
//! (`private_key_jwt`, RFC 7523 §2.2), checked in `assertion.rs`.

mod assertion;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use aws_lc_rs::{hmac, rand};
use serde::Deserialize;

use url::Url;

use crate::oauth::{AuthMethod, ClientCredentials, OAuthError, Presented};
use crate::upstream::UpstreamHttp;
use crate::vocabulary::{Audience, ClientSecret, ScopeSet};
use assertion::ClientKeys;
pub use assertion::{ASSERTION_LEEWAY, AuthContext, DEFAULT_ASSERTION_LIFETIME, MAX_ASSERTION_LIFETIME};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub client_id: String,
    /// argon2id PHC string, as printed by `token-exchange hash-secret`. A client has exactly
    /// one of `secret_hash`, `jwks` and `jwks_uri`.
    #[serde(default)]
    pub secret_hash: Option<String>,
    /// `private_key_jwt`: the client's public keys, a JWK Set (`{"keys": [...]}`).
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// `private_key_jwt`: where the client publishes its JWK Set; fetched and cached like an
    /// upstream's JWKS.
    #[serde(default)]
    pub jwks_uri: Option<Url>,
    /// `private_key_jwt`: the longest life an assertion may claim (`exp` after `iat`, or after
    /// now without `iat`). 5 minutes unless set; at most 1 hour.
    #[serde(default, with = "crate::clock::written::optional")]
    pub assertion_max_lifetime: Option<Duration>,
    /// Audiences and resource URIs this client may request tokens for.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Scopes this client may obtain (never more than the subject token holds).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// May call the admin endpoints (`POST /admin/purge`).
    #[serde(default)]
    pub admin: bool,
    /// The upstream this client is bound to: it validates the client's opaque subject tokens,
    /// and subject tokens from any other upstream are refused with `unauthorized_client`.
    #[serde(default)]
    pub upstream: Option<String>,
}

/// A client allowed to call us, and what it may ask for.
pub struct RegisteredClient {
    pub client_id: String,
    credential: Credential,
    pub audiences: HashSet<String>,
    pub scopes: ScopeSet,
    pub upstream: Option<String>,
    pub admin: bool,
}

/// How a client proves who it is: exactly one method per client.
enum Credential {
    SecretHash(String),
    Keys(Box<ClientKeys>),
}

impl std::fmt::Debug for RegisteredClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredClient")
            .field("client_id", &self.client_id)
            .field("audiences", &self.audiences)
            .field("scopes", &self.scopes)
            .field("upstream", &self.upstream)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl RegisteredClient {
    fn from_settings(settings: &ClientSettings) -> Self {
        let credential = match (&settings.secret_hash, &settings.jwks, &settings.jwks_uri) {
            (Some(hash), _, _) => Credential::SecretHash(hash.clone()),
            (None, Some(jwks), _) => {
                Credential::Keys(Box::new(ClientKeys::inline(jwks, settings.assertion_max_lifetime)))
            }
            (None, None, Some(uri)) => {
                Credential::Keys(Box::new(ClientKeys::remote(uri.clone(), settings.assertion_max_lifetime)))
            }
            // Refused by configuration validation; such a client never authenticates.
            (None, None, None) => Credential::SecretHash(String::new()),
        };
        Self {
            client_id: settings.client_id.clone(),
            credential,
            audiences: settings.audiences.iter().cloned().collect(),
            scopes: ScopeSet::from_values(settings.scopes.iter().map(String::as_str)),
            upstream: settings.upstream.clone(),
            admin: settings.admin,
        }
    }

    pub fn may_address(&self, audience: &Audience) -> bool {
        self.audiences.contains(audience.as_str())
    }
}

const LOCKOUT_WINDOW: Duration = Duration::from_secs(60);
/// Longer ids are refused before any lookup.
const MAX_CLIENT_ID_BYTES: usize = 256;
/// How long a request waits for an argon2 slot before it is told to come back.
const VERIFY_QUEUE_WAIT: Duration = Duration::from_secs(2);

pub struct ClientRegistry {
    clients: HashMap<String, Arc<RegisteredClient>>,
    /// Verified against when the client id is unknown, so unknown and known ids cost the same.
    decoy_hash: String,
    /// Per-process key for remembering verdicts on secrets without keeping the secrets.
    memo_key: hmac::Key,
    /// Secrets that verified: kept until evicted by other verified secrets, never by time or by
    /// anyone's failures, so the real client is never locked out once it has authenticated.
    verified: moka::future::Cache<MemoKey, ()>,
    /// Every verdict, shared by concurrent verifications of one secret; wrong ones are
    /// remembered for an hour so a repeated wrong secret costs nothing and counts once.
    verdicts: moka::future::Cache<MemoKey, bool>,
    /// New wrong secrets per client id and peer address in the current window.
    failures: moka::future::Cache<(String, Option<IpAddr>), Arc<AtomicU32>>,
    max_failures: u32,
    /// argon2 verifications running at once, process-wide.
    verifications: tokio::sync::Semaphore,
    /// The HTTP client that fetches clients' `jwks_uri`, built on first use.
    /// Fetches clients' `jwks_uri` (the application's one upstream HTTP client).
    http: Arc<UpstreamHttp>,
}

/// (client id, keyed digest of the presented secret).
type MemoKey = (String, Vec<u8>);

impl ClientRegistry {
    pub fn new(
        clients: &[ClientSettings],
        max_failures_per_minute: u32,
        http: Arc<UpstreamHttp>,
    ) -> Result<Self, aws_lc_rs::error::Unspecified> {
        let random = rand::SystemRandom::new();
        let memo_key = hmac::Key::generate(hmac::HMAC_SHA256, &random)?;
        let mut decoy = [0u8; 32];
        rand::SecureRandom::fill(&random, &mut decoy)?;
        Ok(Self {
            clients: clients
                .iter()
                .map(|c| (c.client_id.clone(), Arc::new(RegisteredClient::from_settings(c))))
                .collect(),
            decoy_hash: hash_secret(&crate::vocabulary::hex(&decoy)).map_err(|_| aws_lc_rs::error::Unspecified)?,
            memo_key,
            verified: moka::future::Cache::builder().max_capacity(10_000).build(),
            verdicts: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            failures: moka::future::Cache::builder().max_capacity(100_000).time_to_live(LOCKOUT_WINDOW).build(),
            max_failures: max_failures_per_minute,
            verifications: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from)),
            http,
        })
    }

    /// Whether some client authenticates with `private_key_jwt` (the metadata says so then).
    pub fn uses_private_key_jwt(&self) -> bool {
        self.clients.values().any(|client| matches!(client.credential, Credential::Keys(_)))
    }

    /// A registered client by id, without authentication: for routes that name their client.
    pub fn registered(&self, client_id: &str) -> Option<Arc<RegisteredClient>> {
        self.clients.get(client_id).cloned()
    }

    /// Checks the presented secret of a request from `peer`. Unknown client ids go through the
    /// same verification (against a decoy hash) and the same failure count as wrong secrets, so
    /// the two look alike in status and timing.
    ///
    /// An assertion (`private_key_jwt`) is checked against the client's keys instead; a client
    /// registered for one method is refused when it presents the other.
    #[tracing::instrument(name = "client_authentication", skip_all, fields(method = credentials.method.as_str()))]
    pub async fn authenticate(
        &self,
        credentials: &ClientCredentials,
        context: &AuthContext<'_>,
    ) -> Result<Arc<RegisteredClient>, OAuthError> {
        let rejected = || OAuthError::invalid_client("client authentication failed", Some(credentials.method));
        if credentials.client_id.len() > MAX_CLIENT_ID_BYTES {
            return Err(rejected());
        }
        let client = self.clients.get(&credentials.client_id);
        let secret = match &credentials.presented {
            Presented::Secret(secret) => secret,
            Presented::Assertion(assertion) => {
                let Some(client) = client else { return Err(rejected()) };
                let Credential::Keys(keys) = &client.credential else {
                    return Err(OAuthError::invalid_client(
                        "the client is not registered for private_key_jwt",
                        Some(AuthMethod::PrivateKeyJwt),
                    ));
                };
                keys.verify(&client.client_id, assertion, context, &self.http).await?;
                return Ok(client.clone());
            }
        };
        let hash = match client.map(|c| &c.credential) {
            None => &self.decoy_hash,
            Some(Credential::SecretHash(hash)) => hash,
            Some(Credential::Keys(_)) => {
                return Err(OAuthError::invalid_client(
                    "the client is registered for private_key_jwt, not a secret",
                    Some(credentials.method),
                ));
            }
        };
        match self.secret_matches(&credentials.client_id, hash, secret, context.peer).await {
            Ok(true) => client.cloned().ok_or_else(rejected),
            Ok(false) => Err(rejected()),
            Err(VerifyError::LockedOut) => Err(OAuthError::TooManyAttempts { retry_after: LOCKOUT_WINDOW }),
            Err(VerifyError::Busy) => {
                Err(OAuthError::unavailable("too many client authentications at once", Some(Duration::from_secs(1))))
            }
        }
    }

    /// A remembered verdict answers at once. Otherwise argon2 runs once per client id and
    /// presented secret per process (concurrent requests with the same secret share the run),
    /// only while the (client id, peer) pair is under its failure limit, and only as many at a
    /// time as there are cores. The memo is keyed by an HMAC under a per-process random key, so
    /// neither the secret nor anything an attacker could test offline is kept.
    async fn secret_matches(
        &self,
        client_id: &str,
        hash: &str,
        secret: &ClientSecret,
        peer: Option<IpAddr>,
    ) -> Result<bool, VerifyError> {
        let presented = hmac::sign(&self.memo_key, secret.expose_secret().as_bytes());
        let key = (client_id.to_owned(), presented.as_ref().to_vec());
        if self.verified.contains_key(&key) {
            return Ok(true);
        }
        if let Some(verdict) = self.verdicts.get(&key).await {
            return Ok(verdict);
        }
        let attempts =
            self.failures.get_with((client_id.to_owned(), peer), async { Arc::new(AtomicU32::new(0)) }).await;
        let hash = hash.to_owned();
        let secret = secret.clone();
        let verification = async move {
            // The attempt is counted before it runs, so a burst cannot exceed the limit.
            if attempts.fetch_add(1, Ordering::SeqCst) >= self.max_failures {
                attempts.fetch_sub(1, Ordering::SeqCst);
                return Err(VerifyError::LockedOut);
            }
            let verdict = self.verify(hash, secret).await;
            if verdict != Ok(false) {
                attempts.fetch_sub(1, Ordering::SeqCst);
            }
            verdict
        };
        let verdict = self.verdicts.try_get_with(key.clone(), verification).await.map_err(|e| *e)?;
        if verdict {
            self.verified.insert(key, ()).await;
        }
        Ok(verdict)
    }

    async fn verify(&self, hash: String, secret: ClientSecret) -> Result<bool, VerifyError> {
        let permit = tokio::time::timeout(VERIFY_QUEUE_WAIT, self.verifications.acquire())
            .await
            .map_err(|_| VerifyError::Busy)?
            .map_err(|_| VerifyError::Busy)?;
        // argon2 takes milliseconds of CPU and ~19 MiB by design: keep it off the async workers.
        let verdict = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default().verify_password(secret.expose_secret().as_bytes(), &parsed).is_ok()
            })
        })
        .await
        .map_err(|_| VerifyError::Busy);
        drop(permit);
        verdict
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VerifyError {
    LockedOut,
    Busy,
}

/// An argon2id PHC string for `secret`, for the `hash-secret` command.
pub fn hash_secret(secret: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::PasswordHasher;
    Ok(Argon2::default().hash_password(secret.as_bytes())?.to_string())
}
