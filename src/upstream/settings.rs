//! How an upstream is configured: its issuer, how its tokens are checked, and the HTTP client
//! every upstream call goes through.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use url::Url;

use super::Egress;
use crate::vocabulary::ClientSecret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    pub name: String,
    /// Exact `iss` of the subject tokens this upstream issues.
    pub issuer: String,
    /// JWKS location; discovered from the issuer's metadata when absent.
    #[serde(default)]
    pub jwks_uri: Option<Url>,
    /// Accepted `aud` values of JWT subject tokens (at least one must match).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Signature algorithms accepted from this upstream.
    #[serde(default = "default_upstream_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "crate::clock::written")]
    pub leeway: Duration,
    /// Minimum time between two JWKS fetches triggered by an unknown `kid`.
    #[serde(default = "default_jwks_cooldown", with = "crate::clock::written")]
    pub jwks_refetch_cooldown: Duration,
    /// How long a fetched JWKS is used before it is fetched again.
    #[serde(default = "default_jwks_max_age", with = "crate::clock::written")]
    pub jwks_max_age: Duration,
    /// RFC 7662 introspection endpoint for opaque tokens, or `"discover"`.
    #[serde(default)]
    pub introspection_endpoint: Option<Endpoint>,
    /// OIDC userinfo endpoint for opaque tokens, or `"discover"`.
    #[serde(default)]
    pub userinfo_endpoint: Option<Endpoint>,
    /// Whether introspection answers plain JSON or an RFC 9701 signed JWT.
    #[serde(default)]
    pub introspection_format: AnswerFormat,
    /// Whether userinfo answers plain JSON or a signed JWT (OIDC Core §5.3.2).
    #[serde(default)]
    pub userinfo_format: AnswerFormat,
    /// How long discovered provider metadata is used before it is fetched again.
    #[serde(default = "default_metadata_max_age", with = "crate::clock::written")]
    pub metadata_max_age: Duration,
    /// Credentials we present to the introspection endpoint.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<ClientSecret>,
    #[serde(default)]
    pub client_auth_method: UpstreamClientAuth,
    /// How long a userinfo answer is trusted when nothing says when the token expires.
    #[serde(default = "default_userinfo_ttl", with = "crate::clock::written")]
    pub userinfo_ttl: Duration,
    /// The provider's fixed token lifetime, counted from when we first saw a token.
    #[serde(default, with = "crate::clock::written::optional")]
    pub token_lifetime: Option<Duration>,
    /// Use this upstream for opaque tokens of clients that name no upstream.
    #[serde(default)]
    pub default_for_opaque: bool,
    /// With `audiences` set, whether an introspection answer that names no `aud` is accepted.
    /// Off by default: a token whose audience nobody states may be meant for anyone.
    #[serde(default)]
    pub accept_answers_without_audience: bool,
    /// When not empty, only tokens issued to these OAuth clients (`client_id`, else `azp`).
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    /// `[upstreams.protection]`: how hard this upstream may be asked about tokens.
    #[serde(default)]
    pub protection: UpstreamProtection,
}

/// Where an endpoint is: written in the configuration, or read from the provider's metadata
/// (OpenID Connect Discovery, else RFC 8414) when written as `"discover"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Endpoint {
    At(Url),
    Discover,
}

impl Endpoint {
    fn configured(&self) -> Option<&Url> {
        match self {
            Self::At(url) => Some(url),
            Self::Discover => None,
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = url::ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "discover" { Ok(Self::Discover) } else { text.parse().map(Self::At) }
    }
}

impl TryFrom<String> for Endpoint {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse().map_err(|error| format!("neither \"discover\" nor an absolute URL ({error})"))
    }
}

/// How an upstream answers about a token: plain JSON, or a JWS signed with its keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerFormat {
    #[default]
    Json,
    Jwt,
}

impl UpstreamSettings {
    /// The endpoints written as URLs (not `"discover"`), by their setting's name.
    pub fn configured_endpoints(&self) -> [(&'static str, Option<&Url>); 3] {
        [
            ("jwks_uri", self.jwks_uri.as_ref()),
            ("introspection_endpoint", self.introspection_endpoint.as_ref().and_then(Endpoint::configured)),
            ("userinfo_endpoint", self.userinfo_endpoint.as_ref().and_then(Endpoint::configured)),
        ]
    }

    /// Whether any of this upstream's endpoints is to be read from the provider's metadata.
    pub fn discovers(&self) -> bool {
        let discovered = |endpoint: &Option<Endpoint>| matches!(endpoint, Some(Endpoint::Discover));
        discovered(&self.introspection_endpoint)
            || discovered(&self.userinfo_endpoint)
            || (self.jwks_uri.is_none() && self.needs_keys())
    }

    /// Whether this upstream's signing keys are needed: for JWT subject tokens or signed answers.
    pub fn needs_keys(&self) -> bool {
        !self.audiences.is_empty() || self.signs_introspection() || self.signs_userinfo()
    }

    /// Whether tokens are sent to this upstream one by one (introspection or userinfo).
    pub fn asks_per_token(&self) -> bool {
        self.introspection_endpoint.is_some() || self.userinfo_endpoint.is_some()
    }

    pub fn signs_introspection(&self) -> bool {
        self.introspection_endpoint.is_some() && self.introspection_format == AnswerFormat::Jwt
    }

    pub fn signs_userinfo(&self) -> bool {
        self.userinfo_endpoint.is_some() && self.userinfo_format == AnswerFormat::Jwt
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamHttpSettings {
    #[serde(with = "crate::clock::written")]
    pub connect_timeout: Duration,
    #[serde(with = "crate::clock::written")]
    pub timeout: Duration,
    pub max_response_bytes: usize,
    /// How upstream requests leave the network: `"environment"`, `"direct"` or a proxy's URL
    /// (see [`Egress`]).
    pub proxy: String,
    /// Hosts a configured proxy is not used for (`NO_PROXY` syntax, one entry each).
    pub no_proxy: Vec<String>,
    /// Certificate authorities (PEM) trusted for upstreams' TLS besides the platform's: an
    /// identity provider inside the network often has a certificate of the network's own CA.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for UpstreamHttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            max_response_bytes: 1024 * 1024,
            proxy: "environment".into(),
            no_proxy: Vec::new(),
            ca_file: None,
        }
    }
}

impl UpstreamHttpSettings {
    /// `proxy`, parsed; the error says what is wrong with it.
    pub fn egress(&self) -> Result<Egress, String> {
        Egress::parse(&self.proxy)
    }

    /// The certificates of `ca_file`, if one is set; the error says what is wrong with it.
    pub fn extra_roots(&self) -> Result<Vec<reqwest::Certificate>, String> {
        let Some(path) = &self.ca_file else { return Ok(Vec::new()) };
        let pem = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(roots) if !roots.is_empty() => Ok(roots),
            _ => Err("holds no PEM certificate".into()),
        }
    }
}

/// `[upstreams.protection]`: bounds on the calls made about each token (introspection,
/// userinfo), so a provider that is down, slow or flooded costs us little and is not hammered.
/// `identity` enforces them; JWTs are verified offline and need none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamProtection {
    /// Calls under way at once; 0 is no limit.
    pub max_concurrent_calls: u32,
    /// How long a call may wait for one of them before it is refused.
    #[serde(with = "crate::clock::written")]
    pub queue_timeout: Duration,
    /// Consecutive failures (timeouts, connection errors, 5xx, 429) that open the circuit
    /// breaker; 0 is no breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before it lets one probe through.
    #[serde(with = "crate::clock::written")]
    pub cool_down: Duration,
}

impl Default for UpstreamProtection {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 64,
            queue_timeout: Duration::from_millis(500),
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
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
fn default_metadata_max_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_userinfo_ttl() -> Duration {
    Duration::from_secs(300)
}
