//! The key store every other part of the service uses: the database's store, with private keys
//! sealed on the way in and opened on the way out.

use std::sync::Arc;

use async_trait::async_trait;

use super::custody::{KeyCustody, is_plain};
use super::{KeyStore, StoreError, StoredKey};
use crate::clock::UnixTime;

/// Seals on insert, opens on load. A key still stored in plain text (written before keys were
/// sealed) is sealed in place the first time it is loaded.
pub struct SealedKeyStore {
    inner: Arc<dyn KeyStore>,
    custody: Arc<KeyCustody>,
}

impl SealedKeyStore {
    pub fn new(inner: Arc<dyn KeyStore>, custody: Arc<KeyCustody>) -> Self {
        Self { inner, custody }
    }

    /// Re-seals every key under the current KEK (`token-exchange rekey`); keys sealed under the
    /// previous KEK, or plain, are opened and sealed again. Returns how many were re-sealed.
    pub async fn reseal_all(&self) -> Result<usize, StoreError> {
        let mut resealed = 0;
        for stored in self.inner.load_all().await? {
            if self.custody.is_current(&stored.kid, &stored.private_key_pkcs8) {
                continue;
            }
            let pkcs8 = self.open(&stored)?;
            let sealed = self.custody.seal(&stored.kid, &pkcs8)?;
            if self.inner.replace_private_key(&stored.kid, &stored.private_key_pkcs8, &sealed).await? {
                resealed += 1;
            }
        }
        Ok(resealed)
    }

    fn open(&self, stored: &StoredKey) -> Result<Vec<u8>, StoreError> {
        if is_plain(&stored.private_key_pkcs8) {
            return Ok(stored.private_key_pkcs8.clone());
        }
        Ok(self.custody.open(&stored.kid, &stored.private_key_pkcs8)?)
    }
}

#[async_trait]
impl KeyStore for SealedKeyStore {
    async fn load_all(&self) -> Result<Vec<StoredKey>, StoreError> {
        let mut keys = self.inner.load_all().await?;
        for key in &mut keys {
            let plain = is_plain(&key.private_key_pkcs8);
            let pkcs8 = self.open(key)?;
            if plain {
                let sealed = self.custody.seal(&key.kid, &pkcs8)?;
                self.inner.replace_private_key(&key.kid, &key.private_key_pkcs8, &sealed).await?;
                tracing::info!(kid = %key.kid, "sealed a signing key stored in plain text");
            }
            key.private_key_pkcs8 = pkcs8;
        }
        Ok(keys)
    }

    async fn insert(&self, key: &StoredKey, slot: Option<&str>) -> Result<bool, StoreError> {
        let sealed =
            StoredKey { private_key_pkcs8: self.custody.seal(&key.kid, &key.private_key_pkcs8)?, ..key.clone() };
        self.inner.insert(&sealed, slot).await
    }

    async fn retire_all_but(&self, kid: &str, retires_at: UnixTime) -> Result<(), StoreError> {
        self.inner.retire_all_but(kid, retires_at).await
    }

    async fn delete_retired(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.inner.delete_retired(now).await
    }

    async fn replace_private_key(&self, kid: &str, expected: &[u8], replacement: &[u8]) -> Result<bool, StoreError> {
        self.inner.replace_private_key(kid, expected, replacement).await
    }
}
