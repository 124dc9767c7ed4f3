use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StorageError;

pub async fn open(url: &str, max_connections: u32) -> Result<PgPool, StorageError> {
    let options = PgConnectOptions::from_str(url).map_err(StorageError::Connect)?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(StorageError::Connect)
}
