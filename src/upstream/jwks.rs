use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use super::http::{HttpFailure, UpstreamCall, UpstreamHttp};
use super::metadata::{MetadataCache, MetadataEndpoint};
use super::settings::UpstreamSettings;
use crate::clock::UnixTime;
use crate::vocabulary::ValidationError;

/// One usable verification key of an upstream.
pub struct UpstreamKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl UpstreamKey {
    fn accepts(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|own| own == alg) && self.key.family() == alg.family()
    }
}

struct KeySet {
    keys: Vec<Arc<UpstreamKey>>,
    fetched_at: UnixTime,
}

impl KeySet {
    /// The key a token names by `kid`; without a `kid`, the only key that fits `alg`.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<UpstreamKey>> {
        let mut fitting = self.keys.iter().filter(|k| k.accepts(alg));
        match kid {
            Some(kid) => fitting.find(|k| k.kid.as_deref() == Some(kid)).cloned(),
            None => match (fitting.next(), fitting.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            },
        }
    }
}

#[derive(Default)]
struct RefreshState {
    last_fetch: Option<UnixTime>,
}

/// Where the keys are published.
enum JwksLocation {
    Configured(Url),
    /// The `jwks_uri` of the issuer's metadata.
    Discovered(Arc<MetadataCache>),
}

/// An upstream's JWKS, fetched lazily, kept for `max_age`, refetched on an unknown `kid` at
/// most once per `cooldown`. Header URLs such as `jku` and `x5u` are never followed.
pub struct JwksCache {
    upstream: String,
    issuer: String,
    location: JwksLocation,
    http: Arc<UpstreamHttp>,
    max_age: Duration,
    cooldown: Duration,
    current: RwLock<Option<Arc<KeySet>>>,
    refresh: Mutex<RefreshState>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

impl JwksCache {
    /// Keys at `uri`, for a JWKS that is always named (a client's `jwks_uri`).
    pub fn at(
        upstream: String,
        issuer: String,
        uri: Url,
        http: Arc<UpstreamHttp>,
        max_age: Duration,
        cooldown: Duration,
    ) -> Self {
        Self::located(upstream, issuer, JwksLocation::Configured(uri), http, max_age, cooldown)
    }

    /// The keys of `settings`' issuer: its `jwks_uri`, or else where `metadata` says. One per
    /// upstream, shared by its offline JWT check and its signed-answer check.
    pub fn for_upstream(
        settings: &UpstreamSettings,
        metadata: Arc<MetadataCache>,
        http: Arc<UpstreamHttp>,
    ) -> Arc<Self> {
        let location = match &settings.jwks_uri {
            Some(uri) => JwksLocation::Configured(uri.clone()),
            None => JwksLocation::Discovered(metadata),
        };
        let (upstream, issuer) = (settings.name.clone(), settings.issuer.clone());
        Arc::new(Self::located(upstream, issuer, location, http, settings.jwks_max_age, settings.jwks_refetch_cooldown))
    }

    fn located(
        upstream: String,
        issuer: String,
        location: JwksLocation,
        http: Arc<UpstreamHttp>,
        max_age: Duration,
        cooldown: Duration,
    ) -> Self {
        Self {
            upstream,
            issuer,
            location,
            http,
            max_age,
            cooldown,
            current: RwLock::new(None),
            refresh: Mutex::new(RefreshState::default()),
        }
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current.read().ok().and_then(|guard| guard.clone())
    }

    pub async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        now: UnixTime,
    ) -> Result<Arc<UpstreamKey>, ValidationError> {
        let is_fresh = |set: &KeySet| now < set.fetched_at + self.max_age;
        let current = self.snapshot();
        let known = current.as_ref().and_then(|set| set.find(kid, alg));
        let fresh = current.as_deref().is_some_and(is_fresh);
        let mut refresh = match known {
            Some(key) if fresh => return Ok(key),
            // Stale: one request refreshes; the others go on with the key they have.
            Some(key) => match self.refresh.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(key),
            },
            None => self.refresh.lock().await,
        };
        // Whoever waited re-reads what the fetch before it left behind.
        let current = self.snapshot();
        let known = current.as_ref().and_then(|set| set.find(kid, alg));
        if let Some(key) = known.clone().filter(|_| current.as_deref().is_some_and(is_fresh)) {
            return Ok(key);
        }
        // However many tokens name unknown keys, the issuer is asked at most once per cooldown.
        if let Some(next_fetch) = refresh.last_fetch.map(|at| at + self.cooldown).filter(|next| now < *next) {
            return match (known, current) {
                (Some(key), _) => Ok(key),
                // Perhaps a key the issuer published a moment ago: say so for now, decide after
                // the next fetch (a rejection would be remembered and shared).
                (None, Some(_)) => Err(ValidationError::unavailable(
                    "the token's signing key is not in the issuer's JWKS yet",
                    Some(now.until(next_fetch)),
                )),
                (None, None) => {
                    Err(ValidationError::unavailable("the issuer's JWKS could not be fetched", Some(self.cooldown)))
                }
            };
        }
        refresh.last_fetch = Some(now);
        match self.fetch(now).await {
            Ok(set) => {
                let set = Arc::new(set);
                if let Ok(mut guard) = self.current.write() {
                    *guard = Some(set.clone());
                }
                set.find(kid, alg).ok_or_else(unknown_kid)
            }
            // A stale key still beats no answer while the issuer is down.
            Err(error) => known.ok_or(error),
        }
    }

    async fn fetch(&self, now: UnixTime) -> Result<KeySet, ValidationError> {
        let uri = match &self.location {
            JwksLocation::Configured(uri) => uri.clone(),
            JwksLocation::Discovered(metadata) => metadata.get(now).await?.endpoint(MetadataEndpoint::Jwks)?,
        };
        let raw: RawJwks =
            self.http.send_json(self.call("jwks"), self.http.client().get(uri)).await.map_err(jwks_failure)?;
        let keys: Vec<_> = raw.keys.into_iter().filter_map(usable_key).map(Arc::new).collect();
        if keys.is_empty() {
            return Err(ValidationError::Misconfigured("the issuer's JWKS holds no usable signing key".into()));
        }
        tracing::info!(issuer = %self.issuer, keys = keys.len(), "fetched upstream JWKS");
        Ok(KeySet { keys, fetched_at: now })
    }

    fn call(&self, kind: &'static str) -> UpstreamCall<'_> {
        UpstreamCall { upstream: &self.upstream, kind }
    }
}

/// A JWK Set written into the configuration (a client's `jwks`): parsed once, never fetched.
/// Keys are chosen as in a fetched set: by `kid`, else the only key that fits the algorithm.
pub struct StaticJwks {
    keys: KeySet,
}

impl StaticJwks {
    /// The usable signing keys of a JWK Set (`{"keys": [...]}`); an error when there is none.
    pub fn parse(jwks: &serde_json::Value) -> Result<Self, &'static str> {
        let raw = RawJwks::deserialize(jwks).map_err(|_| "is not a JWK Set ({\"keys\": [...]})")?;
        let keys: Vec<_> = raw.keys.into_iter().filter_map(usable_key).map(Arc::new).collect();
        if keys.is_empty() {
            return Err("holds no usable public signing key");
        }
        Ok(Self { keys: KeySet { keys, fetched_at: UnixTime::from_secs(0) } })
    }

    pub fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<UpstreamKey>, ValidationError> {
        self.keys.find(kid, alg).ok_or_else(unknown_kid)
    }

    /// Whether every key is a public key of an asymmetric family (no `oct` secrets).
    pub fn all_asymmetric(&self) -> bool {
        self.keys.keys.iter().all(|k| k.key.family() != jsonwebtoken::AlgorithmFamily::Hmac)
    }
}

/// Keys we cannot use (unknown `kty`, encryption keys, missing members) are skipped, not fatal
/// (RFC 7517 §5).
fn usable_key(value: serde_json::Value) -> Option<UpstreamKey> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature) {
        return None;
    }
    let alg = match &jwk.common.key_algorithm {
        Some(declared) => Some(Algorithm::from_str(&declared.to_string()).ok()?),
        None => None,
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(UpstreamKey { kid: jwk.common.key_id.clone(), alg, key })
}

fn jwks_failure(failure: HttpFailure) -> ValidationError {
    failure.into_verdict("JWKS")
}

fn unknown_kid() -> ValidationError {
    ValidationError::rejected("the token's signing key is not in the issuer's JWKS")
}
