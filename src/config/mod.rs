//! Typed settings: embedded defaults, then an optional TOML file, then environment variables
//! named `TOKEN_EXCHANGE__SECTION__KEY`. Unknown keys are rejected and every value is checked
//! at load, so a bad deployment fails before it serves a single request.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use url::Url;

use crate::keys::SigningAlgorithm;

mod duration;
mod validate;

pub const ENV_PREFIX: &str = "TOKEN_EXCHANGE__";

/// How long verifiers may cache our JWKS (`Cache-Control: max-age` on the JWKS).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);

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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// `iss` of minted tokens and base URL of the published metadata.
    pub issuer: String,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Worker threads; defaults to the number of cores.
    pub workers: Option<usize>,
    /// Failed client authentications tolerated per client and minute before it is locked out.
    pub max_failed_client_auth_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// `sqlite://path/to/file.db` (the default) or `postgres://...`.
    pub database_url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    pub algorithm: SigningAlgorithm,
    /// Lifetime of minted tokens; never beyond the subject token's own `exp`.
    #[serde(with = "duration")]
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
    #[serde(with = "duration")]
    pub publish_ahead: Duration,
    /// How often every replica reloads the key set (and rotates when due).
    #[serde(with = "duration")]
    pub refresh_interval: Duration,
    /// Rotate the signing key automatically this long after the current one started signing.
    #[serde(default, with = "duration::optional")]
    pub rotate_every: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamHttpSettings {
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    #[serde(with = "duration")]
    pub timeout: Duration,
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Upper bound for how long a validated identity is remembered.
    #[serde(with = "duration")]
    pub max_ttl: Duration,
    /// How long a definitive rejection (bad signature, inactive token) is remembered.
    #[serde(with = "duration")]
    pub negative_ttl: Duration,
    /// Entries kept in process.
    pub max_entries: u64,
    /// Safety margin subtracted from a token's expiry before caching it.
    #[serde(with = "duration")]
    pub expiry_leeway: Duration,
    /// Shared L2 cache; none means in-process only.
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    #[serde(with = "duration")]
    pub redis_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    pub name: String,
    /// Exact `iss` of the subject tokens this upstream issues.
    pub issuer: String,
    /// JWKS location; discovered from the issuer's OpenID configuration when absent.
    #[serde(default)]
    pub jwks_uri: Option<Url>,
    /// Accepted `aud` values of JWT subject tokens (at least one must match).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Signature algorithms accepted from this upstream.
    #[serde(default = "default_upstream_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "duration")]
    pub leeway: Duration,
    /// Minimum time between two JWKS fetches triggered by an unknown `kid`.
    #[serde(default = "default_jwks_cooldown", with = "duration")]
    pub jwks_refetch_cooldown: Duration,
    /// How long a fetched JWKS is used before it is fetched again.
    #[serde(default = "default_jwks_max_age", with = "duration")]
    pub jwks_max_age: Duration,
    /// RFC 7662 introspection endpoint for opaque tokens.
    #[serde(default)]
    pub introspection_endpoint: Option<Url>,
    /// OIDC userinfo endpoint for opaque tokens.
    #[serde(default)]
    pub userinfo_endpoint: Option<Url>,
    /// Credentials we present to the introspection endpoint.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<crate::oauth::ClientSecret>,
    #[serde(default)]
    pub client_auth_method: UpstreamClientAuth,
    /// How long a userinfo answer is trusted when nothing says when the token expires.
    #[serde(default = "default_userinfo_ttl", with = "duration")]
    pub userinfo_ttl: Duration,
    /// The provider's fixed token lifetime, counted from when we first saw a token.
    #[serde(default, with = "duration::optional")]
    pub token_lifetime: Option<Duration>,
    /// Use this upstream for opaque tokens of clients that name no upstream.
    #[serde(default)]
    pub default_for_opaque: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub client_id: String,
    /// argon2id PHC string, as printed by `token-exchange hash-secret`.
    pub secret_hash: String,
    /// Audiences and resource URIs this client may request tokens for.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Scopes this client may obtain (never more than the subject token holds).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// May call the admin endpoints (`POST /admin/purge`).
    #[serde(default)]
    pub admin: bool,
    /// The upstream this client is bound to: it validates the client's opaque subject tokens,
    /// and subject tokens from any other upstream are refused with `unauthorized_client`.
    #[serde(default)]
    pub upstream: Option<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            issuer: "https://token-exchange.internal".into(),
            max_body_bytes: 64 * 1024,
            workers: None,
            max_failed_client_auth_per_minute: 10,
        }
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self { database_url: "sqlite://data/token-exchange.db".into(), max_connections: 5 }
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
        Self { publish_ahead: Duration::from_secs(600), refresh_interval: Duration::from_secs(60), rotate_every: None }
    }
}

impl Default for UpstreamHttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            max_response_bytes: 1024 * 1024,
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(30),
            max_entries: 100_000,
            expiry_leeway: Duration::from_secs(5),
            redis_url: None,
            redis_prefix: "token-exchange".into(),
            redis_timeout: Duration::from_millis(250),
        }
    }
}

fn default_upstream_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256, Algorithm::ES256]
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_jwks_cooldown() -> Duration {
    Duration::from_secs(30)
}
fn default_jwks_max_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_userinfo_ttl() -> Duration {
    Duration::from_secs(300)
}

/// A configuration value that cannot be used, with the key it sits under.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct InvalidSetting {
    pub key: String,
    pub reason: String,
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
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Key rotation timing: a replaced key stays published for the longest token lifetime
    /// plus the time verifiers may cache the JWKS and the time replicas take to notice.
    pub fn rotation_policy(&self) -> crate::keys::RotationPolicy {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        crate::keys::RotationPolicy {
            publish_ahead: secs(self.keys.publish_ahead),
            retire_after: secs(self.tokens.ttl + JWKS_MAX_AGE + self.keys.refresh_interval),
            rotate_every: self.keys.rotate_every.map(secs),
            token_ttl: secs(self.tokens.ttl),
        }
    }
}
