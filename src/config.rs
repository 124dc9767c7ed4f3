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
    #[serde(default, with = "optional_duration")]
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
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_auth_method: UpstreamClientAuth,
    /// How long a userinfo answer is trusted when nothing says when the token expires.
    #[serde(default = "default_userinfo_ttl", with = "duration")]
    pub userinfo_ttl: Duration,
    /// The provider's fixed token lifetime, counted from when we first saw a token.
    #[serde(default, with = "optional_duration")]
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

/// Claims we set ourselves; copying them from a subject token would let upstream data override
/// our own decisions.
const RESERVED_CLAIMS: &[&str] =
    &["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "act", "may_act", "cnf"];

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

    /// Checks what types alone cannot say.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut fail = |key: String, reason: &str| {
            problems.push(InvalidSetting { key, reason: reason.into() });
        };
        check_issuer(&self.server.issuer, &mut fail);
        if self.server.max_body_bytes < 1024 {
            fail("server.max_body_bytes".into(), "must be at least 1024");
        }
        if self.server.workers == Some(0) {
            fail("server.workers".into(), "must be at least 1");
        }
        if self.server.max_failed_client_auth_per_minute == 0 {
            fail("server.max_failed_client_auth_per_minute".into(), "must be at least 1");
        }
        if !(self.storage.database_url.starts_with("sqlite:")
            || self.storage.database_url.starts_with("postgres://")
            || self.storage.database_url.starts_with("postgresql://"))
        {
            fail("storage.database_url".into(), "must start with sqlite: or postgres://");
        }
        if self.storage.max_connections == 0 {
            fail("storage.max_connections".into(), "must be at least 1");
        }
        if self.tokens.ttl < Duration::from_secs(1) || self.tokens.ttl > Duration::from_secs(86_400) {
            fail("tokens.ttl".into(), "must be between 1s and 24h, in whole seconds");
        }
        if self.tokens.default_audience.trim().is_empty() {
            fail("tokens.default_audience".into(), "must not be empty");
        }
        for (i, claim) in self.tokens.claims.iter().enumerate() {
            if RESERVED_CLAIMS.contains(&claim.as_str()) {
                fail(format!("tokens.claims[{i}]"), "is set by token-exchange itself");
            }
        }
        if self.keys.refresh_interval.is_zero() {
            fail("keys.refresh_interval".into(), "must be greater than zero");
        }
        if self.keys.publish_ahead < JWKS_MAX_AGE + self.keys.refresh_interval {
            fail("keys.publish_ahead".into(), "must be at least keys.refresh_interval plus the JWKS max-age (300s)");
        }
        if self.keys.rotate_every.is_some_and(|every| every <= self.keys.publish_ahead) {
            fail("keys.rotate_every".into(), "must be longer than keys.publish_ahead");
        }
        if self.upstream_http.timeout.is_zero() {
            fail("upstream_http.timeout".into(), "must be greater than zero");
        }
        if self.upstream_http.connect_timeout.is_zero() {
            fail("upstream_http.connect_timeout".into(), "must be greater than zero");
        }
        if self.cache.max_ttl.is_zero() {
            fail("cache.max_ttl".into(), "must be greater than zero");
        }
        if self.cache.redis_timeout.is_zero() {
            fail("cache.redis_timeout".into(), "must be greater than zero");
        }
        if self.cache.max_entries == 0 {
            fail("cache.max_entries".into(), "must be at least 1");
        }
        self.validate_upstreams(&mut fail);
        self.validate_clients(&mut fail);
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
    }

    fn validate_upstreams(&self, fail: &mut impl FnMut(String, &str)) {
        let mut defaults = 0;
        for (i, upstream) in self.upstreams.iter().enumerate() {
            let key = |field: &str| format!("upstreams[{i}].{field}");
            if self.upstreams[..i].iter().any(|u| u.name == upstream.name) {
                fail(key("name"), "is used by another upstream");
            }
            if self.upstreams[..i].iter().any(|u| u.issuer == upstream.issuer) {
                fail(key("issuer"), "is used by another upstream");
            }
            match Url::parse(&upstream.issuer) {
                Ok(url) if !is_secure(&url) => fail(key("issuer"), "must use https (plain http only on loopback)"),
                Ok(_) => {}
                Err(_) => fail(key("issuer"), "must be an absolute URL"),
            }
            let endpoints = [
                ("jwks_uri", &upstream.jwks_uri),
                ("introspection_endpoint", &upstream.introspection_endpoint),
                ("userinfo_endpoint", &upstream.userinfo_endpoint),
            ];
            for (field, url) in endpoints {
                if url.as_ref().is_some_and(|url| !is_secure(url)) {
                    fail(key(field), "must use https (plain http only on loopback)");
                }
            }
            if upstream.algorithms.is_empty() {
                fail(key("algorithms"), "must name at least one algorithm");
            }
            if upstream.algorithms.iter().any(|alg| is_symmetric(*alg)) {
                fail(key("algorithms"), "HMAC algorithms are not accepted from an upstream");
            }
            let validates_jwts = upstream.introspection_endpoint.is_none() && upstream.userinfo_endpoint.is_none();
            if validates_jwts && upstream.audiences.is_empty() {
                fail(key("audiences"), "must name at least one accepted audience");
            }
            if upstream.introspection_endpoint.is_some()
                && (upstream.client_id.is_none() || upstream.client_secret.is_none())
            {
                fail(key("client_id"), "introspection needs client_id and client_secret");
            }
            if upstream.userinfo_ttl.is_zero() {
                fail(key("userinfo_ttl"), "must be greater than zero");
            }
            if upstream.default_for_opaque {
                defaults += 1;
            }
        }
        if defaults > 1 {
            fail("upstreams".into(), "at most one upstream may set default_for_opaque");
        }
    }

    fn validate_clients(&self, fail: &mut impl FnMut(String, &str)) {
        for (i, client) in self.clients.iter().enumerate() {
            let key = |field: &str| format!("clients[{i}].{field}");
            if client.client_id.is_empty() {
                fail(key("client_id"), "must not be empty");
            }
            if self.clients[..i].iter().any(|c| c.client_id == client.client_id) {
                fail(key("client_id"), "is used by another client");
            }
            if argon2::PasswordHash::new(&client.secret_hash).is_err() || !client.secret_hash.starts_with("$argon2id$")
            {
                fail(key("secret_hash"), "must be an argon2id PHC string (token-exchange hash-secret)");
            }
            if let Some(name) = &client.upstream
                && !self.upstreams.iter().any(|u| &u.name == name)
            {
                fail(key("upstream"), "names no configured upstream");
            }
            for scope in &client.scopes {
                if crate::oauth::ScopeToken::parse(scope).is_none() {
                    fail(key("scopes"), "holds a value that is not a valid scope token");
                }
            }
        }
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

fn check_issuer(issuer: &str, fail: &mut impl FnMut(String, &str)) {
    match Url::parse(issuer) {
        Ok(url) if url.scheme() != "https" => fail("server.issuer".into(), "must use https (RFC 8414 §2)"),
        Ok(url) if url.query().is_some() || url.fragment().is_some() => {
            fail("server.issuer".into(), "must have no query or fragment (RFC 8414 §2)")
        }
        Ok(_) if issuer.ends_with('/') => fail("server.issuer".into(), "must not end with '/'"),
        Ok(_) => {}
        Err(_) => fail("server.issuer".into(), "must be an absolute https URL"),
    }
}

/// Tokens and client secrets cross this connection: TLS, except to this very machine.
fn is_secure(url: &Url) -> bool {
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    url.scheme() == "https" || (url.scheme() == "http" && loopback)
}

fn is_symmetric(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Durations written as `"5m"`, `"30s"`, `"1h 30m"` or a whole number of seconds.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Seconds(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        match Written::deserialize(deserializer)? {
            Written::Seconds(secs) => Ok(Duration::from_secs(secs)),
            Written::Text(text) => match text.trim().parse::<u64>() {
                Ok(secs) => Ok(Duration::from_secs(secs)),
                Err(_) => humantime::parse_duration(text.trim())
                    .map_err(|e| D::Error::custom(format!("`{text}` is not a duration like \"30s\" or \"5m\": {e}"))),
            },
        }
    }
}

/// An optional [`duration`].
pub mod optional_duration {
    use std::time::Duration;

    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(deserializer).map(Some)
    }
}
