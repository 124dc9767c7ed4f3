use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StorageError;
use crate::keys::{KeyStore, StoreError, StoredKey};

pub async fn open(url: &str, max_connections: u32) -> Result<PgPool, StorageError> {
    let options = PgConnectOptions::from_str(url).map_err(StorageError::Connect)?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(StorageError::Connect)
}

pub struct PgKeyStore {
    pool: PgPool,
}

impl PgKeyStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl KeyStore for PgKeyStore {
    async fn load_all(&self) -> Result<Vec<StoredKey>, StoreError> {
        Ok(sqlx::query_as(super::LOAD_ALL_KEYS).fetch_all(&self.pool).await?)
    }

    async fn insert_initial(&self, key: &StoredKey, slot: &str) -> Result<(), StoreError> {
        sqlx::query(super::INSERT_INITIAL_KEY)
            .bind(&key.kid)
            .bind(&key.algorithm)
            .bind(&key.private_key_pkcs8)
            .bind(slot)
            .bind(key.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
