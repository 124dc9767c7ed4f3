use async_trait::async_trait;

use crate::clock::UnixTime;

/// A private key as kept at rest.
#[derive(Clone)]
pub struct StoredKey {
    pub kid: String,
    pub algorithm: String,
    pub private_key_pkcs8: Vec<u8>,
    pub created_at: UnixTime,
    /// From when the key signs; until then it is only published.
    pub activates_at: UnixTime,
    /// When the key leaves the published set; every token it signed has expired by then.
    pub retires_at: Option<UnixTime>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("activates_at", &self.activates_at)
            .field("retires_at", &self.retires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key storage failed")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Custody(#[from] super::CustodyError),
}

/// Where signing keys live; one implementation per database.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every stored key, the newest activation first.
    async fn load_all(&self) -> Result<Vec<StoredKey>, StoreError>;

    /// Stores a key. With a `slot`, only the first of several replicas inserting the same
    /// slot succeeds; returns whether this call stored the key.
    async fn insert(&self, key: &StoredKey, slot: Option<&str>) -> Result<bool, StoreError>;

    /// Schedules every other key without a retirement to retire at `retires_at`.
    async fn retire_all_but(&self, kid: &str, retires_at: UnixTime) -> Result<(), StoreError>;

    /// Deletes keys retired before `now`: no token they signed is still valid.
    async fn delete_retired(&self, now: UnixTime) -> Result<u64, StoreError>;

    /// Replaces the stored private key of `kid`, only while it still holds `expected`, so two
    /// replicas re-sealing at once cannot lose a write; returns whether this call replaced it.
    async fn replace_private_key(&self, kid: &str, expected: &[u8], replacement: &[u8]) -> Result<bool, StoreError>;
}
