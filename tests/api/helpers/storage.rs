//! What an app stores in, created for one test and gone after it: a SQLite file in a
//! temporary folder, or a PostgreSQL database dropped when the test ends; Redis under a key
//! prefix of the test's own.

use std::sync::Arc;

use sqlx::Connection as _;
use token_exchange::cache::{RedisSettings, RedisTopology};

/// `TEST_POSTGRES_URL`: a PostgreSQL server and a database to connect to while creating and
/// dropping the tests' databases (scripts/test sets it).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

/// `TEST_REDIS_URL`: the Redis server tests share, each under its own prefix.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A variable `scripts/test` sets for the services it starts.
pub fn required_env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests through scripts/test, which starts it"))
}

/// `TEST_REDIS_CLUSTER_URLS`: seed nodes of the three-primary Redis Cluster scripts/test starts.
pub fn redis_cluster_nodes() -> Vec<String> {
    required_env("TEST_REDIS_CLUSTER_URLS").split(',').map(str::to_owned).collect()
}

/// `TEST_REDIS_SENTINEL_URLS` and `TEST_REDIS_SENTINEL_MASTER`: the three sentinels
/// scripts/test starts and the name they watch a primary and its replica under.
pub fn redis_sentinels() -> (Vec<String>, String) {
    let sentinels = required_env("TEST_REDIS_SENTINEL_URLS").split(',').map(str::to_owned).collect();
    (sentinels, required_env("TEST_REDIS_SENTINEL_MASTER"))
}

/// `TEST_REDIS_SENTINEL_FAILOVER_MASTER`: a second group the same sentinels watch, for the
/// one test that fails it over (the others keep a steady primary).
pub fn redis_sentinel_failover_master() -> String {
    required_env("TEST_REDIS_SENTINEL_FAILOVER_MASTER")
}

/// A Redis that knows only one ACL user: its URL (no credentials), user and password.
pub fn redis_acl() -> (String, String, String) {
    (required_env("TEST_REDIS_ACL_URL"), required_env("TEST_REDIS_ACL_USER"), required_env("TEST_REDIS_ACL_PASSWORD"))
}

/// The same server over TLS: its `rediss://` URL and the private CA that signed its certificate.
pub fn redis_tls() -> (String, std::path::PathBuf) {
    (required_env("TEST_REDIS_TLS_URL"), required_env("TEST_REDIS_TLS_CA").into())
}

/// Settings for Redis in each topology the service supports, under `prefix`: one server,
/// a Cluster, and a primary behind Sentinel (written as a `redis+sentinel://` URL).
pub fn redis_topologies(prefix: &str) -> Vec<(&'static str, RedisSettings)> {
    let (sentinels, master) = redis_sentinels();
    let sentinel_url = format!("redis+sentinel://{}/{master}", sentinels.join(","));
    let mut cluster = RedisSettings::standalone("", prefix);
    cluster.topology = RedisTopology::Cluster { nodes: redis_cluster_nodes() };
    vec![
        ("standalone", RedisSettings::standalone(&redis_url(), prefix)),
        ("cluster", cluster),
        ("sentinel", RedisSettings::standalone(&sentinel_url, prefix)),
    ]
}

/// A key prefix of its own for every test, so tests never see each other's entries.
pub fn random_prefix() -> String {
    format!("te-test-{}", uuid::Uuid::new_v4().simple())
}

pub async fn redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis reachable (see scripts/test)")
}

/// The Redis key of `upstream`'s verdict on `token`, in the layout of `cache::RedisKeys`.
pub fn redis_entry_key(prefix: &str, upstream: &str, token: &str) -> String {
    let key = token_exchange::cache::CacheKey::new(upstream, token_digest(token));
    token_exchange::cache::RedisKeys::new(prefix).entry(&key)
}

/// The Redis key of `token`'s revocation.
pub fn redis_revoked_key(prefix: &str, token: &str) -> String {
    token_exchange::cache::RedisKeys::new(prefix).revoked(&token_digest(token))
}

fn token_digest(token: &str) -> token_exchange::vocabulary::TokenDigest {
    token_exchange::vocabulary::SubjectToken::new(token.into()).digest()
}

pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh, empty PostgreSQL database for one test, dropped when the returned guard is.
pub async fn fresh_postgres_database() -> PostgresDatabase {
    let admin = postgres_admin_url();
    let name = format!("te_test_{}", uuid::Uuid::new_v4().simple());
    let mut connection = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL reachable (see scripts/test)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut connection).await.unwrap();
    connection.close().await.unwrap();
    let base = admin.rsplit_once('/').map(|(base, _)| base).unwrap();
    PostgresDatabase { url: format!("{base}/{name}"), name, admin }
}

/// A PostgreSQL database of one test. Dropping it drops the database, closing whatever
/// connections the test's apps still hold.
#[derive(Debug)]
pub struct PostgresDatabase {
    url: String,
    name: String,
    admin: String,
}

impl PostgresDatabase {
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PostgresDatabase {
    /// Drop cannot await, and the test's runtime may be the one calling: the statement runs on
    /// a thread of its own with a small runtime of its own, and the test waits for it.
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropping = std::thread::spawn(move || -> Result<(), String> {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut connection = sqlx::PgConnection::connect(&admin).await.map_err(|e| e.to_string())?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut connection)
                    .await
                    .map_err(|e| e.to_string())?;
                connection.close().await.map_err(|e| e.to_string())
            })
        });
        match dropping.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop the test database {}: {error}", self.name),
            Err(_) => eprintln!("dropping the test database {} panicked", self.name),
        }
    }
}

/// The database an app (or several replicas) store keys in; gone when the last app using it is.
#[derive(Debug)]
pub enum TestDatabase {
    Sqlite { url: String, _folder: tempfile::TempDir },
    Postgres(PostgresDatabase),
}

impl TestDatabase {
    /// A SQLite file in a temporary folder of its own.
    pub fn sqlite() -> Arc<Self> {
        let folder = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/test.db", folder.path().display());
        Arc::new(Self::Sqlite { url, _folder: folder })
    }

    /// A fresh PostgreSQL database (see [`fresh_postgres_database`]).
    pub async fn postgres() -> Arc<Self> {
        Arc::new(Self::Postgres(fresh_postgres_database().await))
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } => url,
            Self::Postgres(database) => database.url(),
        }
    }
}

/// The key-encryption key of every PostgreSQL test app in this process (a SQLite app gets one
/// created beside its database, as in production). Replicas sharing a database share it.
pub fn test_kek_file() -> std::path::PathBuf {
    static FOLDER: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let folder = FOLDER.get_or_init(|| tempfile::tempdir().unwrap());
    let path = folder.path().join("test.kek");
    token_exchange::keys::read_or_create_kek(&path).unwrap();
    path
}

/// Every Redis key matching `pattern` (a SCAN, so tests see what a replica wrote).
pub async fn redis_keys(pattern: &str) -> Vec<String> {
    let mut redis = redis_connection().await;
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut redis)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Where a replica's lease on asking `upstream` about `token` lives (the fleet's single flight).
pub fn lease_key(prefix: &str, upstream: &str, token: &str) -> String {
    token_exchange::cache::RedisKeys::new(prefix).token(&token_digest(token)).lease(upstream)
}
