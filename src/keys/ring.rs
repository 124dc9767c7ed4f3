use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use super::{KeyError, KeyStore, PublicJwk, SigningAlgorithm, SigningKey, StoreError, StoredKey};
use crate::clock::UnixTime;

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("no signing key is stored")]
    NoKey,
}

/// The published key set (RFC 7517 §5).
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JwkSet {
    pub keys: Vec<PublicJwk>,
}

/// When keys start signing and when they leave the JWKS.
#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    /// A new key is published this long before it signs, so every replica and every verifier
    /// that caches our JWKS knows it before the first token it signs arrives (OIDC Core 10.1.1).
    pub publish_ahead: Duration,
    /// A replaced key stays published this long after its successor starts signing: the
    /// longest token lifetime plus the time verifiers may cache the JWKS.
    pub retire_after: Duration,
    /// Rotate automatically this long after the current key started signing.
    pub rotate_every: Option<Duration>,
    /// The longest lifetime of a minted token.
    pub token_ttl: Duration,
}

struct RingKey {
    key: Arc<SigningKey>,
    activates_at: UnixTime,
    retires_at: Option<UnixTime>,
}

/// The keys we sign with and publish, reloaded from storage so every replica converges on
/// the same set. Which key signs is decided per call from `now`: the newest key of the
/// configured algorithm that has been published long enough.
pub struct KeyRing {
    store: Arc<dyn KeyStore>,
    algorithm: SigningAlgorithm,
    policy: RotationPolicy,
    keys: RwLock<Arc<Vec<RingKey>>>,
}

impl KeyRing {
    /// Loads the stored keys, creating a key of `algorithm` when there is none: active at
    /// once on an empty store, published ahead of use when it replaces keys of another algorithm.
    pub async fn open(
        store: Arc<dyn KeyStore>,
        algorithm: SigningAlgorithm,
        policy: RotationPolicy,
        now: UnixTime,
    ) -> Result<Self, KeyRingError> {
        let stored = store.load_all().await?;
        // A key already scheduled to retire does not count: it must not start signing again.
        if !stored.iter().any(|k| k.algorithm == algorithm.as_str() && k.retires_at.is_none()) {
            let slot = format!("initial-{}", algorithm.as_str());
            Self::add_key(&*store, algorithm, policy, now, stored.is_empty(), Some(&slot)).await?;
        }
        let ring = Self { store, algorithm, policy, keys: RwLock::new(Arc::new(Vec::new())) };
        ring.reload().await?;
        Ok(ring)
    }

    /// Stores a new key that signs after `publish_ahead` (or at once) and schedules the
    /// retirement of every other key. Returns the key, or `None` when another replica filled
    /// the same `slot` first.
    pub async fn add_key(
        store: &dyn KeyStore,
        algorithm: SigningAlgorithm,
        policy: RotationPolicy,
        now: UnixTime,
        immediately: bool,
        slot: Option<&str>,
    ) -> Result<Option<StoredKey>, KeyRingError> {
        let pkcs8 = SigningKey::generate_pkcs8(algorithm)?;
        let kid = SigningKey::from_pkcs8(algorithm, &pkcs8)?.kid().to_owned();
        let activates_at = if immediately { now } else { now + policy.publish_ahead };
        let record = StoredKey {
            kid,
            algorithm: algorithm.as_str().to_owned(),
            private_key_pkcs8: pkcs8,
            created_at: now,
            activates_at,
            retires_at: None,
        };
        if !store.insert(&record, slot).await? {
            return Ok(None);
        }
        store.retire_all_but(&record.kid, activates_at + policy.retire_after).await?;
        tracing::info!(kid = %record.kid, alg = algorithm.as_str(), %activates_at, "added a signing key");
        Ok(Some(record))
    }

    /// Re-reads storage; keys already parsed are reused.
    pub async fn reload(&self) -> Result<(), KeyRingError> {
        let stored = self.store.load_all().await?;
        let known: HashMap<String, Arc<SigningKey>> =
            self.snapshot().iter().map(|k| (k.key.kid().to_owned(), k.key.clone())).collect();
        let mut keys = Vec::with_capacity(stored.len());
        for record in stored {
            let Some(algorithm) = SigningAlgorithm::parse(&record.algorithm) else { continue };
            let key = match known.get(&record.kid) {
                Some(key) => key.clone(),
                None => Arc::new(SigningKey::from_pkcs8(algorithm, &record.private_key_pkcs8)?),
            };
            keys.push(RingKey { key, activates_at: record.activates_at, retires_at: record.retires_at });
        }
        if keys.is_empty() {
            return Err(KeyRingError::NoKey);
        }
        if let Ok(mut guard) = self.keys.write() {
            *guard = Arc::new(keys);
        }
        Ok(())
    }

    /// The periodic duty of every replica: rotate when due (one replica wins the slot),
    /// forget keys past retirement, pick up what other replicas stored.
    pub async fn maintain(&self, now: UnixTime) -> Result<(), KeyRingError> {
        if let Some(current) = self.due_for_rotation(now) {
            let slot = format!("rotation-after-{current}");
            Self::add_key(&*self.store, self.algorithm, self.policy, now, false, Some(&slot)).await?;
        }
        self.store.delete_retired(now).await?;
        self.reload().await
    }

    fn due_for_rotation(&self, now: UnixTime) -> Option<String> {
        let every = self.policy.rotate_every?;
        let keys = self.snapshot();
        let newest = keys.iter().find(|k| k.key.algorithm() == self.algorithm)?;
        (now >= newest.activates_at + every - self.policy.publish_ahead).then(|| newest.key.kid().to_owned())
    }

    fn snapshot(&self) -> Arc<Vec<RingKey>> {
        self.keys.read().map(|guard| guard.clone()).unwrap_or_default()
    }

    /// The key to sign with at `now`, and since when: the newest active key of the configured
    /// algorithm, or while none is active yet (an algorithm change in progress), the newest
    /// active key.
    fn signing(&self, now: UnixTime) -> Option<(Arc<SigningKey>, UnixTime)> {
        let keys = self.snapshot();
        // A key signs only while every token it signs now will expire before it retires.
        let last_safe_signing = now + self.policy.token_ttl;
        let active = |k: &&RingKey| k.activates_at <= now && k.retires_at.is_none_or(|r| r > last_safe_signing);
        let key = keys
            .iter()
            .filter(active)
            .find(|k| k.key.algorithm() == self.algorithm)
            .or_else(|| keys.iter().find(active));
        key.map(|k| (k.key.clone(), k.activates_at))
    }

    /// Every key not yet retired at `now`, including keys published ahead of use.
    pub fn jwks(&self, now: UnixTime) -> JwkSet {
        let keys = self.snapshot();
        let published = keys.iter().filter(|k| k.retires_at.is_none_or(|r| r > now));
        JwkSet { keys: published.map(|k| k.key.public_jwk().clone()).collect() }
    }
}

impl super::KeySource for KeyRing {
    fn active(&self, now: UnixTime) -> Option<super::ActiveSigner> {
        self.signing(now).map(|(key, since)| super::ActiveSigner { signer: key, since })
    }

    fn published(&self, now: UnixTime) -> JwkSet {
        self.jwks(now)
    }
}
