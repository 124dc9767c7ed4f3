//! What a provider publishes about itself: OpenID Connect Discovery 1.0 (§4), else RFC 8414
//! authorization server metadata (§3). Fetched on first use, kept for `max_age`, and after a
//! failed fetch not asked again before the cooldown is over.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use super::http::{HttpFailure, UpstreamCall, UpstreamHttp};
use crate::clock::UnixTime;
use crate::vocabulary::ValidationError;

/// The members of a provider's metadata we use; every other member is ignored. Endpoints are
/// parsed when used, so one we never call cannot spoil the others.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// RFC 9701 §7: the algorithms signed introspection answers may use.
    #[serde(default)]
    pub introspection_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub userinfo_signing_alg_values_supported: Vec<String>,
    /// Where the document was found; not a member of it.
    #[serde(skip)]
    pub location: Option<Url>,
}

/// An endpoint the metadata may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataEndpoint {
    Jwks,
    Introspection,
    Userinfo,
}

impl MetadataEndpoint {
    pub fn member(self) -> &'static str {
        match self {
            Self::Jwks => "jwks_uri",
            Self::Introspection => "introspection_endpoint",
            Self::Userinfo => "userinfo_endpoint",
        }
    }
}

impl ProviderMetadata {
    /// The endpoint the metadata names, when it is one we may call.
    pub fn endpoint(&self, which: MetadataEndpoint) -> Result<Url, ValidationError> {
        let named = match which {
            MetadataEndpoint::Jwks => &self.jwks_uri,
            MetadataEndpoint::Introspection => &self.introspection_endpoint,
            MetadataEndpoint::Userinfo => &self.userinfo_endpoint,
        };
        let member = which.member();
        let refused = |why: &str| ValidationError::Misconfigured(format!("the provider's metadata {why} {member}"));
        let url = named.as_deref().ok_or_else(|| refused("names no"))?;
        match Url::parse(url) {
            Ok(url) if is_secure_endpoint(&url) => Ok(url),
            Ok(_) => Err(refused("names a plain-http (not loopback)")),
            Err(_) => Err(refused("names a malformed")),
        }
    }
}

/// Tokens and secrets cross this connection: TLS, except to this very machine.
pub fn is_secure_endpoint(url: &Url) -> bool {
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    url.scheme() == "https" || (url.scheme() == "http" && loopback)
}

/// Where an issuer's metadata may be, in the order asked: OpenID Connect Discovery appends
/// its well-known path to the issuer; RFC 8414 §3 inserts its own between host and path.
pub fn metadata_locations(issuer: &str) -> Result<[Url; 2], ValidationError> {
    let unusable = || ValidationError::Misconfigured("the issuer is not a URL metadata can be fetched from".into());
    let issuer_url = Url::parse(issuer).map_err(|_| unusable())?;
    let openid = Url::parse(&format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')))
        .map_err(|_| unusable())?;
    let mut rfc8414 = issuer_url.clone();
    let path = issuer_url.path().trim_end_matches('/');
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    Ok([openid, rfc8414])
}

struct Fetched {
    metadata: Arc<ProviderMetadata>,
    fetched_at: UnixTime,
}

/// The last failed fetch, answered again until the next one is allowed.
struct Failure {
    error: ValidationError,
    next_attempt: UnixTime,
}

/// One provider's metadata, shared by whatever needs an endpoint of it.
pub struct MetadataCache {
    upstream: String,
    issuer: String,
    http: Arc<UpstreamHttp>,
    max_age: Duration,
    cooldown: Duration,
    current: RwLock<Option<Arc<Fetched>>>,
    failure: Mutex<Option<Failure>>,
}

impl MetadataCache {
    /// The metadata of `settings`' issuer, kept as long as it says.
    pub fn for_upstream(settings: &super::UpstreamSettings, http: Arc<UpstreamHttp>) -> Arc<Self> {
        Arc::new(Self {
            upstream: settings.name.clone(),
            issuer: settings.issuer.clone(),
            http,
            max_age: settings.metadata_max_age,
            cooldown: settings.jwks_refetch_cooldown,
            current: RwLock::new(None),
            failure: Mutex::new(None),
        })
    }

    fn snapshot(&self) -> Option<Arc<Fetched>> {
        self.current.read().ok().and_then(|guard| guard.clone())
    }

    /// The provider's metadata: kept while fresh; when stale, fetched again, but a stale copy
    /// still serves while the provider cannot answer.
    pub async fn get(&self, now: UnixTime) -> Result<Arc<ProviderMetadata>, ValidationError> {
        let is_fresh = |fetched: &Fetched| now < fetched.fetched_at + self.max_age;
        match self.snapshot() {
            Some(fetched) if is_fresh(&fetched) => return Ok(fetched.metadata.clone()),
            Some(stale) => {
                return match self.failure.try_lock() {
                    Ok(guard) => self.refresh(guard, Some(stale), now).await,
                    // Another request is refreshing: go on with what there is.
                    Err(_) => Ok(stale.metadata.clone()),
                };
            }
            None => {}
        }
        let guard = self.failure.lock().await;
        // Whoever waited re-reads what the fetch before it left behind.
        match self.snapshot() {
            Some(fetched) if is_fresh(&fetched) => Ok(fetched.metadata.clone()),
            current => self.refresh(guard, current, now).await,
        }
    }

    async fn refresh(
        &self,
        mut failure: tokio::sync::MutexGuard<'_, Option<Failure>>,
        stale: Option<Arc<Fetched>>,
        now: UnixTime,
    ) -> Result<Arc<ProviderMetadata>, ValidationError> {
        if let Some(last) = failure.as_ref().filter(|last| now < last.next_attempt) {
            return match stale {
                Some(fetched) => Ok(fetched.metadata.clone()),
                None => Err(retry_at(last.error.clone(), last.next_attempt, now)),
            };
        }
        match self.fetch().await {
            Ok(metadata) => {
                let fetched = Arc::new(Fetched { metadata: Arc::new(metadata), fetched_at: now });
                if let Ok(mut current) = self.current.write() {
                    *current = Some(fetched.clone());
                }
                *failure = None;
                Ok(fetched.metadata.clone())
            }
            Err(error) => {
                let wait = match &error {
                    ValidationError::Unavailable { retry_after: Some(wait), .. } => *wait,
                    _ => self.cooldown,
                };
                let next_attempt = now + wait;
                *failure = Some(Failure { error: error.clone(), next_attempt });
                match stale {
                    Some(fetched) => Ok(fetched.metadata.clone()),
                    None => Err(retry_at(error, next_attempt, now)),
                }
            }
        }
    }

    /// Asks the provider now, bypassing the cache: OpenID Connect Discovery first, RFC 8414
    /// when the provider has no OpenID configuration. The document must name the very issuer
    /// it was asked about (OIDC Discovery §4.3, RFC 8414 §3.3).
    pub async fn fetch(&self) -> Result<ProviderMetadata, ValidationError> {
        let call = UpstreamCall { upstream: &self.upstream, kind: "discovery" };
        let mut refusals = Vec::new();
        for location in metadata_locations(&self.issuer)? {
            let request = self.http.client().get(location.clone()).header("Accept", "application/json");
            match self.http.send_json::<ProviderMetadata>(call, request).await {
                Ok(mut metadata) if metadata.issuer == self.issuer => {
                    metadata.location = Some(location);
                    return Ok(metadata);
                }
                Ok(metadata) => {
                    return Err(ValidationError::Misconfigured(format!(
                        "the metadata at {location} names the issuer {:?}, not {:?}",
                        metadata.issuer, self.issuer
                    )));
                }
                // Not published here: perhaps at the other location.
                Err(HttpFailure::Status(status)) => refusals.push(format!("{location} answered HTTP {status}")),
                Err(other) => return Err(other.into_verdict(&format!("the metadata at {location}"))),
            }
        }
        Err(ValidationError::Misconfigured(format!("the issuer publishes no metadata: {}", refusals.join("; "))))
    }
}

/// While the provider is not asked again, an outage says when it will be.
fn retry_at(error: ValidationError, next_attempt: UnixTime, now: UnixTime) -> ValidationError {
    match error {
        ValidationError::Unavailable { reason, .. } => {
            ValidationError::Unavailable { reason, retry_after: Some(now.until(next_attempt)) }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_8414_inserts_the_well_known_segment_before_the_issuers_path() {
        let [openid, rfc8414] = metadata_locations("https://idp.example.com/tenant/a").unwrap();
        assert_eq!(openid.as_str(), "https://idp.example.com/tenant/a/.well-known/openid-configuration");
        assert_eq!(rfc8414.as_str(), "https://idp.example.com/.well-known/oauth-authorization-server/tenant/a");
    }

    #[test]
    fn an_issuer_without_a_path_has_its_metadata_at_the_root() {
        let [openid, rfc8414] = metadata_locations("https://tenant.example.com/").unwrap();
        assert_eq!(openid.as_str(), "https://tenant.example.com/.well-known/openid-configuration");
        assert_eq!(rfc8414.as_str(), "https://tenant.example.com/.well-known/oauth-authorization-server");
    }
}
