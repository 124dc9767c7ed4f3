use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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
        keep_private(options.get_filename())?;
    }
    // An in-memory database lives as long as its one connection: keep exactly one, forever.
    let pool = if in_memory {
        SqlitePoolOptions::new().max_connections(1).idle_timeout(None).max_lifetime(None)
    } else {
        SqlitePoolOptions::new().max_connections(max_connections)
    };
    pool.connect_with(options).await.map_err(StorageError::Connect)
}

/// The folder we create for the database is ours alone (0700).
fn create_parent_folder(file: &Path) -> Result<(), StorageError> {
    match file.parent() {
        Some(folder) if !folder.as_os_str().is_empty() && !folder.exists() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(|source| StorageError::Folder { path: folder.display().to_string(), source }),
        _ => Ok(()),
    }
}

/// The database holds our private signing keys: the file and its journals are readable by
/// this user only (0600), also when an earlier version created them more open. SQLite gives
/// journals it creates the mode of the database file.
fn keep_private(file: &Path) -> Result<(), StorageError> {
    let private = |path: &Path| {
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    };
    let failed = |path: &Path, source| StorageError::Folder { path: path.display().to_string(), source };
    private(file).map_err(|source| failed(file, source))?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut journal = file.as_os_str().to_owned();
        journal.push(suffix);
        let journal = Path::new(&journal);
        if journal.exists() {
            std::fs::set_permissions(journal, std::fs::Permissions::from_mode(0o600))
                .map_err(|source| failed(journal, source))?;
        }
    }
    Ok(())
}
