//! `private_key_jwt` (RFC 7523 §2.2, RFC 7521 §4.2, OIDC Core §9): the client signs a short-lived
//! JWT with its own key; we verify it against the client's JWK Set (inline, or fetched from its
//! `jwks_uri` and cached like an upstream's), check `iss`, `sub`, `aud`, `exp`, and claim its
//! `jti` once, so a captured assertion cannot be replayed.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use url::Url;

use crate::cache::IdentityCache;
use crate::clock::UnixTime;
use crate::oauth::{ASSERTION_SIGNING_ALGORITHMS, AuthMethod, OAuthError};
use crate::upstream::{JwksCache, StaticJwks, UpstreamHttp, UpstreamKey};
use crate::vocabulary::{ClientSecret, ValidationError, hex};

/// An assertion may live this long (from `iat`, or from now without one) unless its client
/// sets `assertion_max_lifetime`, which may not exceed [`MAX_ASSERTION_LIFETIME`].
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// Clock skew forgiven on `exp`, `nbf` and `iat`.
pub const ASSERTION_LEEWAY: Duration = Duration::from_secs(30);
/// As for upstream JWKS: kept an hour, refetched on an unknown `kid` at most every 30 s.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
const JWKS_COOLDOWN: Duration = Duration::from_secs(30);
const MAX_JTI_BYTES: usize = 256;

/// What authentication needs to know of the request beyond its credentials.
pub struct AuthContext<'a> {
    pub peer: Option<IpAddr>,
    pub now: UnixTime,
    /// The `aud` values an assertion may name: our issuer and the endpoint's URL.
    pub audiences: &'a [String],
    /// Where assertion `jti`s are claimed (Redis when configured, so replicas share them).
    pub replay: &'a dyn IdentityCache,
}

/// A client's public keys, and how long its assertions may live.
pub(super) struct ClientKeys {
    source: JwksSource,
    lifetime: Duration,
}

enum JwksSource {
    Inline(Option<StaticJwks>),
    /// The cache is built on first use, with the registry's HTTP client.
    Remote {
        uri: Url,
        cache: OnceLock<Arc<JwksCache>>,
    },
}

impl ClientKeys {
    /// Configuration validation refuses an unusable set; one that slips through verifies nothing.
    pub(super) fn inline(jwks: &Value, lifetime: Option<Duration>) -> Self {
        Self::new(JwksSource::Inline(StaticJwks::parse(jwks).ok()), lifetime)
    }

    pub(super) fn remote(uri: Url, lifetime: Option<Duration>) -> Self {
        Self::new(JwksSource::Remote { uri, cache: OnceLock::new() }, lifetime)
    }

    fn new(source: JwksSource, lifetime: Option<Duration>) -> Self {
        let lifetime = lifetime.unwrap_or(DEFAULT_ASSERTION_LIFETIME).min(MAX_ASSERTION_LIFETIME);
        Self { source, lifetime }
    }

    async fn key_for(
        &self,
        client_id: &str,
        kid: Option<&str>,
        alg: Algorithm,
        now: UnixTime,
        http: &Arc<UpstreamHttp>,
    ) -> Result<Arc<UpstreamKey>, OAuthError> {
        let found = match &self.source {
            JwksSource::Inline(Some(keys)) => keys.key_for(kid, alg),
            JwksSource::Inline(None) => Err(ValidationError::rejected("the client has no usable key")),
            JwksSource::Remote { uri, cache } => {
                let cache = match cache.get() {
                    Some(cache) => cache,
                    None => {
                        let built = JwksCache::at(
                            format!("client:{client_id}"),
                            client_id.to_owned(),
                            uri.clone(),
                            http.clone(),
                            JWKS_MAX_AGE,
                            JWKS_COOLDOWN,
                        );
                        cache.get_or_init(|| Arc::new(built))
                    }
                };
                cache.key_for(kid, alg, now).await
            }
        };
        found.map_err(|error| match error {
            ValidationError::Rejected(_) => rejected("the assertion's signing key is not among the client's keys"),
            ValidationError::Unavailable { retry_after, .. } => OAuthError::unavailable_because(
                "the client's keys cannot be fetched now",
                retry_after.or(Some(JWKS_COOLDOWN)),
                error,
            ),
            ValidationError::Misconfigured(_) => {
                OAuthError::unavailable_because("the client's JWKS is unusable", Some(JWKS_COOLDOWN), error)
            }
            // A JWKS cache spends no budget; should one ever, the client waits like any other.
            ValidationError::OverBudget { retry_after } => OAuthError::TooManyUnknownTokens { retry_after },
        })
    }

    /// Checks `assertion` as `client_id`'s, then claims its `jti` until it expires.
    pub(super) async fn verify(
        &self,
        client_id: &str,
        assertion: &ClientSecret,
        context: &AuthContext<'_>,
        http: &Arc<UpstreamHttp>,
    ) -> Result<(), OAuthError> {
        let jws = assertion.expose_secret();
        let header = decode_header(jws).map_err(|_| rejected("the assertion's JOSE header is malformed"))?;
        if header.crit.is_some() {
            return Err(rejected("the assertion names critical extensions we do not support"));
        }
        let alg = header.alg;
        if !accepted_algorithms().contains(&alg) {
            return Err(rejected("the assertion's signature algorithm is not accepted"));
        }
        let key = self.key_for(client_id, header.kid.as_deref(), alg, context.now, http).await?;
        let claims = decode::<Map<String, Value>>(jws, &key.key, &signature_only(alg))
            .map_err(|_| rejected("the assertion's signature does not verify"))?
            .claims;
        let claims = AssertionClaims::check(&claims, client_id, self.lifetime, context)?;
        let replay_key =
            hex(&Sha256::new().chain_update(client_id).chain_update([0]).chain_update(claims.jti).finalize());
        let first = context
            .replay
            .claim_once(&format!("jti:{replay_key}"), claims.exp + ASSERTION_LEEWAY, context.now)
            .await
            .map_err(|error| {
                OAuthError::unavailable_because(
                    "cannot check the assertion for replay",
                    Some(Duration::from_secs(1)),
                    error,
                )
            })?;
        if !first {
            return Err(rejected("the assertion's jti was used before"));
        }
        Ok(())
    }
}

/// The claims of a verified assertion that we act on.
struct AssertionClaims<'c> {
    jti: &'c str,
    exp: UnixTime,
}

impl<'c> AssertionClaims<'c> {
    fn check(
        claims: &'c Map<String, Value>,
        client_id: &str,
        lifetime: Duration,
        context: &AuthContext<'_>,
    ) -> Result<Self, OAuthError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
            return Err(rejected("the assertion's iss and sub must both be the client_id"));
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !audiences.iter().any(|aud| context.audiences.iter().any(|ours| ours == aud)) {
            return Err(rejected("the assertion's aud names neither our issuer nor this endpoint"));
        }
        let now = context.now;
        let exp = numeric_date(claims, "exp").ok_or_else(|| rejected("the assertion's exp is missing"))?;
        if exp + ASSERTION_LEEWAY <= now {
            return Err(rejected("the assertion has expired"));
        }
        let iat = match claims.get("iat") {
            None => None,
            Some(_) => Some(numeric_date(claims, "iat").ok_or_else(|| rejected("the assertion's iat is malformed"))?),
        };
        if iat.is_some_and(|iat| iat > now + ASSERTION_LEEWAY) {
            return Err(rejected("the assertion was issued in the future"));
        }
        let start = iat.map_or(now, |iat| iat.min(now));
        if exp > start + lifetime + ASSERTION_LEEWAY {
            return Err(rejected("the assertion lives longer than the client's assertion_max_lifetime"));
        }
        if claims.contains_key("nbf") {
            let nbf = numeric_date(claims, "nbf").ok_or_else(|| rejected("the assertion's nbf is malformed"))?;
            if nbf > now + ASSERTION_LEEWAY {
                return Err(rejected("the assertion is not yet valid"));
            }
        }
        let jti = text("jti")
            .filter(|jti| !jti.is_empty() && jti.len() <= MAX_JTI_BYTES)
            .ok_or_else(|| rejected("the assertion needs a jti"))?;
        Ok(Self { jti, exp })
    }
}

fn rejected(why: &'static str) -> OAuthError {
    OAuthError::invalid_client(why, Some(AuthMethod::PrivateKeyJwt))
}

fn accepted_algorithms() -> Vec<Algorithm> {
    ASSERTION_SIGNING_ALGORITHMS.iter().filter_map(|name| Algorithm::from_str(name).ok()).collect()
}

/// jsonwebtoken checks the signature only: every claim is checked here, on the app's clock.
fn signature_only(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation
}

fn numeric_date(claims: &Map<String, Value>, name: &str) -> Option<UnixTime> {
    let value = claims.get(name)?;
    value.as_i64().or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)).map(UnixTime::from_secs)
}
