use async_trait::async_trait;

use crate::clock::UnixTime;

/// A private key as kept at rest.
#[derive(Clone, sqlx::FromRow)]
pub struct StoredKey {
    pub kid: String,
    pub algorithm: String,
    pub private_key_pkcs8: Vec<u8>,
    pub created_at: UnixTime,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("key storage failed: {0}")]
pub struct StoreError(#[from] pub sqlx::Error);

/// Where signing keys live; one implementation per database.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every stored key, newest first.
    async fn load_all(&self) -> Result<Vec<StoredKey>, StoreError>;

    /// Stores the first key of an algorithm unless another replica stored one first; `slot`
    /// is unique, so concurrent first starts agree on one key.
    async fn insert_initial(&self, key: &StoredKey, slot: &str) -> Result<(), StoreError>;
}
