//! Registered clients and their authentication: argon2id hashes checked once per process,
//! remembered as a keyed digest, compared in constant time, with a lockout after repeated
//! failures (RFC 6749 §2.3.1 asks for brute-force protection).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use aws_lc_rs::{hmac, rand};

use crate::config::ClientSettings;
use crate::oauth::{ClientCredentials, OAuthError, ScopeSet};

/// A client allowed to call us, and what it may ask for.
#[derive(Debug)]
pub struct RegisteredClient {
    pub client_id: String,
    secret_hash: String,
    pub audiences: HashSet<String>,
    pub scopes: ScopeSet,
    pub upstream: Option<String>,
    pub admin: bool,
}

impl RegisteredClient {
    fn from_settings(settings: &ClientSettings) -> Self {
        Self {
            client_id: settings.client_id.clone(),
            secret_hash: settings.secret_hash.clone(),
            audiences: settings.audiences.iter().cloned().collect(),
            scopes: ScopeSet::from_values(settings.scopes.iter().map(String::as_str)),
            upstream: settings.upstream.clone(),
            admin: settings.admin,
        }
    }

    pub fn may_address(&self, audience: &str) -> bool {
        self.audiences.contains(audience)
    }
}

const LOCKOUT_WINDOW: Duration = Duration::from_secs(60);

pub struct ClientRegistry {
    clients: HashMap<String, Arc<RegisteredClient>>,
    /// Per-process key for remembering verdicts on secrets without keeping the secrets.
    memo_key: hmac::Key,
    /// (client, keyed digest of the presented secret) → argon2 verdict.
    verdicts: moka::future::Cache<(String, Vec<u8>), bool>,
    failures: moka::future::Cache<String, Arc<AtomicU32>>,
    max_failures: u32,
}

impl ClientRegistry {
    pub fn new(
        clients: &[ClientSettings],
        max_failures_per_minute: u32,
    ) -> Result<Self, aws_lc_rs::error::Unspecified> {
        let memo_key = hmac::Key::generate(hmac::HMAC_SHA256, &rand::SystemRandom::new())?;
        Ok(Self {
            clients: clients
                .iter()
                .map(|c| (c.client_id.clone(), Arc::new(RegisteredClient::from_settings(c))))
                .collect(),
            memo_key,
            verdicts: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            failures: moka::future::Cache::builder().max_capacity(100_000).time_to_live(LOCKOUT_WINDOW).build(),
            max_failures: max_failures_per_minute,
        })
    }

    pub fn clients(&self) -> impl Iterator<Item = &RegisteredClient> {
        self.clients.values().map(Arc::as_ref)
    }

    /// Checks the presented secret; unknown clients and wrong secrets look alike to the caller.
    pub async fn authenticate(&self, credentials: &ClientCredentials) -> Result<Arc<RegisteredClient>, OAuthError> {
        let rejected = || OAuthError::invalid_client("client authentication failed", Some(credentials.method));
        let failures = self.failures.get(&credentials.client_id).await;
        if failures.as_ref().is_some_and(|f| f.load(Ordering::Relaxed) >= self.max_failures) {
            return Err(OAuthError::TooManyAttempts { retry_after_secs: LOCKOUT_WINDOW.as_secs() });
        }
        let client = match self.clients.get(&credentials.client_id) {
            Some(client) if self.secret_matches(client, credentials).await => client.clone(),
            _ => {
                self.record_failure(&credentials.client_id).await;
                tracing::warn!(security_event = "client_auth_failed", client_id = %credentials.client_id, "client authentication failed");
                return Err(rejected());
            }
        };
        Ok(client)
    }

    /// argon2 runs once per client and presented secret per process; concurrent requests with
    /// the same secret share that one run. The memo is keyed by an HMAC under a per-process
    /// random key, so neither the secret nor anything an attacker could test offline is kept.
    async fn secret_matches(&self, client: &RegisteredClient, credentials: &ClientCredentials) -> bool {
        let presented = hmac::sign(&self.memo_key, credentials.secret.expose_secret().as_bytes());
        let key = (client.client_id.clone(), presented.as_ref().to_vec());
        let hash = client.secret_hash.clone();
        let secret = credentials.secret.clone();
        self.verdicts
            .try_get_with(key, async move {
                // argon2 takes milliseconds of CPU by design: keep it off the async workers.
                tokio::task::spawn_blocking(move || {
                    PasswordHash::new(&hash).is_ok_and(|parsed| {
                        Argon2::default().verify_password(secret.expose_secret().as_bytes(), &parsed).is_ok()
                    })
                })
                .await
            })
            .await
            // A verification that did not finish is no verdict: refuse now, remember nothing.
            .unwrap_or(false)
    }

    async fn record_failure(&self, client_id: &str) {
        let counter = self.failures.get_with(client_id.to_owned(), async { Arc::new(AtomicU32::new(0)) }).await;
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// An argon2id PHC string for `secret`, for the `hash-secret` command.
pub fn hash_secret(secret: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::PasswordHasher;
    Ok(Argon2::default().hash_password(secret.as_bytes())?.to_string())
}
