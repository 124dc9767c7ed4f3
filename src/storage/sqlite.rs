use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::StorageError;
use crate::clock::UnixTime;
use crate::keys::{KeyStore, StoreError, StoredKey};

pub async fn open(url: &str, max_connections: u32) -> Result<SqlitePool, StorageError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(StorageError::Connect)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if !in_memory {
        create_parent_folder(options.get_filename())?;
    }
    // An in-memory database lives as long as its one connection: keep exactly one, forever.
    let pool = if in_memory {
        SqlitePoolOptions::new().max_connections(1).idle_timeout(None).max_lifetime(None)
    } else {
        SqlitePoolOptions::new().max_connections(max_connections)
    };
    pool.connect_with(options).await.map_err(StorageError::Connect)
}

fn create_parent_folder(file: &Path) -> Result<(), StorageError> {
    match file.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => std::fs::create_dir_all(folder)
            .map_err(|source| StorageError::Folder { path: folder.display().to_string(), source }),
        _ => Ok(()),
    }
}

pub struct SqliteKeyStore {
    pool: SqlitePool,
}

impl SqliteKeyStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl KeyStore for SqliteKeyStore {
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
