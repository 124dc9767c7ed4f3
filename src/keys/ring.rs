use std::sync::Arc;

use serde::Serialize;

use super::{KeyError, KeyStore, PublicJwk, SigningAlgorithm, SigningKey, StoreError, StoredKey};
use crate::clock::UnixTime;

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("no {0:?} signing key could be stored or loaded")]
    NoActiveKey(SigningAlgorithm),
}

/// The published key set (RFC 7517 §5).
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JwkSet {
    pub keys: Vec<PublicJwk>,
}

/// The key we sign with and every key we publish.
#[derive(Debug, Clone)]
pub struct KeyRing {
    active: Arc<SigningKey>,
    published: Arc<JwkSet>,
}

impl KeyRing {
    /// Loads the stored keys, creating the first key of `algorithm` when there is none.
    pub async fn load_or_create(
        store: &dyn KeyStore,
        algorithm: SigningAlgorithm,
        now: UnixTime,
    ) -> Result<Self, KeyRingError> {
        let mut stored = store.load_all().await?;
        if !stored.iter().any(|k| k.algorithm == algorithm.as_str()) {
            let pkcs8 = SigningKey::generate_pkcs8(algorithm)?;
            let key = SigningKey::from_pkcs8(algorithm, &pkcs8)?;
            let record = StoredKey {
                kid: key.kid().to_owned(),
                algorithm: algorithm.as_str().to_owned(),
                private_key_pkcs8: pkcs8,
                created_at: now,
            };
            store.insert_initial(&record, &format!("initial-{}", algorithm.as_str())).await?;
            tracing::info!(kid = key.kid(), alg = algorithm.as_str(), "generated a new signing key");
            stored = store.load_all().await?;
        }
        Self::from_stored(&stored, algorithm)
    }

    fn from_stored(stored: &[StoredKey], algorithm: SigningAlgorithm) -> Result<Self, KeyRingError> {
        let keys = stored
            .iter()
            .filter_map(|record| SigningAlgorithm::parse(&record.algorithm).map(|alg| (alg, record)))
            .map(|(alg, record)| SigningKey::from_pkcs8(alg, &record.private_key_pkcs8))
            .collect::<Result<Vec<_>, _>>()?;
        let published = JwkSet { keys: keys.iter().map(|k| k.public_jwk().clone()).collect() };
        // `stored` is newest first, so the first key of the configured algorithm is the newest.
        let active =
            keys.into_iter().find(|k| k.algorithm() == algorithm).ok_or(KeyRingError::NoActiveKey(algorithm))?;
        Ok(Self { active: Arc::new(active), published: Arc::new(published) })
    }

    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.published
    }
}
