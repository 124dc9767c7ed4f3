use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::StorageError;

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
