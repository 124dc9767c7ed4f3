//! Typed settings: embedded defaults, then an optional TOML file, then environment variables
//! named `TOKEN_EXCHANGE__SECTION__KEY`. Unknown keys are rejected and every value is checked
//! at load, so a bad deployment fails before it serves a single request.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

pub use crate::clients::ClientSettings;
pub use crate::gateway::{ForwardAuthSettings, RouteSettings};
use crate::keys::{CustodyError, JWKS_MAX_AGE, KeyCustody, SigningAlgorithm, decode_kek, read_kek, read_or_create_kek};
pub use crate::rate_limit::{Rate, RateLimitSettings};
pub use crate::storage::StorageSettings;
pub use crate::telemetry::TelemetrySettings;
pub use crate::upstream::{
    AnswerFormat, Endpoint, UpstreamClientAuth, UpstreamHttpSettings, UpstreamProtection, UpstreamSettings,
};

mod validate;

pub const ENV_PREFIX: &str = "TOKEN_EXCHANGE__";

/// Added to the time one upstream call may take, for the lease of the fleet's single flight.
const LEASE_MARGIN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub tokens: TokenSettings,
    pub keys: KeySettings,
    pub upstream_http: UpstreamHttpSettings,
    pub cache: CacheSettings,
    pub upstreams: Vec<UpstreamSettings>,
    pub clients: Vec<ClientSettings>,
    pub forward_auth: ForwardAuthSettings,
    pub rate_limits: RateLimitSettings,
    pub telemetry: TelemetrySettings,
    /// The file these settings were read from, read again on a reload (SIGHUP).
    #[serde(skip)]
    pub source: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// A separate address for `GET /metrics` (for example on an internal interface); when set,
    /// `/metrics` is served there only, and nothing else is.
    pub metrics_listen: Option<SocketAddr>,
    /// `iss` of minted tokens and base URL of the published metadata.
    pub issuer: String,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive once the headers are in (a slow body is
    /// answered 408 and its connection closed).
    #[serde(with = "crate::clock::written")]
    pub body_read_timeout: Duration,
    /// Connections each worker holds open at once; more wait in the kernel's accept queue.
    pub max_connections_per_worker: usize,
    /// Worker threads; defaults to the number of cores.
    pub workers: Option<usize>,
    /// Failed client authentications tolerated per client and minute before it is locked out.
    pub max_failed_client_auth_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    pub algorithm: SigningAlgorithm,
    /// Lifetime of minted tokens; never beyond the subject token's own `exp`.
    #[serde(with = "crate::clock::written")]
    pub ttl: Duration,
    /// `aud` of minted tokens when the request names neither audience nor resource.
    pub default_audience: String,
    /// Identity claims copied from the subject token into minted tokens.
    pub claims: Vec<String>,
    /// Hand out a token minted for the same subject token, client, audience and scope again
    /// while at least half of its life is left, instead of signing a new one.
    pub reuse_minted: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    /// How long a new key is published before it signs.
    #[serde(with = "crate::clock::written")]
    pub publish_ahead: Duration,
    /// How often every replica reloads the key set (and rotates when due).
    #[serde(with = "crate::clock::written")]
    pub refresh_interval: Duration,
    /// Rotate the signing key automatically this long after the current one started signing.
    #[serde(default, with = "crate::clock::written::optional")]
    pub rotate_every: Option<Duration>,
    /// The key-encryption key (32 bytes, base64url) that seals private keys at rest.
    /// `TOKEN_EXCHANGE_KEK` wins over it; with neither, a SQLite database gets one created
    /// next to it, and PostgreSQL refuses to start.
    pub encryption_key_file: Option<std::path::PathBuf>,
    /// The KEK before the current one, still accepted for opening keys while a new KEK rolls
    /// out to every replica (then run `token-exchange rekey`).
    pub previous_encryption_key_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Upper bound for how long a validated identity is remembered.
    #[serde(with = "crate::clock::written")]
    pub max_ttl: Duration,
    /// How long a definitive rejection (bad signature, inactive token) is remembered.
    #[serde(with = "crate::clock::written")]
    pub negative_ttl: Duration,
    /// Entries kept in process.
    pub max_entries: u64,
    /// Estimated bytes the in-process caches may hold: the identities, and the minted tokens
    /// kept for reuse (half each when `tokens.reuse_minted` is on). `max_entries` applies too.
    pub max_bytes: u64,
    /// Safety margin subtracted from a token's expiry before caching it.
    #[serde(with = "crate::clock::written")]
    pub expiry_leeway: Duration,
    /// Shared L2 cache; none means in-process only. `redis://` or `rediss://` for one server,
    /// `redis+sentinel://` or `rediss+sentinel://` for a primary found through Sentinel.
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    #[serde(with = "crate::clock::written")]
    pub redis_timeout: Duration,
    /// A Redis Cluster's seed nodes (URLs), instead of `redis_url`.
    pub redis_cluster_nodes: Vec<String>,
    /// Sentinels (`host:port` or URLs) that name the primary `redis_sentinel_master`, instead
    /// of `redis_url`.
    pub redis_sentinels: Vec<String>,
    pub redis_sentinel_master: Option<String>,
    /// ACL user and password for the Redis data nodes; they win over credentials in URLs.
    pub redis_username: Option<String>,
    pub redis_password: Option<crate::vocabulary::ClientSecret>,
    /// PEM file of the CA that signed the Redis servers' TLS certificates, when not a public one.
    pub redis_tls_ca_file: Option<std::path::PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            issuer: "https://token-exchange.internal".into(),
            max_body_bytes: 64 * 1024,
            body_read_timeout: Duration::from_secs(5),
            max_connections_per_worker: 2048,
            workers: None,
            max_failed_client_auth_per_minute: 10,
        }
    }
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            algorithm: SigningAlgorithm::ES256,
            ttl: Duration::from_secs(300),
            default_audience: "internal".into(),
            claims: vec!["email".into(), "name".into()],
            reuse_minted: true,
        }
    }
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            publish_ahead: Duration::from_secs(600),
            refresh_interval: Duration::from_secs(60),
            rotate_every: None,
            encryption_key_file: None,
            previous_encryption_key_file: None,
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(30),
            max_entries: 100_000,
            max_bytes: 256 * 1024 * 1024,
            expiry_leeway: Duration::from_secs(5),
            redis_url: None,
            redis_prefix: "token-exchange".into(),
            redis_timeout: Duration::from_millis(250),
            redis_cluster_nodes: Vec::new(),
            redis_sentinels: Vec::new(),
            redis_sentinel_master: None,
            redis_username: None,
            redis_password: None,
            redis_tls_ca_file: None,
        }
    }
}

/// A configuration value that cannot be used, with the key it sits under.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct InvalidSetting {
    pub key: String,
    pub reason: String,
}

/// The environment variable that holds the key-encryption key, base64url.
pub const KEK_ENV: &str = "TOKEN_EXCHANGE_KEK";

/// Why no key-encryption key is available; the service then refuses to start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("keys.encryption_key_file or {KEK_ENV} is required with PostgreSQL: private keys are stored sealed")]
    Required,
    #[error("{KEK_ENV} is not 32 bytes of base64url")]
    MalformedEnv,
    #[error(transparent)]
    Custody(#[from] CustodyError),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<InvalidSetting>),
}

impl Settings {
    /// Loads defaults, then `file` (which must exist when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Invalid(vec![InvalidSetting {
                    key: "--config".into(),
                    reason: format!("{} is not a readable file", path.display()),
                }]));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let mut settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        settings.source = file.map(Path::to_path_buf);
        Ok(settings)
    }

    /// The settings that only a restart can change, by key, where `self` and `other` differ.
    /// Clients, upstreams (with `tokens.claims`) and forward-auth routes can change at run time.
    pub fn fixed_differences(&self, other: &Settings) -> Vec<&'static str> {
        // Debug output compares whole sections; secrets in it are never printed, only compared.
        let differs = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        let tokens =
            |s: &Settings| (s.tokens.algorithm, s.tokens.ttl, s.tokens.default_audience.clone(), s.tokens.reuse_minted);
        [
            ("server", differs(&self.server, &other.server)),
            ("storage", differs(&self.storage, &other.storage)),
            ("tokens (other than claims)", differs(&tokens(self), &tokens(other))),
            ("keys", differs(&self.keys, &other.keys)),
            ("upstream_http", differs(&self.upstream_http, &other.upstream_http)),
            ("cache", differs(&self.cache, &other.cache)),
            ("telemetry", differs(&self.telemetry, &other.telemetry)),
            ("rate_limits", self.rate_limits != other.rate_limits),
            ("forward_auth.grpc_listen", self.forward_auth.grpc_listen != other.forward_auth.grpc_listen),
        ]
        .into_iter()
        .filter_map(|(key, differs)| differs.then_some(key))
        .collect()
    }

    /// Key rotation timing: a replaced key stays published for the longest token lifetime
    /// plus the time verifiers may cache the JWKS and the time replicas take to notice.
    pub fn rotation_policy(&self) -> crate::keys::RotationPolicy {
        crate::keys::RotationPolicy {
            publish_ahead: self.keys.publish_ahead,
            retire_after: self.tokens.ttl + JWKS_MAX_AGE + self.keys.refresh_interval,
            rotate_every: self.keys.rotate_every,
            token_ttl: self.tokens.ttl,
        }
    }

    /// The key-encryption key in force: `TOKEN_EXCHANGE_KEK`, else `keys.encryption_key_file`,
    /// else (SQLite only) a file created next to the database. Returns where a new KEK was
    /// created, if one was.
    pub fn key_custody(&self) -> Result<(KeyCustody, Option<std::path::PathBuf>), KekError> {
        let (current, created) = match (std::env::var(KEK_ENV).ok(), &self.keys.encryption_key_file) {
            (Some(text), _) => (decode_kek(&text).ok_or(KekError::MalformedEnv)?, None),
            (None, Some(path)) => (read_kek(path)?, None),
            (None, None) => {
                let path = self.default_kek_path().ok_or(KekError::Required)?;
                let (kek, created) = read_or_create_kek(&path)?;
                (kek, created.then_some(path))
            }
        };
        let previous = self.keys.previous_encryption_key_file.as_deref().map(read_kek).transpose()?;
        Ok((KeyCustody::new(&current, previous.as_ref())?, created))
    }

    /// `token-exchange.kek` beside a SQLite database file.
    fn default_kek_path(&self) -> Option<std::path::PathBuf> {
        let url = &self.storage.database_url;
        let file = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
        let file = file.split('?').next().filter(|f| !f.contains(":memory:"))?;
        Some(Path::new(file).with_file_name("token-exchange.kek"))
    }

    /// How long verdicts on tokens are kept, and how long one replica may ask an upstream.
    pub fn cache_policy(&self) -> crate::identity::CachePolicy {
        crate::identity::CachePolicy {
            max_ttl: self.cache.max_ttl,
            negative_ttl: self.cache.negative_ttl,
            expiry_leeway: self.cache.expiry_leeway,
            upstream_lease: self.upstream_http.connect_timeout + self.upstream_http.timeout + LEASE_MARGIN,
        }
    }

    /// The shared cache, when one is configured: a Cluster, Sentinel, or `redis_url`.
    pub fn redis(&self) -> Option<crate::cache::RedisSettings> {
        use crate::cache::RedisTopology;
        let cache = &self.cache;
        let topology = if !cache.redis_cluster_nodes.is_empty() {
            RedisTopology::Cluster { nodes: cache.redis_cluster_nodes.clone() }
        } else if !cache.redis_sentinels.is_empty() {
            let master = cache.redis_sentinel_master.clone().unwrap_or_default();
            RedisTopology::Sentinel { sentinels: cache.redis_sentinels.clone(), master }
        } else {
            RedisTopology::Url(cache.redis_url.clone()?)
        };
        Some(crate::cache::RedisSettings {
            topology,
            username: cache.redis_username.clone(),
            password: cache.redis_password.clone(),
            tls_ca_file: cache.redis_tls_ca_file.clone(),
            prefix: cache.redis_prefix.clone(),
            timeout: cache.redis_timeout,
            index_ttl: cache.max_ttl,
        })
    }

    /// What minted tokens look like.
    pub fn minting(&self) -> crate::exchange::MintSettings {
        crate::exchange::MintSettings {
            issuer: self.server.issuer.clone(),
            ttl: self.tokens.ttl,
            default_audience: crate::vocabulary::Audience::new(self.tokens.default_audience.clone()),
            reuse_minted: self.tokens.reuse_minted,
            reuse_bounds: crate::cache::MemoryBounds {
                max_entries: self.cache.max_entries,
                max_bytes: self.cache.max_bytes - self.identity_cache_bounds().max_bytes,
            },
        }
    }

    /// The in-process identity cache's share of `cache.max_bytes`: all of it, or half when
    /// minted tokens are kept for reuse beside it.
    pub fn identity_cache_bounds(&self) -> crate::cache::MemoryBounds {
        let max_bytes = if self.tokens.reuse_minted { self.cache.max_bytes.div_ceil(2) } else { self.cache.max_bytes };
        crate::cache::MemoryBounds { max_entries: self.cache.max_entries, max_bytes }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::{ConfigError, Settings};

    const MIB: u64 = 1024 * 1024;

    fn load(toml: &str) -> Result<Settings, ConfigError> {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().expect("a temporary file");
        file.write_all(toml.as_bytes()).expect("written");
        Settings::load(Some(file.path()))
    }

    #[test]
    fn cache_max_bytes_is_read_and_shared_with_the_reuse_cache() -> Result<(), ConfigError> {
        let settings = load("[cache]\nmax_bytes = 8388608\nmax_entries = 500\n")?;

        assert_eq!(settings.cache.max_bytes, 8 * MIB);
        let identities = settings.identity_cache_bounds();
        assert_eq!((identities.max_entries, identities.max_bytes), (500, 4 * MIB));
        assert_eq!(settings.minting().reuse_bounds.max_bytes, 4 * MIB);
        Ok(())
    }

    #[test]
    fn without_reuse_the_identities_get_all_of_cache_max_bytes() -> Result<(), ConfigError> {
        let settings = load("[tokens]\nreuse_minted = false\n[cache]\nmax_bytes = 8388608\n")?;

        assert_eq!(settings.identity_cache_bounds().max_bytes, 8 * MIB);
        Ok(())
    }

    #[test]
    fn a_cache_max_bytes_below_one_mebibyte_is_refused_naming_the_key() {
        let refusal = load("[cache]\nmax_bytes = 1000\n").err().map(|e| e.to_string()).unwrap_or_default();

        assert!(refusal.contains("cache.max_bytes"), "{refusal}");
    }

    fn refusal(toml: &str) -> String {
        load(toml).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn upstream_requests_follow_the_environments_proxy_settings_unless_told_otherwise() -> Result<(), ConfigError> {
        use crate::upstream::Egress;
        assert_eq!(load("")?.upstream_http.egress(), Ok(Egress::Environment));
        assert_eq!(load("[upstream_http]\nproxy = \"direct\"\n")?.upstream_http.egress(), Ok(Egress::Direct));
        let through = load("[upstream_http]\nproxy = \"http://egress.internal:3128\"\nno_proxy = [\".corp\"]\n")?;
        assert!(matches!(through.upstream_http.egress(), Ok(Egress::Proxy(url)) if url.port() == Some(3128)));
        Ok(())
    }

    #[test]
    fn a_proxy_that_is_not_an_http_proxys_url_is_refused_naming_the_key() {
        for proxy in ["egress.internal:3128", "socks5://egress.internal:1080", "http://egress.internal:3128/path"] {
            let refused = refusal(&format!("[upstream_http]\nproxy = \"{proxy}\"\n"));
            assert!(refused.contains("upstream_http.proxy"), "{proxy}: {refused}");
        }
    }

    #[test]
    fn no_proxy_without_a_proxy_is_refused_as_it_would_do_nothing() {
        let refused = refusal("[upstream_http]\nno_proxy = [\"idp.internal\"]\n");

        assert!(refused.contains("upstream_http.no_proxy"), "{refused}");
    }

    #[test]
    fn a_ca_file_that_cannot_be_read_or_holds_no_certificate_is_refused_naming_the_key() {
        let missing = refusal("[upstream_http]\nca_file = \"/nonexistent/ca.pem\"\n");
        assert!(missing.contains("upstream_http.ca_file"), "{missing}");

        let mut not_pem = tempfile::NamedTempFile::new().expect("a temporary file");
        not_pem.write_all(b"not a certificate").expect("written");
        let empty = refusal(&format!("[upstream_http]\nca_file = \"{}\"\n", not_pem.path().display()));
        assert!(empty.contains("upstream_http.ca_file") && empty.contains("no PEM certificate"), "{empty}");
    }

    #[test]
    fn a_proxys_credentials_never_reach_the_log_line_that_names_it() -> Result<(), ConfigError> {
        let settings = load("[upstream_http]\nproxy = \"http://user:s3cret@egress.internal:3128\"\n")?;
        let named = settings.upstream_http.egress().map(|egress| egress.to_string()).unwrap_or_default();

        assert_eq!(named, "http://egress.internal:3128");
        Ok(())
    }
}
