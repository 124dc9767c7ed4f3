//! Decisions for gateways (nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`,
//! Envoy ext_authz): a request's bearer token is exchanged for an internal token under the
//! route the request falls in. The exchange is the very one `/token` performs: same identity
//! service, caches, revocations, policy and minted-token reuse.

mod routes;
mod settings;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
pub use routes::{NoRoute, OriginalRequest, Route, RouteTable};
pub use settings::{ForwardAuthSettings, RouteSettings};

use crate::clients::ClientRegistry;
use crate::clock::Stopwatch;
use crate::exchange::ExchangeService;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::oauth::{Cause, ExchangeRequest, MAX_TOKEN_BYTES, OAuthError, PresentedToken, TokenType};
use crate::vocabulary::SubjectToken;

/// A minted token ends at least this long after a proxy stops reusing a cached decision.
const CACHE_MARGIN: Duration = Duration::from_secs(5);

/// The bearer credential of the gateway's request (RFC 6750 §2.1).
#[derive(Debug)]
pub enum Credential {
    Missing,
    Malformed,
    Bearer(SubjectToken),
}

impl Credential {
    /// Exactly one `Authorization: Bearer <b64token>` value; the scheme is case-insensitive.
    pub fn from_authorization<'a>(mut values: impl Iterator<Item = &'a str>) -> Self {
        let value = match (values.next(), values.next()) {
            (None, _) => return Self::Missing,
            (Some(value), None) => value,
            (Some(_), Some(_)) => return Self::Malformed,
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return Self::Malformed;
        };
        let token = token.trim();
        let b64token = token.trim_end_matches('=');
        let well_formed = scheme.eq_ignore_ascii_case("bearer")
            && !b64token.is_empty()
            && token.len() <= MAX_TOKEN_BYTES
            && b64token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'));
        if well_formed { Self::Bearer(SubjectToken::new(token.to_owned())) } else { Self::Malformed }
    }
}

/// What a gateway asks about.
#[derive(Debug)]
pub struct DecisionRequest<'a> {
    pub peer: Option<IpAddr>,
    pub credential: Credential,
    pub original: OriginalRequest,
    /// A route the gateway names itself (`?route=` or `X-Token-Exchange-Route`).
    pub route: Option<&'a str>,
}

/// The request may pass, carrying this internal token.
#[derive(Debug)]
pub struct Allowed {
    pub access_token: String,
    /// How long a proxy may reuse the decision; `None` forbids caching.
    pub cache_for: Option<Duration>,
}

/// Why the request may not pass, each with one status a proxy understands (RFC 6750 §3).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// 403 before any work: only trusted proxies may turn internet tokens into internal ones.
    #[error("the caller is not a trusted proxy")]
    UntrustedPeer,
    /// 401 with a bare challenge (RFC 6750 §3.1: no error code without credentials).
    #[error("no bearer credential")]
    NoCredential,
    /// 401 `invalid_request`: a 400 would become a 500 at nginx.
    #[error("the Authorization header is not one Bearer credential")]
    MalformedCredential,
    /// 401 `invalid_token`: invalid, expired or revoked.
    #[error("{0}")]
    InvalidToken(String),
    /// 403 `insufficient_scope`: no route, or the route's policy refuses.
    #[error("{reason}")]
    Forbidden { reason: String, scope: Option<String> },
    /// 503: the upstream cannot answer and nothing is cached.
    #[error("the upstream identity provider is unavailable")]
    Unavailable {
        retry_after: Option<Duration>,
        #[source]
        cause: Option<Cause>,
    },
    /// 500: a fault on our side.
    #[error("internal error")]
    Fault(#[source] Cause),
    /// 429: the proxy is over its rate limit (`rate_limits.forward_auth_per_peer`), or the
    /// route's client has spent its budget of upstream calls for unknown tokens
    /// (`rate_limits.first_sight_per_client`).
    #[error("rate limit exceeded")]
    RateLimited { retry_after: Duration },
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Self::UntrustedPeer | Self::Forbidden { .. } => 403,
            Self::NoCredential | Self::MalformedCredential | Self::InvalidToken(_) => 401,
            Self::Unavailable { .. } => 503,
            Self::Fault(_) => 500,
            Self::RateLimited { .. } => 429,
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3), with quotes and backslashes kept out of
    /// the quoted strings.
    pub fn challenge(&self, realm: &str) -> Option<String> {
        let quoted =
            |text: &str| text.chars().filter(|c| !matches!(c, '"' | '\\') && !c.is_control()).collect::<String>();
        let realm = quoted(realm);
        match self {
            Self::NoCredential => Some(format!("Bearer realm=\"{realm}\"")),
            Self::MalformedCredential => Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{}\"",
                quoted(&self.to_string())
            )),
            Self::InvalidToken(reason) => Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                quoted(reason)
            )),
            Self::Forbidden { scope, .. } => Some(match scope {
                Some(scope) => {
                    format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"", quoted(scope))
                }
                None => format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\""),
            }),
            Self::UntrustedPeer | Self::Unavailable { .. } | Self::Fault(_) | Self::RateLimited { .. } => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            Self::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The metrics and log label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::UntrustedPeer => "untrusted_peer",
            Self::NoCredential => "no_credential",
            Self::MalformedCredential => "malformed_credential",
            Self::InvalidToken(_) => "invalid_token",
            Self::Forbidden { .. } => "forbidden",
            Self::Unavailable { .. } => "unavailable",
            Self::Fault(_) => "fault",
            Self::RateLimited { .. } => "rate_limited",
        }
    }

    /// A stable name for the security-relevant refusals.
    pub fn security_event(&self) -> Option<&'static str> {
        match self {
            Self::UntrustedPeer => Some("untrusted_forward_auth_peer"),
            Self::InvalidToken(_) => Some("token_rejected"),
            Self::Forbidden { .. } => Some("forward_auth_forbidden"),
            Self::RateLimited { .. } => Some("rate_limited"),
            _ => None,
        }
    }

    fn from_exchange(error: OAuthError, route: &Route) -> Self {
        let forbidden =
            |reason: String| Self::Forbidden { reason, scope: route.scope.as_ref().map(|scope| scope.to_wire()) };
        match error {
            OAuthError::InvalidToken { .. } | OAuthError::InvalidRequest(_) => {
                Self::InvalidToken(error.description().into_owned())
            }
            OAuthError::InvalidTarget(_) | OAuthError::InvalidScope(_) | OAuthError::UnauthorizedClient(_) => {
                forbidden(error.description().into_owned())
            }
            OAuthError::TemporarilyUnavailable { retry_after, cause, .. } => Self::Unavailable { retry_after, cause },
            // Like the proxy's own rate limit: 429 with Retry-After, which nginx `auth_request`
            // turns into a 500 just as it does a 503 (nothing but 2xx, 401, 403 passes there).
            OAuthError::TooManyUnknownTokens { retry_after } => Self::RateLimited { retry_after },
            other => Self::Fault(Arc::new(other)),
        }
    }
}

/// A refusal together with the realm its challenge names, as an endpoint answers it.
#[derive(Debug, thiserror::Error)]
#[error("{refusal}")]
pub struct Refused {
    #[source]
    pub refusal: Refusal,
    pub realm: Arc<str>,
}

/// What a configuration reload may change.
struct Rules {
    routes: RouteTable,
    trusted_proxies: Vec<IpNet>,
    proxy_cache_ttl: Duration,
}

impl Rules {
    fn new(settings: &ForwardAuthSettings) -> Self {
        Self {
            routes: RouteTable::new(settings.routes.iter().filter_map(Route::from_settings).collect()),
            trusted_proxies: settings.trusted_proxies.clone(),
            proxy_cache_ttl: settings.proxy_cache_ttl,
        }
    }
}

/// The forward-auth use case.
pub struct ForwardAuth {
    rules: Live<Rules>,
    exchange: Arc<ExchangeService>,
    clients: Arc<Live<ClientRegistry>>,
    metrics: Metrics,
}

impl ForwardAuth {
    pub fn new(
        settings: &ForwardAuthSettings,
        exchange: Arc<ExchangeService>,
        clients: Arc<Live<ClientRegistry>>,
        metrics: Metrics,
    ) -> Self {
        Self { rules: Live::new(Rules::new(settings)), exchange, clients, metrics }
    }

    /// Routes, trusted proxies and caching as a reloaded configuration says; decisions already
    /// under way finish under the old ones.
    pub fn reconfigure(&self, settings: &ForwardAuthSettings) {
        self.rules.replace(Rules::new(settings));
    }

    /// Whether `peer` may ask for decisions at all.
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        let rules = self.rules.current();
        peer.is_some_and(|ip| {
            let ip = ip.to_canonical();
            rules.trusted_proxies.iter().any(|net| net.contains(&ip))
        })
    }

    pub async fn decide(&self, request: DecisionRequest<'_>) -> Result<Allowed, Refusal> {
        let started = Stopwatch::start();
        let (route, result) = self.decide_unmeasured(request).await;
        let outcome = result.as_ref().map_or_else(Refusal::outcome, |_| "allowed");
        self.metrics.forward_auth_decision(route.as_deref().unwrap_or("none"), outcome, started.elapsed());
        result
    }

    async fn decide_unmeasured(&self, request: DecisionRequest<'_>) -> (Option<String>, Result<Allowed, Refusal>) {
        if !self.trusts(request.peer) {
            return (None, Err(Refusal::UntrustedPeer));
        }
        let rules = self.rules.current();
        let route = match rules.routes.select(request.route, &request.original) {
            Ok(route) => route,
            Err(no_route) => return (None, Err(Refusal::Forbidden { reason: no_route.to_string(), scope: None })),
        };
        (Some(route.name.clone()), self.exchange_under(route, rules.proxy_cache_ttl, request.credential).await)
    }

    async fn exchange_under(
        &self,
        route: &Route,
        proxy_cache_ttl: Duration,
        credential: Credential,
    ) -> Result<Allowed, Refusal> {
        let token = match credential {
            Credential::Bearer(token) => token,
            Credential::Missing => return Err(Refusal::NoCredential),
            Credential::Malformed => return Err(Refusal::MalformedCredential),
        };
        let client = self.clients.current().registered(&route.client_id).ok_or_else(|| {
            Refusal::Fault(Arc::new(OAuthError::invalid_request(format!(
                "route {} names no registered client",
                route.name
            ))))
        })?;
        let request = ExchangeRequest {
            subject: PresentedToken { token },
            actor: None,
            requested_token_type: TokenType::AccessToken,
            audiences: vec![route.audience.clone()],
            resources: Vec::new(),
            scope: route.scope.clone(),
        };
        let issued = self.exchange.exchange(&client, request).await.map_err(|e| Refusal::from_exchange(e, route))?;
        let cache_for =
            Some(proxy_cache_ttl.min(issued.expires_in.saturating_sub(CACHE_MARGIN))).filter(|ttl| !ttl.is_zero());
        Ok(Allowed { access_token: issued.access_token, cache_for })
    }
}
