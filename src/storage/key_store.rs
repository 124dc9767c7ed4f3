//! The key store, once per database. The statements are shared (see `storage/mod.rs`); only
//! the pool type differs, which sqlx's generic bounds make costlier to abstract than to stamp.

use async_trait::async_trait;

use super::{DELETE_RETIRED, INSERT_KEY, LOAD_ALL_KEYS, REPLACE_PRIVATE_KEY, RETIRE_ALL_BUT};
use crate::clock::UnixTime;
use crate::keys::{KeyStore, StoreError, StoredKey};

/// A `signing_keys` row as the database returns it.
#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    algorithm: String,
    private_key_pkcs8: Vec<u8>,
    created_at: i64,
    activates_at: i64,
    retires_at: Option<i64>,
}

impl From<KeyRow> for StoredKey {
    fn from(row: KeyRow) -> Self {
        Self {
            kid: row.kid,
            algorithm: row.algorithm,
            private_key_pkcs8: row.private_key_pkcs8,
            created_at: UnixTime::from_secs(row.created_at),
            activates_at: UnixTime::from_secs(row.activates_at),
            retires_at: row.retires_at.map(UnixTime::from_secs),
        }
    }
}

macro_rules! key_store {
    ($name:ident, $pool:ty) => {
        pub struct $name {
            pool: $pool,
        }

        impl $name {
            pub fn new(pool: $pool) -> Self {
                Self { pool }
            }
        }

        #[async_trait]
        impl KeyStore for $name {
            async fn load_all(&self) -> Result<Vec<StoredKey>, StoreError> {
                let rows: Vec<KeyRow> = sqlx::query_as(LOAD_ALL_KEYS).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(StoredKey::from).collect())
            }

            async fn insert(&self, key: &StoredKey, slot: Option<&str>) -> Result<bool, StoreError> {
                let result = sqlx::query(INSERT_KEY)
                    .bind(&key.kid)
                    .bind(&key.algorithm)
                    .bind(&key.private_key_pkcs8)
                    .bind(slot)
                    .bind(key.created_at.as_secs())
                    .bind(key.activates_at.as_secs())
                    .execute(&self.pool)
                    .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn retire_all_but(&self, kid: &str, retires_at: UnixTime) -> Result<(), StoreError> {
                sqlx::query(RETIRE_ALL_BUT).bind(retires_at.as_secs()).bind(kid).execute(&self.pool).await?;
                Ok(())
            }

            async fn replace_private_key(
                &self,
                kid: &str,
                expected: &[u8],
                replacement: &[u8],
            ) -> Result<bool, StoreError> {
                let replaced = sqlx::query(REPLACE_PRIVATE_KEY)
                    .bind(replacement)
                    .bind(kid)
                    .bind(expected)
                    .execute(&self.pool)
                    .await?;
                Ok(replaced.rows_affected() == 1)
            }

            async fn delete_retired(&self, now: UnixTime) -> Result<u64, StoreError> {
                Ok(sqlx::query(DELETE_RETIRED).bind(now.as_secs()).execute(&self.pool).await?.rows_affected())
            }
        }
    };
}

key_store!(SqliteKeyStore, sqlx::SqlitePool);
key_store!(PgKeyStore, sqlx::PgPool);
