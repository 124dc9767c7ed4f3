//! Relational storage: one pool per process, SQLite by default and PostgreSQL in production.
//! Each store trait has one implementation per database, chosen here once.

mod key_store;
mod postgres;
mod sqlite;

use std::sync::Arc;

use crate::keys::KeyStore;

// The statements are the same in both dialects: `$n` placeholders are understood by
// PostgreSQL and SQLite alike (SQLite numbers them in order of appearance).
const LOAD_ALL_KEYS: &str = "SELECT kid, algorithm, private_key_pkcs8, created_at, activates_at, retires_at \
     FROM signing_keys ORDER BY activates_at DESC, created_at DESC, kid";
const INSERT_KEY: &str = "INSERT INTO signing_keys (kid, algorithm, private_key_pkcs8, slot, created_at, activates_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
const RETIRE_ALL_BUT: &str = "UPDATE signing_keys SET retires_at = $1 WHERE kid <> $2 AND retires_at IS NULL";
const REPLACE_PRIVATE_KEY: &str =
    "UPDATE signing_keys SET private_key_pkcs8 = $1 WHERE kid = $2 AND private_key_pkcs8 = $3";
const DELETE_RETIRED: &str = "DELETE FROM signing_keys WHERE retires_at IS NOT NULL AND retires_at < $1";

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// `sqlite://path/to/file.db` (the default) or `postgres://...`.
    pub database_url: String,
    pub max_connections: u32,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self { database_url: "sqlite://data/token-exchange.db".into(), max_connections: 5 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot prepare {path} for the database: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// An open database of either kind.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Database {
    /// Opens the database, creating a SQLite file (and its folder) when missing, and applies
    /// the migrations of its dialect.
    pub async fn open(settings: &StorageSettings) -> Result<Self, StorageError> {
        let database = if settings.database_url.starts_with("sqlite:") {
            Self::Sqlite(sqlite::open(&settings.database_url, settings.max_connections).await?)
        } else {
            Self::Postgres(postgres::open(&settings.database_url, settings.max_connections).await?)
        };
        database.migrate().await?;
        Ok(database)
    }

    async fn migrate(&self) -> Result<(), StorageError> {
        match self {
            Self::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Self::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// True when the database answers a trivial query.
    pub async fn is_reachable(&self) -> bool {
        let result = match self {
            Self::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
        };
        result.is_ok()
    }

    pub fn key_store(&self) -> Arc<dyn KeyStore> {
        match self {
            Self::Sqlite(pool) => Arc::new(key_store::SqliteKeyStore::new(pool.clone())),
            Self::Postgres(pool) => Arc::new(key_store::PgKeyStore::new(pool.clone())),
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}
