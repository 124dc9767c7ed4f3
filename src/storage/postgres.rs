use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StorageError;
use crate::clock::UnixTime;
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

    async fn insert(&self, key: &StoredKey, slot: Option<&str>) -> Result<bool, StoreError> {
        let result = sqlx::query(super::INSERT_KEY)
            .bind(&key.kid)
            .bind(&key.algorithm)
            .bind(&key.private_key_pkcs8)
            .bind(slot)
            .bind(key.created_at)
            .bind(key.activates_at)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn retire_all_but(&self, kid: &str, retires_at: UnixTime) -> Result<(), StoreError> {
        sqlx::query(super::RETIRE_ALL_BUT).bind(retires_at).bind(kid).execute(&self.pool).await?;
        Ok(())
    }

    async fn delete_retired(&self, now: UnixTime) -> Result<u64, StoreError> {
        Ok(sqlx::query(super::DELETE_RETIRED).bind(now).execute(&self.pool).await?.rows_affected())
    }
}
